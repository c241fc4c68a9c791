"""The training module: events -> customer embedding z -> the objectives (next window, history, contrastive)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from eventseg.data.batch import UNSEEN, EventBatch, FeatureSpec
from eventseg.nn.decoder import DECODERS, OutputHeads
from eventseg.nn.event_encoder import EventEncoder
from eventseg.nn.sequence_encoder import SEQUENCE_ENCODERS
from eventseg.objectives.contrastive import contrastive_options, info_nce, subsequence_views
from eventseg.objectives.future import LEGACY, FutureSummaryHead, repeat_batch
from eventseg.objectives.reconstruction import ReconstructionLoss

OBJECTIVES = ("reconstruction", "contrastive", "future")


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite."""


def _builtin_containers(obj: Any) -> Any:
    """Hydra DictConfig/ListConfig -> dicts and lists, so checkpoints load with
    torch.load(weights_only=True), which refuses arbitrary classes."""
    if isinstance(obj, Mapping):
        return {k: _builtin_containers(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_builtin_containers(v) for v in obj)
    if isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        return [_builtin_containers(v) for v in obj]
    return obj


def drop_events(
    events: torch.Tensor, mask: torch.Tensor, drop_prob: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly remove events, keeping order, and left-align the survivors.

    Each sequence keeps at least its most recent event. Runs on the device with no host
    sync: a stable sort moves kept positions to the front.
    """
    keep = mask & (torch.rand(mask.shape, device=mask.device) >= drop_prob)
    lengths = mask.sum(1)
    steps = torch.arange(mask.shape[1], device=mask.device)
    keep = keep | (~keep.any(1, keepdim=True) & (steps[None, :] == lengths[:, None] - 1))
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices
    kept = events.gather(1, order.unsqueeze(-1).expand_as(events))
    return kept, keep.sum(1)


class SequenceEncoderModule(L.LightningModule):
    """Trains the sequence encoder: each customer's event sequence into z (the embedding), and
    z into whatever the configured objectives ask of it (the next window by default; the history
    back, with a decoder, only under the reconstruction objective).

    All constructor arguments are plain values, stored with `save_hyperparameters()`, so a
    checkpoint rebuilds the model on its own; `data_state` (the data layer's schema and
    fitted encoders) rides along for the same reason. It is never interpreted here, but it
    must hold plain Python values (Hydra containers are converted): Lightning loads
    checkpoints with torch.load(weights_only=True), which rejects numpy arrays and classes.

    encoder / decoder: "gru" or "transformer" (keys of SEQUENCE_ENCODERS / DECODERS);
    encoder_options / decoder_options: extra keyword arguments for those classes, e.g.
    {"pool": "cls", "positions": "learned"} or {"n_memory": 8}.
    corruption: {"mask_prob": p, "drop_prob": q}, training only. Masked categorical codes
    become UNSEEN, which also trains the unseen bucket's embedding (the vocabularies are
    fitted on training data, so the bucket would otherwise never appear); masked numerics
    become 0, the standardised median. Dropped events vanish from the encoder's input but
    are still reconstructed.
    warmup_steps: linear warm-up length; a value below 1 is a fraction of all training steps.
    objectives: {name: weight} over OBJECTIVES; the training loss is the weighted sum of their
    losses. None means {"reconstruction": 1.0}. With no positive reconstruction weight the
    decoder and output heads are not built at all (no decoder compute, no unused parameters).
    contrastive: options of the contrastive objective (see eventseg.objectives.contrastive):
    {"temperature": 0.1, "min_frac": 0.3, "max_frac": 0.9, "n_views": 2}. Its views (n_views
    per customer) are encoded like the training input, corruption included.
    future: options of the future-summary objective (see eventseg.objectives.future):
    {"horizon_days": 30, "huber_delta": 1.0, "top_k": 50, "normalise": True, "n_cuts": 1}. Its
    prefixes are encoded like the training input; training draws n_cuts cuts per customer.
    With normalise, set the head's term scales (`future_head.set_term_scale`) before training:
    eventseg.training.train does, from the constant guess on the training customers.
    """

    def __init__(
        self,
        feature_spec: dict,
        encoder: str = "gru",
        decoder: str = "gru",
        d_model: int = 128,
        embedding_dim: int = 64,
        num_layers: int = 1,
        n_heads: int = 4,
        dropout: float = 0.1,
        encoder_options: dict | None = None,
        decoder_options: dict | None = None,
        loss_weights: dict | None = None,
        corruption: dict | None = None,
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        warmup_steps: float = 0.05,
        data_state: dict | None = None,
        objectives: dict | None = None,
        contrastive: dict | None = None,
        future: dict | None = None,
    ):
        super().__init__()
        # Reassigned before save_hyperparameters(), which reads this frame's locals.
        feature_spec, encoder_options, decoder_options = map(_builtin_containers, (feature_spec, encoder_options, decoder_options))
        loss_weights, corruption, data_state = map(_builtin_containers, (loss_weights, corruption, data_state))
        objectives, contrastive, future = map(_builtin_containers, (objectives, contrastive, future))
        # The logger gets the hyperparameters without data_state (see on_fit_start).
        self.save_hyperparameters(logger=False)

        if encoder not in SEQUENCE_ENCODERS:
            raise ValueError(f"unknown encoder {encoder!r}; choose from {sorted(SEQUENCE_ENCODERS)}")
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; choose from {sorted(DECODERS)}")
        corruption = dict(corruption or {})
        unknown = set(corruption) - {"mask_prob", "drop_prob"}
        if unknown:
            raise ValueError(f"unknown corruption keys {sorted(unknown)}; use mask_prob and drop_prob")
        self.mask_prob = float(corruption.get("mask_prob", 0.0))
        self.drop_prob = float(corruption.get("drop_prob", 0.0))
        weights = {"reconstruction": 1.0} if objectives is None else {k: float(v) for k, v in objectives.items()}
        unknown = set(weights) - set(OBJECTIVES)
        if unknown:
            raise ValueError(f"unknown objectives {sorted(unknown)}; choose from {list(OBJECTIVES)}")
        if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
            raise ValueError(f"objective weights must be >= 0 with at least one > 0, got {weights}")
        self.objective_weights = {k: w for k, w in weights.items() if w > 0}
        self.reconstructs = "reconstruction" in self.objective_weights
        self.contrastive_options = contrastive_options(contrastive)

        self.spec = FeatureSpec.from_dict(feature_spec)
        self.event_encoder = EventEncoder(self.spec, d_model, dropout)
        self.sequence_encoder = SEQUENCE_ENCODERS[encoder](
            d_model=d_model, num_layers=num_layers, n_heads=n_heads, dropout=dropout, **(encoder_options or {})
        )
        self.bottleneck = nn.Linear(self.sequence_encoder.out_dim, embedding_dim)
        # what max_len cut off reaches z too: a linear map of the per-customer summary, added to
        # the pooled sequence (None for specs without one: checkpoints from before it existed)
        self.earlier_encoder = nn.Linear(len(self.spec.earlier), self.sequence_encoder.out_dim) if self.spec.earlier else None
        if self.earlier_encoder is not None:  # starts at zero: the raw summary (log counts, sums) must not swamp the sequence
            nn.init.zeros_(self.earlier_encoder.weight)
            nn.init.zeros_(self.earlier_encoder.bias)
        self.decoder = self.heads = None
        if self.reconstructs:
            self.decoder = DECODERS[decoder](
                embedding_dim=embedding_dim, d_model=d_model, num_layers=num_layers, n_heads=n_heads,
                dropout=dropout, **(decoder_options or {}),
            )
            self.heads = OutputHeads(self.spec, d_model)
        self.future_head = None
        if "future" in self.objective_weights:
            self.future_head = FutureSummaryHead(self.spec, embedding_dim, d_model, future)
        self.loss_fn = ReconstructionLoss(self.spec, loss_weights)
        self._events_seen: torch.Tensor | None = None

    # ---- model -------------------------------------------------------------------------

    def _encode(self, batch: EventBatch, corrupt: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (z, encoded events for the decoder)."""
        mask = batch.mask
        categorical = batch.categorical
        # Padding values never reach the model, whatever the data layer put there.
        numeric = torch.where(mask.unsqueeze(-1), batch.numeric, 0.0)
        if corrupt and self.mask_prob > 0:
            hit = (torch.rand(categorical.shape, device=mask.device) < self.mask_prob) & mask.unsqueeze(-1)
            categorical = categorical.masked_fill(hit, UNSEEN)
            numeric = numeric.masked_fill(torch.rand(numeric.shape, device=mask.device) < self.mask_prob, 0.0)
        events = self.event_encoder(categorical, numeric)
        inputs, lengths = events, batch.lengths
        if corrupt and self.drop_prob > 0:
            inputs, lengths = drop_events(events, mask, self.drop_prob)
        pooled = self.sequence_encoder(inputs, lengths)
        if self.earlier_encoder is not None and batch.earlier is not None:
            pooled = pooled + self.earlier_encoder(batch.earlier.to(pooled.dtype))
        # z is the product: computed in full precision even under bf16 autocast (tiny matmul).
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            z = self.bottleneck(pooled.to(self.bottleneck.weight.dtype))
        return z, events

    def encode(self, batch: EventBatch) -> torch.Tensor:
        """Customer embeddings z [B, embedding_dim], never corrupted; call in eval mode."""
        return self._encode(batch, corrupt=False)[0]

    def forward(self, batch: EventBatch) -> dict:
        """{"z", "logits": {field: [B, L, card]}, "numeric": [B, L, F]}; corrupted when training.

        Without the reconstruction objective there is no decoder: {"z"} only.
        """
        z, events = self._encode(batch, corrupt=self.training)
        if not self.reconstructs:
            return {"z": z}
        out = self.heads(self.decoder(z, events, batch.lengths))
        out["z"] = z
        return out

    def contrastive_loss(self, batch: EventBatch, generator: torch.Generator | None = None) -> torch.Tensor:
        """InfoNCE over n_views random sub-sequence views per customer, encoded to z."""
        o = self.contrastive_options
        views, _ = subsequence_views(batch, o["n_views"], o["min_frac"], o["max_frac"], generator=generator)
        z, _ = self._encode(views, corrupt=self.training)
        return info_nce(z, o["n_views"], o["temperature"])

    def future_loss(
        self, batch: EventBatch, generator: torch.Generator | None = None,
        term_weights: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Predict the summary of the window after a random cut time from z of the history before it.

        Training draws `n_cuts` independent cuts per customer (the loss is the mean over all of
        them); evaluation one, the same ones the constant guess is scored on. `term_weights`, when
        given, receives each term's weight (the customers it is a mean over).
        """
        head = self.future_head
        if self.training:
            batch = repeat_batch(batch, head.options["n_cuts"])
        cut_age, k, usable = head.targets.sample_cuts(batch, head.options["horizon_days"], generator)
        z, _ = self._encode(head.targets.prefix(batch, cut_age, k), corrupt=self.training)
        raw, weights = head.raw_terms(head(z), head.compute_targets(batch, cut_age, k), usable)
        total, terms = head.combine(raw)
        if term_weights is not None:
            term_weights.update({name: weights[name.removesuffix("_abs")] for name in terms if name != "future_abs"})
        return total, terms

    def objective_losses(
        self, batch: EventBatch, with_accuracy: bool = False, generator: torch.Generator | None = None,
        term_weights: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(weighted total, {term: loss}, {categorical field: accuracy}) over the objectives.

        Terms are the reconstruction fields' losses, "contrastive", and the future-summary
        terms ("future" and its parts, see FutureSummaryHead.combine). With reconstruction alone
        at weight 1 this is exactly the reconstruction loss. `term_weights` receives the future
        parts' weights (see future_loss).
        """
        total = None
        losses: dict[str, torch.Tensor] = {}
        accs: dict[str, torch.Tensor] = {}
        if self.reconstructs:
            recon, losses, accs = self.loss_fn(self(batch), batch, with_accuracy=with_accuracy)
            w = self.objective_weights["reconstruction"]
            total = recon if w == 1.0 else w * recon
            if len(self.objective_weights) > 1:
                losses["reconstruction"] = recon
        if "contrastive" in self.objective_weights:
            contrast = self.contrastive_loss(batch, generator)
            losses["contrastive"] = contrast
            term = self.objective_weights["contrastive"] * contrast
            total = term if total is None else total + term
        if "future" in self.objective_weights:
            future, parts = self.future_loss(batch, generator, term_weights)
            losses["future"] = future
            losses.update(parts)
            term = self.objective_weights["future"] * future
            total = term if total is None else total + term
        return total, losses, accs

    # ---- Lightning hooks -----------------------------------------------------------------

    @property
    def events_seen(self) -> int:
        """Real events trained on since this fit started (for events/s); one host sync."""
        return 0 if self._events_seen is None else int(self._events_seen)

    def on_fit_start(self) -> None:
        hparams = {k: v for k, v in self.hparams.items() if k != "data_state"}
        for logger in self.loggers:
            logger.log_hyperparams(hparams)

    def on_train_start(self) -> None:
        self._events_seen = None

    def training_step(self, batch: EventBatch, batch_idx: int) -> torch.Tensor:
        loss, losses, _ = self.objective_losses(batch)
        # Checked before backward, so a bad batch never reaches the weights. One host sync.
        if not torch.isfinite(loss):
            self._raise_diverged(loss, losses, batch, batch_idx)
        n = batch.lengths.sum()
        self._events_seen = n if self._events_seen is None else self._events_seen + n
        size = len(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        # Each self.log call costs ~0.1-0.3 ms of CPU, too much per field on every fast GPU
        # step, so the per-field terms are logged only on the steps the logger writes.
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            for name, value in losses.items():
                self.log(f"train/loss_{name}", value, batch_size=size)
        return loss

    def _raise_diverged(self, loss, losses, batch: EventBatch, batch_idx: int) -> None:
        bad_fields = [name for name, value in losses.items() if not torch.isfinite(value)]
        real = batch.numeric[batch.mask]
        bad_inputs = {
            name: int((~torch.isfinite(real[:, j])).sum())
            for j, name in enumerate(self.spec.numeric)
            if not torch.isfinite(real[:, j]).all()
        }
        hint = (
            f" The batch itself holds non-finite numeric inputs (column: count) {bad_inputs}: "
            "check the data preparation."
            if bad_inputs
            else " Inputs are finite: lower the learning rate (now "
            f"{self.hparams.lr}), keep gradient clipping on, or try precision 32 to rule out overflow."
        )
        raise TrainingDivergedError(
            f"Training diverged: loss is {loss.item()} at epoch {self.current_epoch}, batch {batch_idx} "
            f"(global step {self.global_step}); non-finite terms: {bad_fields}.{hint}"
        )

    def on_validation_epoch_start(self) -> None:
        self._val_sums: dict[str, list[torch.Tensor]] = {}

    def _accumulate(self, name: str, value: torch.Tensor, weight) -> None:
        weight = torch.as_tensor(weight, dtype=torch.float32, device=value.device)
        sums = self._val_sums.setdefault(name, [torch.zeros((), device=value.device), torch.zeros((), device=value.device)])
        sums[0] += value.detach().float() * weight
        sums[1] += weight

    def validation_step(self, batch: EventBatch, batch_idx: int) -> None:
        generator = None
        if {"contrastive", "future"} & set(self.objective_weights):
            # Fixed views and prefixes per batch, so the validation loss (which checkpointing and early
            # stopping monitor) does not move with the draw of the views.
            generator = torch.Generator(device=batch.lengths.device).manual_seed(batch_idx)
        weights: dict[str, torch.Tensor] = {}
        loss, losses, accs = self.objective_losses(batch, with_accuracy=True, generator=generator, term_weights=weights)
        size = len(batch)
        future = "future" in self.objective_weights
        if future:
            # the rest of the total, per batch; the future part is rebuilt from its epoch-level terms
            loss = loss - self.objective_weights["future"] * losses["future"]
        self._accumulate("loss", loss, size)
        for name, value in losses.items():
            if not (future and name.startswith("future")):
                self._accumulate(f"loss_{name}", value, size)
            elif name in weights:
                self._accumulate(f"loss_{name}", value, weights[name])
        for name, value in accs.items():
            self._accumulate(f"acc_{name}", value, size)

    def on_validation_epoch_end(self) -> None:
        """Log every validation metric as a mean over customers (a future term over the customers
        it is defined for, as the constant guess is scored), summed over ranks first."""
        sums = getattr(self, "_val_sums", None)
        if not sums:
            return
        names = list(sums)
        stacked = torch.stack([torch.stack(sums[name]) for name in names])  # [n, 2]
        if self.trainer.world_size > 1:
            stacked = self.trainer.strategy.reduce(stacked, reduce_op="sum")
        means = dict(zip(names, (stacked[:, 0] / stacked[:, 1].clamp_min(1.0)).unbind()))
        total = means.pop("loss")
        head = self.future_head
        if "future" in self.objective_weights:
            raw = {name: means[f"loss_{name}_abs" if head.options["normalise"] else f"loss_{name}"] for name in head.term_names}
            future, terms = head.combine(raw)
            means.update({f"loss_{name}": value for name, value in terms.items()})
            means["loss_future"] = future
            total = total + self.objective_weights["future"] * future
        self.log("val/loss", total, prog_bar=True)
        for name, value in means.items():
            self.log(f"val/{name}", value)
        self._val_sums = {}

    def predict_step(self, batch: EventBatch, batch_idx: int) -> dict[str, torch.Tensor]:
        return {"customer_index": batch.customer_index, "embedding": self.encode(batch).float()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A checkpoint written before the future head had term scales and top-k value mixes
        (every code its own class, the absolute terms summed): rebuild the head that way, so its
        weights load and the model predicts what it was trained to."""
        state, head = checkpoint.get("state_dict", {}), self.future_head
        if head is None or not state or all(head.options[k] == v for k, v in LEGACY.items()):
            return  # nothing to rebuild (a model trained without both today needs no change)
        if "future_head.term_scale" not in state and not any(key.startswith("future_head.mix_lookup_") for key in state):
            options = {**head.options, **LEGACY}
            self.future_head = FutureSummaryHead(self.spec, self.hparams.embedding_dim, self.hparams.d_model, options)
            self.hparams.future = options

    def configure_optimizers(self):
        """AdamW, no decay on biases, norms and embedding tables; linear warm-up, cosine to 0."""
        embedding_params = {id(p) for m in self.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
        decay, no_decay = [], []
        for p in self.parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 and id(p) not in embedding_params else no_decay).append(p)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.hparams.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hparams.lr,
            fused=self.device.type == "cuda",
        )
        total = float(self.trainer.estimated_stepping_batches)
        warmup = self.hparams.warmup_steps
        if warmup < 1:
            warmup = warmup * total if math.isfinite(total) else 0.0

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not math.isfinite(total):
                return 1.0
            progress = min(1.0, (step - warmup) / max(1.0, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
