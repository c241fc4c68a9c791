"""The months after the cutoff: each customer's history process run on, plus planted migrations.

The model is described in the package docstring; this module only turns it into visits and
hands them to the same in-visit simulation as the history (`visits.py`).
"""

from __future__ import annotations

import numpy as np

from .archetypes import ARCHETYPE_NAMES, ARCHETYPES, LOYAL
from .visits import Customers, Events, place_on_calendar, visit_events

MIGRATED_RATE = 0.1  # a migrant's visit rate after the migration date, relative to before


def end_of_history_rate(c: Customers) -> np.ndarray:
    """Visits per day at the end of each customer's history (the rate the continuation keeps).

    The expected visits spread over the window give the flat rate; a decaying customer's
    density exp(-k t) normalised on the window, taken at its end t = 1, scales it by
    k e^-k / (1 - e^-k); a rising customer (the mirror image) by k / (1 - e^-k).
    """
    traj = np.array([a.trajectory for a in ARCHETYPES])[c.arch]
    k = c.decay_k
    shape = np.select(
        [traj == "decay", traj == "ramp"],
        [k * np.exp(-k) / -np.expm1(-k), k / -np.expm1(-k)],
        default=1.0,
    )
    return np.where(c.brief, 0.0, c.expected_visits / c.win_len * shape)


def _later_visit_days(rng, c: Customers, D: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Customer and (fractional) day of every visit in [D, end) before any migration."""
    regular = (c.arch == ARCHETYPE_NAMES.index("weekly_regular")) & ~c.brief
    # Poisson visitors: a Poisson number of visits, uniform over the period
    counts = np.where(regular, 0, rng.poisson(end_of_history_rate(c) * (end - D)))
    vc_p = np.repeat(np.arange(len(counts)), counts)
    day_p = rng.uniform(D, end, len(vc_p))
    # weekly regulars: the history's even spacing continued, one jittered visit per step
    who = np.flatnonzero(regular)
    step = c.win_len[who] / c.n_visits[who]
    steps = np.ceil((end - D) / step).astype(np.int64)
    vc_r = np.repeat(who, steps)
    j = np.arange(len(vc_r)) - np.repeat(np.cumsum(steps) - steps, steps)
    day_r = D + (j + rng.uniform(0.25, 0.75, len(vc_r))) * np.repeat(step, steps)
    vc, day = np.concatenate([vc_p, vc_r]), np.concatenate([day_p, day_r])
    inside = day < end
    return vc[inside], day[inside]


def draw_migrations(rng, c: Customers, D: int, last_day: int, share: float) -> np.ndarray:
    """Migration day per customer (NaN if none): `share` of the returning loyal customers, on a
    day drawn uniformly in [D, last_day); none when that window is empty."""
    day = np.full(len(c.arch), np.nan)
    if last_day <= D:
        return day
    loyal = np.isin(c.arch, [ARCHETYPE_NAMES.index(a) for a in LOYAL]) & ~c.brief
    cand = np.flatnonzero(loyal)
    who = rng.choice(cand, size=int(round(share * len(cand))), replace=False)
    day[who] = np.floor(rng.uniform(D, last_day, len(who)))
    return day


def simulate_later(rng, c: Customers, weekday0: int, D: int, end: int, migration_day: np.ndarray) -> Events:
    """Events of the visits in days [D, end) after the cutoff day D (their refunds may fall
    later); a migrant keeps MIGRATED_RATE of the visits on or after their migration day
    (Poisson thinning: the same process, slowed)."""
    vc, day = _later_visit_days(rng, c, D, end)
    day, hour = place_on_calendar(rng, c, vc, np.floor(day).astype(np.int64), weekday0, D, end)
    after = day >= np.nan_to_num(migration_day[vc], nan=np.inf)
    keep = ~after | (rng.random(len(vc)) < MIGRATED_RATE)
    _, events = visit_events(rng, c, vc[keep], day[keep], hour[keep], end)
    return events
