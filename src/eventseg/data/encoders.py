"""Encoders fitted on training customers and saved with the model as plain JSON.

- categorical: frequency-ordered vocabulary, capped, with rare / unseen / missing buckets;
- numeric: signed log1p, then robust standardisation (median, IQR), clipped, NaN flagged;
- time: log gap since the previous event, cyclic hour-of-day and day-of-week, log age of the
  event relative to the table's last event (or a cutoff), the same anchor for every customer.
Unseen values at scoring time map to the unseen bucket, never to an error.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eventseg.data.batch import MISSING, N_SPECIAL, RARE, UNSEEN, FeatureSpec, earlier_features
from eventseg.data.schema import EventSchema
from eventseg.run.artifacts import write_json

FORMAT_VERSION = 1
_FIT_SAMPLE = 1_000_000  # quantiles from a sample this size are exact to ~1e-3; full sorts cost seconds
RARE_SHARE_WARNING = 0.5  # a field whose rare bucket holds more of its events than this has (almost) no vocabulary
TIME_FEATURES = ("time_log_gap", "time_first_event", "time_hour_sin", "time_hour_cos", "time_week_sin", "time_week_cos", "time_log_age")


@dataclass
class CategoricalEncoder:
    """Maps values to codes: frequent values get their own code, the rest share buckets."""

    vocabulary: list[str]  # most frequent first; code = N_SPECIAL + position
    rare: list[str]  # seen in training, too rare for a code of their own

    @classmethod
    def fit(cls, values: pd.Series, max_size: int = 5000, min_count: int = 5, name: str | None = None) -> "CategoricalEncoder":
        """Fit on the training values. A field whose vocabulary collapses to (almost) only the
        rare bucket — most of its events have values seen fewer than min_count times, or past
        max_size — is a warning naming the field, the counts and the setting to change."""
        cat = _as_categorical(values)
        counts = np.bincount(cat.codes[cat.codes >= 0], minlength=len(cat.categories))
        names = cat.categories.astype(str).to_numpy()
        seen = counts > 0
        names, counts = names[seen], counts[seen]
        order = np.lexsort((names, -counts))  # by count, ties by name, so the fit is deterministic
        names, counts = names[order], counts[order]
        keep = np.zeros(len(names), dtype=bool)
        keep[:max_size] = True
        keep &= counts >= min_count
        total = int(counts.sum())
        if total and counts[~keep].sum() > RARE_SHARE_WARNING * total:
            warnings.warn(_collapse_message(name if name is not None else values.name, counts, keep, max_size, min_count),
                          stacklevel=2)
        return cls(vocabulary=names[keep].tolist(), rare=names[~keep].tolist())

    @property
    def cardinality(self) -> int:
        return N_SPECIAL + len(self.vocabulary)

    def transform(self, values: pd.Series) -> np.ndarray:
        """Codes for every row: vocabulary codes, RARE, UNSEEN, or MISSING for nulls."""
        cat = _as_categorical(values)
        lookup = {v: N_SPECIAL + i for i, v in enumerate(self.vocabulary)}
        lookup.update((v, RARE) for v in self.rare)
        per_category = np.array(
            [lookup.get(v, UNSEEN) for v in cat.categories.astype(str)] + [MISSING],
            dtype=np.int32,
        )
        return per_category[cat.codes]  # code -1 (null) indexes the trailing MISSING

    def to_dict(self) -> dict:
        return {"vocabulary": self.vocabulary, "rare": self.rare}

    @classmethod
    def from_dict(cls, d: dict) -> "CategoricalEncoder":
        return cls(vocabulary=list(d["vocabulary"]), rare=list(d["rare"]))


@dataclass
class NumericScaler:
    """Signed log1p then (x - median) / IQR, clipped; heavy tails stop dominating the loss."""

    center: float
    scale: float
    clip: float = 5.0

    @classmethod
    def fit(cls, values: np.ndarray, clip: float = 5.0, seed: int = 0) -> "NumericScaler":
        v = np.asarray(values)
        if len(v) > _FIT_SAMPLE:  # quantiles of a 1M sample are exact to ~1e-3; full sorts cost seconds
            v = v[np.random.default_rng(seed).integers(0, len(v), _FIT_SAMPLE)]
        v = signed_log1p(v.astype(np.float64))
        v = v[np.isfinite(v)]
        if len(v) == 0:
            return cls(center=0.0, scale=1.0, clip=clip)
        q25, center, q75 = np.percentile(v, [25, 50, 75])
        scale = q75 - q25
        if not scale > 1e-9:  # a mostly-constant field: fall back to spread, then to 1
            scale = float(np.std(v)) if np.std(v) > 1e-9 else 1.0
        return cls(center=float(center), scale=float(scale), clip=clip)

    def transform(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scaled float32 values (NaN -> 0, the median) and a float32 missing flag."""
        v = signed_log1p(np.asarray(values, dtype=np.float32))  # float32: half the memory traffic
        missing = np.isnan(v)
        v -= np.float32(self.center)
        v /= np.float32(self.scale)
        np.clip(v, -self.clip, self.clip, out=v)
        v[missing] = 0.0
        return v, missing.astype(np.float32)

    def to_dict(self) -> dict:
        return {"center": self.center, "scale": self.scale, "clip": self.clip}

    @classmethod
    def from_dict(cls, d: dict) -> "NumericScaler":
        return cls(**d)


