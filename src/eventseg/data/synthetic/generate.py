"""generate_synthetic: customers -> history -> outcomes, then (optionally) the months after."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .archetypes import (
    ARCHETYPE_NAMES,
    ARCHETYPES,
    BRIEF_SHARE,
    CATEGORIES,
    CHANNELS,
    EVENT_TYPES,
    ID_COL,
    PRICE,
    SHARES,
    SPEND_SIGMA,
    column,
    per_archetype,
)  # fmt: skip
from .continuation import draw_migrations, simulate_later
from .visits import DAY, Customers, Events, place_on_calendar, sigmoid, visit_events


@dataclass
class SyntheticData:
    """What generate_synthetic returns; `later_events` is empty unless months_after > 0."""

    events: pd.DataFrame  # customer_id, ts, event_type, category, channel, amount
    labels: pd.DataFrame  # customer_id, purchase_within_{H}d, churn_{H}d, spend_{H}d
    # customer_id, archetype, p_purchase_within_{H}d, p_churn_{H}d, expected_spend_{H}d
    # (+ migration_date, archetype_after when months_after > 0)
    truth: pd.DataFrame
    cutoff: pd.Timestamp
    params: dict = field(default_factory=dict)  # generator arguments, for the sidecars
    later_events: pd.DataFrame | None = None  # like events, in [cutoff, cutoff + months_after)

    def __post_init__(self):
        if self.later_events is None:
            self.later_events = self.events.iloc[:0].copy()

    def events_full(self) -> pd.DataFrame:
        """History and the months after it in one shuffled log: what a monitoring run reads."""
        full = pd.concat([self.events, self.later_events], ignore_index=True)
        # a fixed permutation: the file is reproducible and nothing can rely on row order
        return full.iloc[np.random.default_rng(0).permutation(len(full))].reset_index(drop=True)


def _check(n_customers, days, horizon_days, start, months_after, migration_share) -> pd.Timestamp:
    if int(n_customers) < 1:
        raise ValueError(f"n_customers must be >= 1, got {n_customers!r}")
    if int(horizon_days) < 1:
        raise ValueError(f"horizon_days must be >= 1, got {horizon_days!r}")
    if int(days) < 2 * int(horizon_days):
        raise ValueError(
            f"days must be >= 2 * horizon_days (the recent trend compares the last two "
            f"horizons with earlier history), got days={days!r}, horizon_days={horizon_days!r}"
        )
    if isinstance(months_after, bool) or not isinstance(months_after, numbers.Integral) or months_after < 0:
        raise ValueError(f"months_after must be a whole number of months >= 0, got {months_after!r}")
    if not isinstance(migration_share, numbers.Real) or not 0 <= migration_share <= 1:
        raise ValueError(f"migration_share must be a number in [0, 1], got {migration_share!r}")
    try:
        ts = pd.Timestamp(start)
    except (ValueError, TypeError) as e:
        raise ValueError(f"start must be a date like '2025-01-01', got {start!r}") from e
    if ts.tz is not None:
        raise ValueError(f"start must be a naive date (no time zone), got {start!r}")
    return ts.normalize()


def _strings(codes: np.ndarray, names: tuple[str, ...]) -> pd.Series:
    """Codes -> plain string column (an object take is several times faster than a Categorical cast)."""
    return pd.Series(np.asarray(names, dtype=object)[codes], dtype="str")


def _frame(ev: Events, t0: pd.Timestamp, customer_id: np.ndarray, perm: np.ndarray) -> pd.DataFrame:
    """The public event table, rows in the order `perm`."""
    ts = (np.datetime64(t0.to_datetime64(), "s") + ev.sec[perm].astype("timedelta64[s]")).astype(
        "datetime64[ns]"
    )
    return pd.DataFrame(
        {
            ID_COL: customer_id[ev.cust[perm]].astype(np.int64),
            "ts": ts,
            "event_type": _strings(ev.etype[perm], EVENT_TYPES),
            "category": _strings(ev.cat[perm], CATEGORIES),
            "channel": _strings(ev.chan[perm], CHANNELS),
            "amount": ev.amount[perm].astype(np.float64),
        }
    )


def _customers(rng, n: int, D: int) -> tuple[Customers, np.ndarray, np.ndarray]:
    """Archetypes and latents, then the history's visits: customer and calendar day of each."""
    arch = rng.choice(len(ARCHETYPES), size=n, p=SHARES)
    z_act, z_prop, z_basket = rng.standard_normal((3, n))
    hour_shift = np.rint(rng.normal(0, 1.2, n)).astype(np.int64)
    pref_weekday = rng.integers(0, 7, n)
    fav = np.stack([per_archetype(rng, arch, "categories") for _ in range(3)], axis=1)
    fav_channel = per_archetype(rng, arch, "channels")
    brief = rng.random(n) < BRIEF_SHARE
    late = column("late_start")[arch]
    joined_late = ~late & (rng.random(n) < 0.25)  # some ordinary customers join mid-year
    win_start = np.where(late, D - rng.uniform(14, 100, n), 0.0)
    win_start = np.where(joined_late, rng.uniform(0, 0.7 * D, n), np.clip(win_start, 0, None))
    win_len = D - win_start
    rate = column("visits_per_year")[arch] * win_len / 365.0 * np.exp(0.6 * z_act - 0.18)
    n_visits = np.where(brief, 1, np.maximum(1, rng.poisson(rate)))

    # visits placed in the window by the archetype's trajectory
    V = int(n_visits.sum())
    vc = np.repeat(np.arange(n), n_visits)  # customer of each visit
    rank = np.arange(V) - np.repeat(np.cumsum(n_visits) - n_visits, n_visits)
    traj = np.array([a.trajectory for a in ARCHETYPES])[arch[vc]]
    u = rng.random(V)
    decay_k = rng.uniform(2.5, 4.5, n)  # individual decay speed
    k = decay_k[vc]
    decay = -np.log1p(-u * -np.expm1(-k)) / k  # inverse CDF of exp(-k t) on [0, 1]
    pos = np.select(
        [traj == "decay", traj == "ramp", traj == "regular"],
        [decay, 1.0 - decay, (rank + rng.uniform(0.25, 0.75, V)) / n_visits[vc]],
        default=u,
    )
    day = np.floor(win_start[vc] + pos * win_len[vc]).astype(np.int64)
    c = Customers(
        arch=arch, z_act=z_act, z_prop=z_prop, z_basket=z_basket, hour_shift=hour_shift,
        pref_weekday=pref_weekday, fav=fav, fav_channel=fav_channel, brief=brief,
        win_start=win_start, win_len=win_len, expected_visits=rate, n_visits=n_visits,
        decay_k=decay_k,
    )  # fmt: skip
    return c, vc, day


