"""Future-summary objective: from the embedding of the history before a cut time, predict what
the customer does in the next `horizon_days` — how many events on how many days, the mix of each categorical
field's values, the sum of each numeric field (spend), and the days to the next event.

The target comes from the data itself (no labels) and is exactly what propensity heads are
later asked for, so z learns the forward-looking part of a history that reconstruction
spends no effort on. The cut is a random time, like a label cutoff: the prefix is every
event strictly before it, with event ages re-measured to the cut (so the encoder sees the
same thing it sees at embedding time, when ages are measured to the cutoff or the table's
last event: recency included), and the window is [cut, cut + horizon). Cuts are drawn so the
whole window lies before the data's anchor, which makes an empty window a real observation
("went quiet"), not missing data. Every target uses only events at or after the cut.

Two things keep the terms comparable (options `top_k` and `normalise`):
- a categorical field's value mix is over its `top_k` most frequent values, "missing" and
  "other" (every rarer value, the rare and unseen buckets): a 5,000-value field then neither
  dominates the loss (a cross-entropy over 5,000 classes is large even at its best) nor is
  noise (a share spread over 5,000 values that each customer buys once is unpredictable);
- each term is divided by the loss of the constant guess (the training customers' mean
  target) set with `FutureSummaryHead.set_term_scale`, and the objective is their mean: 1.0 is
  "no better than the constant", whatever the field, and a term below 1.0 beats it. The
  absolute terms are reported beside them as `<term>_abs`.

Raw units (days, amounts) are recovered from the standardised features with the scalers in
the FeatureSpec. Everything runs on the batch's device with no host sync.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from eventseg.data.batch import MISSING, N_SPECIAL, EventBatch, FeatureSpec
from eventseg.data.encoders import signed_log1p

# top_k: value-mix classes per categorical field (None: every code of the vocabulary, as
# checkpoints written before top_k existed); normalise: divide each term by its constant
# guess's loss; n_cuts: random cuts per customer in each training step (the loss is their mean).
DEFAULTS = {"horizon_days": 30.0, "huber_delta": 1.0, "top_k": 50, "normalise": True, "n_cuts": 1}
LEGACY = {"top_k": None, "normalise": False}  # what a checkpoint without term scales was trained with
AGE = "time_log_age"
OTHER, MISSING_CLASS = 0, 1  # value-mix classes before the top-k values
MIN_TERM_SCALE = 1e-2  # a term whose constant guess is (almost) perfect is not blown up by 1/0


def future_options(options: dict | None) -> dict:
    """Validated options with defaults filled in."""
    options = dict(options or {})
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown future options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **options}
    out["horizon_days"], out["huber_delta"] = float(out["horizon_days"]), float(out["huber_delta"])
    if out["horizon_days"] <= 0:
        raise ValueError(f"future horizon_days must be > 0, got {out['horizon_days']}")
    if out["top_k"] is not None and (isinstance(out["top_k"], bool) or int(out["top_k"]) != out["top_k"] or out["top_k"] < 1):
        raise ValueError(f"future top_k must be a positive integer or null (every value), got {out['top_k']!r}")
    if isinstance(out["n_cuts"], bool) or int(out["n_cuts"]) != out["n_cuts"] or out["n_cuts"] < 1:
        raise ValueError(f"future n_cuts must be a positive integer, got {out['n_cuts']!r}")
    out["top_k"] = None if out["top_k"] is None else int(out["top_k"])
    out["n_cuts"], out["normalise"] = int(out["n_cuts"]), bool(out["normalise"])
    return out


def mix_lookup(cardinality: int, top_k: int | None) -> torch.Tensor | None:
    """Code -> value-mix class: OTHER, MISSING_CLASS, then the top_k most frequent values
    (vocabulary codes are frequency-ordered, so those are codes N_SPECIAL .. N_SPECIAL + top_k - 1).
    Padding, unseen, rare and every value past the top_k are OTHER. None: no mapping (top_k None)."""
    if top_k is None:
        return None
    lut = torch.full((cardinality,), OTHER, dtype=torch.long)
    lut[MISSING] = MISSING_CLASS
    n = max(0, min(top_k, cardinality - N_SPECIAL))
    lut[N_SPECIAL : N_SPECIAL + n] = torch.arange(2, 2 + n)
    return lut


def repeat_batch(batch: EventBatch, n: int) -> EventBatch:
    """The batch n times over (rows i, i + B, ...: the same customer), for n independent cuts."""
    if n == 1:
        return batch
    return batch.apply(lambda t: t.repeat(n, *([1] * (t.dim() - 1))))


def _raw(values: torch.Tensor, scaler: dict) -> torch.Tensor:
    """Invert the signed-log1p robust scaling (clipped values stay at the clip)."""
    y = values.float() * scaler["scale"] + scaler["center"]
    return torch.sign(y) * torch.expm1(y.abs())


class FutureTargets:
    """Reads raw days and amounts out of a batch's standardised features."""

    def __init__(self, spec: FeatureSpec):
        if AGE not in spec.scalers or AGE not in spec.numeric:
            raise ValueError(
                "the future-summary objective needs the time scalers in the feature spec, which data prepared "
                "by this eventseg version has; re-run prepare (or train from the events) to rebuild it"
            )
        self.age_column = spec.numeric.index(AGE)
        self.age_scaler = spec.scalers[AGE]
        self.categorical = list(spec.categorical)
        # user numeric fields: those with a scaler and a `<name>__missing` flag column
        self.numeric = [c for c in spec.numeric if c in spec.scalers and f"{c}__missing" in spec.numeric]
        self.numeric_columns = [spec.numeric.index(c) for c in self.numeric]
        self.missing_columns = [spec.numeric.index(f"{c}__missing") for c in self.numeric]
        self.numeric_scalers = [spec.scalers[c] for c in self.numeric]

    def age_days(self, batch: EventBatch) -> torch.Tensor:
        """[B, L] days from each event to the anchor time (padding: anything)."""
        return _raw(batch.numeric[..., self.age_column], self.age_scaler).clamp_min(0.0)

    def sample_cuts(
        self, batch: EventBatch, horizon_days: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cut_age [B] days before the anchor, prefix length k [B], usable [B] bool).

        The cut is uniform in time between the customer's first event and `horizon_days`
        before the anchor, so the prefix holds at least one event and the window is whole.
        A customer whose first event is within the horizon of the anchor has no such cut:
        not usable (k = its length, cut_age = 0; its loss is masked out).
        """
        age = self.age_days(batch)
        first = age[:, 0]
        usable = first > horizon_days
        u = torch.rand(first.shape, device=first.device, generator=generator)
        cut_age = torch.where(usable, horizon_days + u * (first - horizon_days), torch.zeros_like(first))
        k = torch.where(usable, ((age > cut_age[:, None]) & batch.mask).sum(1), batch.lengths)
        return cut_age, k.clamp_min(1), usable

    def prefix(self, batch: EventBatch, cut_age: torch.Tensor, k: torch.Tensor) -> EventBatch:
        """The first k events with ages re-measured to the cut (the encoders ignore what lies
        past k), as the model would see that history if the cut were the cutoff."""
        age = (self.age_days(batch) - cut_age[:, None]).clamp_min(0.0)
        s = self.age_scaler
        scaled = ((torch.log1p(age) - s["center"]) / s["scale"]).clamp(-s["clip"], s["clip"])
        numeric = batch.numeric.clone()
        numeric[..., self.age_column] = scaled.to(numeric.dtype)
        return dataclasses.replace(batch, numeric=numeric, lengths=k)  # every other field (earlier included) as is

    def compute(self, batch: EventBatch, cut_age: torch.Tensor, k: torch.Tensor, horizon_days: float,
                classes: dict[str, int], lookups: dict[str, torch.Tensor] | None = None) -> dict:
        """Targets for the window [cut, cut + horizon_days): events whose age to the anchor is
        in (cut_age - horizon_days, cut_age].

        {"count": log1p(events in window) [B], "n_window": events in window [B],
        "active_days": log1p(distinct days with an event in the window) [B] — visits, which
        unlike events do not grow with basket size (one grocery trip can be 30 line items),
        "next_days": log1p(days from the cut to the next event) [B], "next_seen": bool [B]
        (False: no later event in the data, so next_days is a lower bound: the days from the
        cut to the anchor), "shares": {field: [B, n_classes] share of each value-mix class among
        window events, zeros when the window is empty}, "sums": [B, n_numeric]
        signed_log1p(window sum of each numeric field), "in_window": bool [B, L]}.
        """
        mask = batch.mask
        age = self.age_days(batch)
        cut = cut_age[:, None]
        steps = torch.arange(mask.shape[1], device=mask.device)
        after = mask & (steps[None, :] >= k[:, None])  # events at or after the cut
        in_window = after & (age > cut - horizon_days)
        weight = in_window.float()
        count = weight.sum(1)
        day = torch.floor(age)  # day bins counted back from the anchor
        new_day = torch.ones_like(in_window)
        new_day[:, 1:] = day[:, 1:] != day[:, :-1]
        # the window's first event starts a day even if an event before the cut shares its day
        new_day[:, 1:] |= in_window[:, 1:] & ~in_window[:, :-1]
        active_days = (in_window & new_day).float().sum(1)
        next_seen = k < batch.lengths
        next_age = age.gather(1, k.clamp(max=mask.shape[1] - 1).unsqueeze(1))
        next_days = torch.where(next_seen.unsqueeze(1), cut - next_age, cut).squeeze(1).clamp_min(0.0)
        shares = {}
        for i, name in enumerate(self.categorical):
            codes = batch.categorical[..., i]
            if lookups is not None and name in lookups:
                codes = lookups[name].to(codes.device)[codes]
            counts = weight.new_zeros(len(k), classes[name]).scatter_add_(1, codes, weight)
            shares[name] = counts / count.clamp_min(1.0).unsqueeze(1)
        sums = [
            signed_log1p(torch.where(in_window & (batch.numeric[..., flag] < 0.5), _raw(batch.numeric[..., col], scaler), 0.0).sum(1))
            for col, flag, scaler in zip(self.numeric_columns, self.missing_columns, self.numeric_scalers)
        ]
        return {
            "count": torch.log1p(count),
            "n_window": count,
            "active_days": torch.log1p(active_days),
            "next_days": torch.log1p(next_days),
            "next_seen": next_seen,
            "shares": shares,
            "sums": torch.stack(sums, 1) if sums else count.new_zeros(len(k), 0),
            "in_window": in_window,
        }


class FutureSummaryHead(nn.Module):
    """z of a prefix -> predicted summary of the window after it, and the loss against it.

    Buffers (saved in checkpoints): each field's code -> value-mix class lookup, and
    `term_scale`, each term's constant-guess loss that the loss divides by (ones until
    `set_term_scale`; unused with normalise=False).
    """

    def __init__(self, spec: FeatureSpec, embedding_dim: int, hidden: int, options: dict | None = None):
        super().__init__()
        self.options = future_options(options)
        self.targets = FutureTargets(spec)
        self.cardinality = dict(spec.categorical)
        self.classes: dict[str, int] = {}
        for i, (name, card) in enumerate(self.cardinality.items()):
            lut = mix_lookup(card, self.options["top_k"])
            if lut is None:
                self.classes[name] = card
            else:
                self.register_buffer(f"mix_lookup_{i}", lut)  # field names may hold dots: buffers go by position
                self.classes[name] = int(lut.max()) + 1
        self.trunk = nn.Sequential(nn.Linear(embedding_dim, hidden), nn.GELU())
        self.scalars = nn.Linear(hidden, 3 + len(self.targets.numeric))  # count, active days, next_days, sums
        self.values = nn.ModuleDict({name: nn.Linear(hidden, self.classes[name]) for name in self.cardinality})
        self.term_names = ["future_count", "future_active_days", "future_next_days",
                           *(f"future_{name}_sum" for name in self.targets.numeric),
                           *(f"future_{name}_mix" for name in self.cardinality)]
        if self.options["normalise"]:
            self.register_buffer("term_scale", torch.ones(len(self.term_names)))

    def mix_lookups(self) -> dict[str, torch.Tensor]:
        """{field: code -> class} on the module's device (empty with top_k None)."""
        return {name: getattr(self, f"mix_lookup_{i}") for i, name in enumerate(self.cardinality)
                if hasattr(self, f"mix_lookup_{i}")}

    def compute_targets(self, batch: EventBatch, cut_age: torch.Tensor, k: torch.Tensor) -> dict:
        return self.targets.compute(batch, cut_age, k, self.options["horizon_days"], self.classes, self.mix_lookups())

    def set_term_scale(self, constant_terms: dict[str, float]) -> None:
        """Divide each term by this (its constant guess's loss, from `constant_term_losses`)."""
        if not self.options["normalise"]:
            return
        missing = set(self.term_names) - set(constant_terms)
        if missing:
            raise ValueError(f"no constant-guess loss for the terms {sorted(missing)}")
        values = [max(float(constant_terms[name]), MIN_TERM_SCALE) for name in self.term_names]
        self.term_scale.copy_(torch.tensor(values, dtype=self.term_scale.dtype))

    def forward(self, z: torch.Tensor) -> dict:
        h = self.trunk(z)
        scalars = self.scalars(h).float()
        return {
            "count": scalars[:, 0],
            "active_days": scalars[:, 1],
            "next_days": scalars[:, 2],
            "sums": scalars[:, 3:],
            "logits": {name: head(h).float() for name, head in self.values.items()},
        }

    def raw_terms(self, pred: dict, target: dict, usable: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """({term: absolute loss}, {term: its weight, the customers it is a mean over}); each
        term a mean over usable customers (value mixes: those whose window has events; 0 if none)."""
        delta = self.options["huber_delta"]
        w = usable.float()
        active = w * (target["n_window"] > 0).float()  # a value mix exists only where the window has events
        n_usable, n_active = w.sum(), active.sum()

        def mean(per_customer: torch.Tensor, weight: torch.Tensor = w) -> torch.Tensor:
            return (per_customer * weight).sum() / weight.sum().clamp_min(1.0)

        terms = {name: mean(F.huber_loss(pred[key], target[key], reduction="none", delta=delta))
                 for name, key in (("future_count", "count"), ("future_active_days", "active_days"))}
        # a censored next event (none seen before the anchor) only penalises predicting it too soon
        seen = target["next_seen"]
        guess = torch.where(seen, pred["next_days"], torch.minimum(pred["next_days"], target["next_days"]))
        terms["future_next_days"] = mean(F.huber_loss(guess, target["next_days"], reduction="none", delta=delta))
        if pred["sums"].shape[1]:
            err = F.huber_loss(pred["sums"], target["sums"], reduction="none", delta=delta)
            for j, name in enumerate(self.targets.numeric):
                terms[f"future_{name}_sum"] = mean(err[:, j])
        for name, logits in pred["logits"].items():
            ce = -(target["shares"][name] * F.log_softmax(logits, dim=-1)).sum(1)
            terms[f"future_{name}_mix"] = mean(ce, active)
        weights = {name: n_active if name.endswith("_mix") else n_usable for name in terms}
        return terms, weights

    def combine(self, raw: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total, {term: loss}) from absolute terms. Normalised: each term over its constant
        guess's loss, the total their mean (1.0 = the constant guess), and the absolute terms as
        `<term>_abs` plus their sum `future_abs`. Otherwise the absolute terms and their sum."""
        if not self.options["normalise"]:
            return torch.stack(list(raw.values())).sum(), dict(raw)
        values = torch.stack([raw[name] for name in self.term_names])
        scaled = values / self.term_scale.to(device=values.device, dtype=values.dtype)
        terms = dict(zip(self.term_names, scaled.unbind()))
        terms.update({f"{name}_abs": raw[name] for name in self.term_names})
        terms["future_abs"] = values.sum()
        return scaled.mean(), terms

    def loss(self, pred: dict, target: dict, usable: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total, {term: loss}); see `raw_terms` and `combine`."""
        return self.combine(self.raw_terms(pred, target, usable)[0])


def _scored_batches(head: FutureSummaryHead, batches, seed: int):
    """(targets, usable) per batch, with the cuts validation draws for batch i (seed + i)."""
    for i, batch in enumerate(batches):
        generator = torch.Generator(device=batch.lengths.device).manual_seed(seed + i)
        cut_age, k, usable = head.targets.sample_cuts(batch, head.options["horizon_days"], generator)
        yield head.compute_targets(batch, cut_age, k), usable


@torch.no_grad()
def constant_guess(head: FutureSummaryHead, batches, seed: int = 0) -> dict:
    """The constant guess: every target's mean over `batches` (the value mixes' average share),
    each over the customers its term is a mean over. One streaming pass, memory O(vocabulary)."""
    sums: dict = {}
    for target, usable in _scored_batches(head, batches, seed):
        w = usable.float()
        active = w * (target["n_window"] > 0).float()
        seen = w * target["next_seen"].float()
        for key, value, weight in (
            ("count", target["count"], w), ("active_days", target["active_days"], w),
            ("next_days", target["next_days"], seen), ("sums", target["sums"], w),
            *((("mix", name), share, active) for name, share in target["shares"].items()),
        ):
            total, n = sums.get(key, (0.0, 0.0))
            sums[key] = (total + (value * weight.view(-1, *([1] * (value.dim() - 1)))).sum(0), n + weight.sum())
    return {key: total / max(float(n), 1.0) for key, (total, n) in sums.items()}


@torch.no_grad()
def constant_term_losses(head: FutureSummaryHead, batches, seed: int = 0, guess: dict | None = None) -> dict[str, float]:
    """Each future term's absolute loss over `batches` when every customer gets the same
    `guess` (default: the mean target of these batches, `constant_guess`), averaged over
    customers as validation averages the model's. Streams the batches (re-iterable) once more.
    """
    guess = constant_guess(head, batches, seed) if guess is None else guess
    if not guess:
        return {}
    scored: dict[str, tuple[float, float]] = {}
    for target, usable in _scored_batches(head, batches, seed):
        b = len(usable)
        pred = {
            "count": guess["count"].expand(b), "active_days": guess["active_days"].expand(b),
            "next_days": guess["next_days"].expand(b), "sums": guess["sums"].expand(b, -1),
            "logits": {name: torch.log(guess["mix", name] + 1e-8).expand(b, -1) for name in head.cardinality},
        }
        terms, weights = head.raw_terms(pred, target, usable)
        for name, value in terms.items():  # each term is a mean over its batch's customers: re-weight
            weight = float(weights[name])
            total, n = scored.get(name, (0.0, 0.0))
            scored[name] = (total + float(value) * weight, n + weight)
    return {name: total / max(n, 1.0) for name, (total, n) in scored.items()}


def constant_baseline(head: FutureSummaryHead, batches, seed: int = 0, guess: dict | None = None) -> dict[str, float]:
    """The future objective's loss and terms for a constant guess over `batches`, in the units
    validation logs them (`loss_future`, `loss_future_<term>`, and with normalise the absolute
    `loss_future_abs`, `loss_future_<term>_abs`): the objective's loss means something only beside this.
    guess: the constant (`constant_guess` of the training customers, as training uses); default:
    the mean target of `batches` themselves (a constant that has seen the answers)."""
    raw = constant_term_losses(head, batches, seed, guess)
    if not raw:
        return {}
    total, terms = head.combine({name: torch.tensor(raw[name]) for name in head.term_names})
    return {"loss_future": float(total), **{f"loss_{name}": float(v) for name, v in terms.items()}}