def signed_log1p(x):
    """sign(x) * log1p(|x|): heavy-tailed amounts on a scale models can use. NumPy arrays in two
    passes over a fresh array of x's float dtype; torch tensors (the future targets) as tensors."""
    if not isinstance(x, np.ndarray):
        return x.sign() * x.abs().log1p()
    out = np.abs(x)
    np.log1p(out, out=out)
    return np.copysign(out, x, out=out)


@dataclass
class TimeEncoder:
    """Time as the model should see it: gaps and ages on a log scale, clock and week as circles."""

    gap: NumericScaler  # on hours since the previous event
    age: NumericScaler  # on days before the reference time

    @staticmethod
    def raw(ts_seconds: np.ndarray, first: np.ndarray, reference_seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gap in hours (NaN at a customer's first event) and age in days, for sorted events."""
        gap = np.empty(len(ts_seconds), dtype=np.float64)
        gap[0] = np.nan
        np.subtract(ts_seconds[1:], ts_seconds[:-1], out=gap[1:])
        gap[first] = np.nan
        gap /= 3600.0
        age = (reference_seconds - ts_seconds) / 86400.0
        return gap, age

    @classmethod
    def fit(cls, gap_hours: np.ndarray, age_days: np.ndarray) -> "TimeEncoder":
        return cls(gap=NumericScaler.fit(gap_hours), age=NumericScaler.fit(age_days))

    def transform(self, ts_seconds: np.ndarray, gap_hours: np.ndarray, age_days: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """float32 [n, len(TIME_FEATURES)], written into `out` when given (no extra copy)."""
        if out is None:
            out = np.empty((len(ts_seconds), len(TIME_FEATURES)), dtype=np.float32, order="F")
        out[:, 0], out[:, 1] = self.gap.transform(gap_hours)
        # angles in float32 (SIMD sin/cos); 1970-01-01 was a Thursday, so +3 days puts Monday at 0
        week_seconds = np.remainder(ts_seconds + 3 * 86400, 7 * 86400).astype(np.float32)
        day_angle = np.remainder(week_seconds, np.float32(86400)) * np.float32(2 * np.pi / 86400)
        week_angle = week_seconds * np.float32(2 * np.pi / (7 * 86400))
        out[:, 2] = np.sin(day_angle)
        out[:, 3] = np.cos(day_angle)
        out[:, 4] = np.sin(week_angle)
        out[:, 5] = np.cos(week_angle)
        out[:, 6] = self.age.transform(age_days)[0]
        return out

    def to_dict(self) -> dict:
        return {"gap": self.gap.to_dict(), "age": self.age.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "TimeEncoder":
        return cls(gap=NumericScaler.from_dict(d["gap"]), age=NumericScaler.from_dict(d["age"]))


@dataclass
class EventEncoders:
    """Everything needed to turn raw events into model features, for training and scoring alike."""

    schema: EventSchema
    categorical: dict[str, CategoricalEncoder]
    numeric: dict[str, NumericScaler]
    time: TimeEncoder

    @property
    def numeric_features(self) -> list[str]:
        """Float columns in store order: each numeric field, its missing flag, then time features."""
        names = []
        for col in self.schema.numeric:
            names += [col, f"{col}__missing"]
        return names + list(TIME_FEATURES)

    @property
    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec(
            categorical={c: self.categorical[c].cardinality for c in self.schema.categorical},  # store column order
            numeric=self.numeric_features,
            scalers={
                **{c: s.to_dict() for c, s in self.numeric.items()},
                "time_log_gap": self.time.gap.to_dict(),
                "time_log_age": self.time.age.to_dict(),
            },
            earlier=earlier_features(self.schema.numeric),
        )

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "schema": self.schema.to_dict(),
            "categorical": {c: e.to_dict() for c, e in self.categorical.items()},
            "numeric": {c: s.to_dict() for c, s in self.numeric.items()},
            "time": self.time.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "EventEncoders":
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"encoders have format_version {d.get('format_version')!r}; this eventseg reads "
                f"version {FORMAT_VERSION}. Re-run prepare/train with this version."
            )
        return cls(
            schema=EventSchema.from_config(d["schema"]),
            categorical={c: CategoricalEncoder.from_dict(e) for c, e in d["categorical"].items()},
            numeric={c: NumericScaler.from_dict(s) for c, s in d["numeric"].items()},
            time=TimeEncoder.from_dict(d["time"]),
        )

    def save(self, path: str | os.PathLike) -> None:
        write_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EventEncoders":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _collapse_message(name, counts: np.ndarray, keep: np.ndarray, max_size: int, min_count: int) -> str:
    """What went wrong with a field that is mostly rare bucket, and the setting that fixes it."""
    total = int(counts.sum())
    share = counts[~keep].sum() / total
    field = f"categorical field {name!r}" if name is not None else "a categorical field"
    head = (f"{field}: {len(counts):,} distinct values in the training events, but only {int(keep.sum()):,} get a code "
            f"of their own (seen at least data.encoders.min_count={min_count} times, at most "
            f"data.encoders.max_vocab={max_size:,}); {share:.0%} of its {total:,} events fall in the one shared rare "
            f"bucket, so the model cannot tell those values apart.")

    def covered(mask: np.ndarray) -> str:
        return f"{counts[mask].sum() / total:.0%}"

    fixes = []
    frequent = counts >= min_count
    if frequent.sum() > max_size:
        fixes.append(f"data.encoders.max_vocab={int(frequent.sum()):,} ({covered(frequent)} of the events get a code)")
    for lower in sorted({2, max(2, min_count // 2)}, reverse=True):
        kept = counts >= lower
        if lower < min_count and kept.sum() > keep.sum():
            also = f" with data.encoders.max_vocab={int(kept.sum()):,}" if kept.sum() > max_size else ""
            fixes.append(f"data.encoders.min_count={lower}{also} ({covered(kept)} of the events get a code)")
    fix = f"Fix: {' or '.join(fixes)}; or drop" if fixes else "Fix: drop"
    message = f"{head} {fix} the field or map it to a coarser one (a category instead of an item id)"
    if np.median(counts) < 2:
        message += "; most of its values are seen once: it looks like an id, not a category"
    return message + "."


def _as_categorical(values: pd.Series) -> pd.Categorical:
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.array
    return pd.Categorical(values)