def _outcomes(rng, c: Customers, vc, visit_sec, D: int, H: int) -> tuple[dict, dict]:
    """Label and true-probability columns for the horizon after the cutoff (see the docstring)."""
    n = len(c.arch)
    arch = c.arch
    vday = visit_sec / DAY
    first = np.full(n, np.inf)
    np.minimum.at(first, vc, vday)
    recent_from = D - 2 * H
    n_recent = np.bincount(vc, weights=vday >= recent_from, minlength=n)
    r_recent = n_recent / np.clip(D - first, H, 2 * H) * H  # visits per horizon, lately
    early_span = recent_from - first
    r_early = np.where(
        early_span >= H, (c.n_visits - n_recent) / np.maximum(early_span, H) * H, r_recent
    )
    trend = np.clip(np.log((r_recent + 0.5) / (r_early + 0.5)), -3, 3)
    p_active = sigmoid(
        -0.9 + column("active_effect")[arch] + 1.1 * np.log1p(r_recent) + 0.5 * trend + 0.4 * c.z_act
    )
    p_buy = sigmoid(
        -0.2 + column("buy_effect")[arch] + 0.5 * trend + 0.3 * np.log1p(r_recent) + 0.7 * c.z_prop
    )
    p_purchase = p_active * p_buy
    # expected basket: the purchase-amount model averaged over where this customer shops
    price_c = 0.7 * (PRICE[c.fav] @ np.array([0.5, 0.3, 0.2])) + 0.3 * (
        np.stack([a.categories for a in ARCHETYPES]) @ PRICE
    )[arch]
    spend_if_buy = price_c * c.basket * (1 + 0.1 * np.minimum(r_recent, 20))
    active = rng.random(n) < p_active
    purchased = active & (rng.random(n) < p_buy)
    spend = np.where(
        purchased,
        np.round(spend_if_buy * rng.lognormal(-0.5 * SPEND_SIGMA**2, SPEND_SIGMA, n), 2),
        0.0,
    )
    labels = {
        f"purchase_within_{H}d": purchased.astype(np.int64),
        f"churn_{H}d": (~active).astype(np.int64),
        f"spend_{H}d": spend,
    }
    truth = {
        "archetype": _strings(arch, ARCHETYPE_NAMES),
        f"p_purchase_within_{H}d": p_purchase,
        f"p_churn_{H}d": 1.0 - p_active,
        f"expected_spend_{H}d": p_purchase * spend_if_buy,
    }
    return labels, truth


