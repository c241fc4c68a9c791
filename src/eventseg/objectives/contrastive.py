"""Contrastive objective (CoLES-style): views of one customer are random contiguous
sub-sequences of its history; InfoNCE pulls the views of a customer together and pushes
the other customers of the batch apart.

Everything runs on the batch's device with no host sync: view starts and lengths are drawn
as tensors, and the views are left-aligned with a gather, so the padded width stays that of
the batch (the encoders are padding-invariant, so what lies past a view's length is ignored).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from eventseg.data.batch import EventBatch

DEFAULTS = {"temperature": 0.1, "min_frac": 0.3, "max_frac": 0.9, "n_views": 2}


def contrastive_options(options: dict | None) -> dict:
    """Validated options with defaults filled in."""
    options = dict(options or {})
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown contrastive options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    out = {k: float(options.get(k, v)) for k, v in DEFAULTS.items()}
    out["n_views"] = int(out["n_views"])
    if out["n_views"] < 2:
        raise ValueError(f"contrastive n_views must be >= 2 (views of one customer are the positives), got {out['n_views']}")
    if out["temperature"] <= 0:
        raise ValueError(f"contrastive temperature must be > 0, got {out['temperature']}")
    if not 0 < out["min_frac"] <= out["max_frac"] <= 1:
        raise ValueError(f"need 0 < min_frac <= max_frac <= 1, got {out['min_frac']} and {out['max_frac']}")
    return out


def subsequence_views(
    batch: EventBatch,
    n_views: int = 2,
    min_frac: float = 0.3,
    max_frac: float = 0.9,
    generator: torch.Generator | None = None,
) -> tuple[EventBatch, torch.Tensor]:
    """n_views random contiguous sub-sequences of every customer, left-aligned.

    Returns (views, source): views is an EventBatch of n_views * B rows (view v of customer b
    at row v * B + b), padded to the batch's width; source [n_views * B] is b. A view of a
    customer with n events has length round(f * n) for f ~ U(min_frac, max_frac), at least 1
    and at most n, and a uniform start among the positions where it fits. Positions past a
    view's length repeat its customer's last real event (never padding) and are masked out
    by the view's length like any padding.
    """
    lengths = batch.lengths
    b, width = batch.categorical.shape[:2]
    device = lengths.device
    n = lengths.repeat(n_views)  # [V*B]
    source = torch.arange(b, device=device).repeat(n_views)
    u_len = torch.rand(n.shape, device=device, generator=generator)
    u_start = torch.rand(n.shape, device=device, generator=generator)
    frac = min_frac + (max_frac - min_frac) * u_len
    view_len = torch.minimum(torch.round(frac * n).long().clamp_min(1), n)
    room = n - view_len + 1  # possible starts
    start = torch.minimum((u_start * room).long(), room - 1)
    steps = torch.arange(width, device=device)
    index = torch.minimum(start[:, None] + steps[None, :], n[:, None] - 1)  # [V*B, L], within real events
    rows = source[:, None]
    views = EventBatch(
        categorical=batch.categorical[rows, index],
        numeric=batch.numeric[rows, index],
        lengths=view_len,
        customer_index=batch.customer_index[source],
        earlier=None if batch.earlier is None else batch.earlier[source],
    )
    return views, source


def info_nce(z: torch.Tensor, n_views: int, temperature: float) -> torch.Tensor:
    """InfoNCE over n_views * B embeddings laid out view-major (row v * B + b is customer b).

    Each row's positives are the other views of its customer; every other row of the batch is
    a negative. With n_views=2 this is the NT-Xent loss of SimCLR; its value at chance is
    log(n_views * B - 1).
    """
    z = F.normalize(z.float(), dim=-1)
    total = z.shape[0]
    b = total // n_views
    sim = (z @ z.T) / temperature
    self_mask = torch.eye(total, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    customer = torch.arange(total, device=z.device) % b
    positive = (customer[:, None] == customer[None, :]) & ~self_mask
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    # Mean log-probability of the positives (one positive per row when n_views=2).
    return -(torch.where(positive, log_prob, 0.0).sum(1) / positive.sum(1).clamp_min(1)).mean()
