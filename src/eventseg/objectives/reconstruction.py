"""Reconstruction loss: one masked term per field, weighted from config."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eventseg.data.batch import EventBatch, FeatureSpec

IGNORE = -100


class ReconstructionLoss(nn.Module):
    """Cross-entropy per categorical field and Huber per numeric column, over real events only.

    Every term is a mean over the batch's real events, so terms are comparable across
    batches with different padding. The total is the weighted sum of the terms (weight 1.0
    unless `weights` names the field). Padded targets are replaced and padded errors dropped
    with `where`, not by multiplying with the mask, so even non-finite padding values cannot
    leak into the loss or its gradient.
    """

    def __init__(self, spec: FeatureSpec, weights: dict[str, float] | None = None, huber_delta: float = 1.0):
        super().__init__()
        self.categorical = list(spec.categorical)
        self.numeric = list(spec.numeric)
        clash = set(self.categorical) & set(self.numeric)
        if clash:
            raise ValueError(f"fields named both categorical and numeric: {sorted(clash)}")
        weights = dict(weights or {})
        unknown = set(weights) - set(self.categorical) - set(self.numeric)
        if unknown:
            raise ValueError(
                f"loss_weights names unknown fields {sorted(unknown)}; "
                f"known: {self.categorical + self.numeric}"
            )
        self.cat_weights = [float(weights.get(n, 1.0)) for n in self.categorical]
        self.register_buffer(
            "num_weights", torch.tensor([float(weights.get(n, 1.0)) for n in self.numeric]), persistent=False
        )
        self.huber_delta = huber_delta

    def forward(
        self, outputs: dict, batch: EventBatch, with_accuracy: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Returns (total, {field: loss}, {categorical field: accuracy} or {} without with_accuracy)."""
        mask = batch.mask
        n_real = mask.sum().clamp_min(1)
        total = torch.zeros((), device=mask.device)
        losses: dict[str, torch.Tensor] = {}
        accs: dict[str, torch.Tensor] = {}
        for i, (name, w) in enumerate(zip(self.categorical, self.cat_weights)):
            logits = outputs["logits"][name]
            target = batch.categorical[..., i].masked_fill(~mask, IGNORE)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=IGNORE)
            losses[name] = loss
            total = total + w * loss
            if with_accuracy:
                hit = (logits.argmax(-1) == target) & mask
                accs[name] = hit.sum() / n_real
        if self.numeric:
            real = mask.unsqueeze(-1)
            target = torch.where(real, batch.numeric.float(), 0.0)
            err = F.huber_loss(outputs["numeric"].float(), target, reduction="none", delta=self.huber_delta)
            per_column = torch.where(real, err, 0.0).sum((0, 1)) / n_real
            losses.update(zip(self.numeric, per_column.unbind()))
            total = total + (per_column * self.num_weights).sum()
        return total, losses, accs