def generate_synthetic(
    n_customers: int = 20_000,
    seed: int = 0,
    start: str = "2025-01-01",
    days: int = 365,
    horizon_days: int = 30,
    months_after: int = 0,
    migration_share: float = 0.2,
) -> SyntheticData:
    """Simulate `days` of history from `start` (a date; midnight) for `n_customers`, plus outcomes.

    Deterministic in `seed`. Events lie in [start, cutoff) with cutoff = start + days; labels
    and truth describe the `horizon_days` after the cutoff. With `months_after` > 0,
    `later_events` continue the same customers for that many calendar months after the
    cutoff, with `migration_share` of the loyal customers starting to lapse on a planted date;
    the history, labels and existing truth columns do not depend on either argument.
    """
    t0 = _check(n_customers, days, horizon_days, start, months_after, migration_share)
    n, D, H, M = int(n_customers), int(days), int(horizon_days), int(months_after)
    rng = np.random.default_rng(seed)
    later_rng = rng.spawn(1)[0]  # its own stream: the history never depends on the continuation
    cutoff = t0 + pd.Timedelta(days=D)

    c, vc, day = _customers(rng, n, D)
    day, hour = place_on_calendar(rng, c, vc, day, t0.weekday(), 0, D)
    visit_sec, history = visit_events(rng, c, vc, day, hour, D)
    before = history.sec < D * DAY
    overflow, history = history.select(~before), history.select(before)  # late refunds
    customer_id = np.sort(rng.choice(9_000_000, size=n, replace=False)) + 1_000_000
    events = _frame(history, t0, customer_id, rng.permutation(len(history.sec)))
    label_cols, truth_cols = _outcomes(rng, c, vc, visit_sec, D, H)
    labels = pd.DataFrame({ID_COL: customer_id, **label_cols})
    truth = pd.DataFrame({ID_COL: customer_id, **truth_cols})
    params = dict(
        n_customers=n, seed=seed, start=str(t0.date()), days=D, horizon_days=H,
        months_after=M, migration_share=float(migration_share),
    )  # fmt: skip
    if M == 0:
        return SyntheticData(events, labels, truth, cutoff, params)

    end = (cutoff + pd.DateOffset(months=M) - t0).days
    last_migration = (cutoff + pd.DateOffset(months=M - 2) - t0).days
    migration_day = draw_migrations(later_rng, c, D, last_migration, float(migration_share))
    later = simulate_later(later_rng, c, t0.weekday(), D, end, migration_day)
    later = Events.concat(overflow, later)
    later = later.select(later.sec < end * DAY)  # refunds due after the last month are not seen
    later_events = _frame(later, t0, customer_id, later_rng.permutation(len(later.sec)))
    migrated = ~np.isnan(migration_day)
    truth["migration_date"] = (t0 + pd.to_timedelta(migration_day, unit="D")).astype("datetime64[ns]")
    truth["archetype_after"] = truth["archetype"].where(~migrated, "lapsed")
    return SyntheticData(events, labels, truth, cutoff, params, later_events)
