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

Raw units (days, amounts) are recovered from the standardised features with the scalers in
the FeatureSpec. Everything runs on the batch's device with no host sync.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eventseg.data.batch import EventBatch, FeatureSpec
from eventseg.data.encoders import signed_log1p

DEFAULTS = {"horizon_days": 30.0, "huber_delta": 1.0}
AGE = "time_log_age"


def future_options(options: dict | None) -> dict:
    """Validated options with defaults filled in."""
    options = dict(options or {})
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown future options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    out = {k: float(options.get(k, v)) for k, v in DEFAULTS.items()}
    if out["horizon_days"] <= 0:
        raise ValueError(f"future horizon_days must be > 0, got {out['horizon_days']}")
    return out


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
        return EventBatch(batch.categorical, numeric, k, batch.customer_index)

    def compute(self, batch: EventBatch, cut_age: torch.Tensor, k: torch.Tensor, horizon_days: float,
                cardinality: dict[str, int]) -> dict:
        """Targets for the window [cut, cut + horizon_days): events whose age to the anchor is
        in (cut_age - horizon_days, cut_age].

        {"count": log1p(events in window) [B], "n_window": events in window [B],
        "active_days": log1p(distinct days with an event in the window) [B] — visits, which
        unlike events do not grow with basket size (one grocery trip can be 30 line items),
        "next_days": log1p(days from the cut to the next event) [B], "next_seen": bool [B]
        (False: no later event in the data, so next_days is a lower bound: the days from the
        cut to the anchor), "shares": {field: [B, cardinality] share of each value among
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
            counts = weight.new_zeros(len(k), cardinality[name]).scatter_add_(1, batch.categorical[..., i], weight)
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
    """z of a prefix -> predicted summary of the window after it, and the loss against it."""

    def __init__(self, spec: FeatureSpec, embedding_dim: int, hidden: int, options: dict | None = None):
        super().__init__()
        self.options = future_options(options)
        self.targets = FutureTargets(spec)
        self.cardinality = dict(spec.categorical)
        self.trunk = nn.Sequential(nn.Linear(embedding_dim, hidden), nn.GELU())
        self.scalars = nn.Linear(hidden, 3 + len(self.targets.numeric))  # count, active days, next_days, sums
        self.values = nn.ModuleDict({name: nn.Linear(hidden, card) for name, card in self.cardinality.items()})

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

    def loss(self, pred: dict, target: dict, usable: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total, {term: loss}); each term a mean over usable customers (0 if none are)."""
        delta = self.options["huber_delta"]
        w = usable.float()

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
        active = w * (target["n_window"] > 0).float()  # a value mix exists only where the window has events
        for name, logits in pred["logits"].items():
            ce = -(target["shares"][name] * F.log_softmax(logits, dim=-1)).sum(1)
            terms[f"future_{name}_mix"] = mean(ce, active)
        total = torch.stack(list(terms.values())).sum()
        return total, terms


def constant_baseline(head: FutureSummaryHead, batches, seed: int = 0) -> dict[str, float]:
    """Future-objective loss terms of a constant guess (the mean target, the average value
    mix) over `batches`: the objective's loss means something only beside this.

    Two streaming passes over the (re-iterable) batches with the same cuts: the first sums
    the targets, the second scores the constant; memory stays O(vocabulary), not O(customers).
    """
    horizon = head.options["horizon_days"]

    def targets():
        for i, batch in enumerate(batches):
            generator = torch.Generator(device=batch.lengths.device).manual_seed(seed + i)
            cut_age, k, usable = head.targets.sample_cuts(batch, horizon, generator)
            target = head.targets.compute(batch, cut_age, k, horizon, head.cardinality)
            yield target, usable.float(), usable.float() * (target["n_window"] > 0).float()

    sums: dict = {}
    for target, w, active in targets():
        seen = w * target["next_seen"].float()
        for key, value, weight in (
            ("count", target["count"], w), ("active_days", target["active_days"], w),
            ("next_days", target["next_days"], seen), ("sums", target["sums"], w),
            *((("mix", name), share, active) for name, share in target["shares"].items()),
        ):
            total, n = sums.get(key, (0.0, 0.0))
            sums[key] = (total + (value * weight.view(-1, *([1] * (value.dim() - 1)))).sum(0), n + weight.sum())
    if not sums:
        return {}
    mean = {key: total / max(float(n), 1.0) for key, (total, n) in sums.items()}

    scored: dict[str, list[float]] = {}
    for target, w, active in targets():
        b = len(w)
        pred = {
            "count": mean["count"].expand(b), "active_days": mean["active_days"].expand(b),
            "next_days": mean["next_days"].expand(b), "sums": mean["sums"].expand(b, -1),
            "logits": {name: torch.log(mean["mix", name] + 1e-8).expand(b, -1) for name in head.cardinality},
        }
        _, terms = head.loss(pred, target, w > 0)
        for name, value in terms.items():  # each term is a mean over its batch's customers: re-weight
            weight = float(active.sum() if name.endswith("_mix") else w.sum())
            total, n = scored.get(name, (0.0, 0.0))
            scored[name] = (total + float(value) * weight, n + weight)
    terms = {name: total / max(n, 1.0) for name, (total, n) in scored.items()}
    return {"loss_future": sum(terms.values()), **{f"loss_{name}": v for name, v in terms.items()}}
