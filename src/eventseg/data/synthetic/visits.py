"""Visits -> events: the one in-visit simulation that the history and the months after it share.

Both periods call `place_on_calendar` then `visit_events` with the same customer latents, so
a customer's funnel, categories, channels, hours, weekdays and amounts cannot drift between
the history and its continuation.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .archetypes import (
    AMOUNT_SIGMA,
    ARCHETYPE_NAMES,
    CART,
    PRICE,
    PURCHASE,
    RETURN,
    VIEW,
    column,
    per_archetype,
)  # fmt: skip

DAY = 86400  # seconds


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Customers:
    """Each customer's archetype code and latents (one array entry per customer)."""

    arch: np.ndarray
    z_act: np.ndarray  # activity: scales the visit rate
    z_prop: np.ndarray  # purchase propensity: cart rate now, purchase odds later
    z_basket: np.ndarray
    hour_shift: np.ndarray
    pref_weekday: np.ndarray  # a weekly regular's own day
    fav: np.ndarray  # (n, 3) favourite categories
    fav_channel: np.ndarray
    brief: np.ndarray  # one visit, never back
    win_start: np.ndarray  # days after the start when the customer's history begins
    win_len: np.ndarray
    expected_visits: np.ndarray  # Poisson mean of the history's visit count
    n_visits: np.ndarray
    decay_k: np.ndarray  # speed of the decay / ramp trajectories

    @property
    def basket(self) -> np.ndarray:
        """Multiplier on category prices: the archetype's basket times a personal factor."""
        return column("basket")[self.arch] * np.exp(0.35 * self.z_basket)


@dataclass
class Events:
    """Event arrays: customer index, seconds since the start, type/category/channel codes, amount."""

    cust: np.ndarray
    sec: np.ndarray
    etype: np.ndarray
    cat: np.ndarray
    chan: np.ndarray
    amount: np.ndarray

    def select(self, mask: np.ndarray) -> Events:
        return Events(*(getattr(self, f.name)[mask] for f in fields(self)))

    @staticmethod
    def concat(*parts: Events) -> Events:
        return Events(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Events)))


def place_on_calendar(rng, c: Customers, vc, day, weekday0: int, lo: int, hi: int):
    """Move each visit to the nearest date with a weekday from its archetype profile (a weekly
    regular's own weekday 75% of the time), kept inside days [lo, hi); draw its hour."""
    V = len(vc)
    weekday = per_archetype(rng, c.arch[vc], "weekdays")
    regular = c.arch[vc] == ARCHETYPE_NAMES.index("weekly_regular")
    weekday = np.where(regular & (rng.random(V) < 0.75), c.pref_weekday[vc], weekday)
    shift = (weekday - (weekday0 + day)) % 7
    day = day + np.where(shift > 3, shift - 7, shift)  # nearest date with that weekday
    day = np.where(day < lo, day + 7, np.where(day >= hi, day - 7, day))
    hour = (per_archetype(rng, c.arch[vc], "hours") + c.hour_shift[vc]) % 24
    return day, hour


def visit_events(rng, c: Customers, vc, day, hour, hi: int) -> tuple[np.ndarray, Events]:
    """Simulate the events of each visit (customer `vc`, calendar `day`, `hour`), each visit
    ending before day `hi`. Returns visit start seconds and the events, including every
    return however late: the caller decides which period a late refund belongs to."""
    V = len(vc)
    channel = np.where(rng.random(V) < 0.6, c.fav_channel[vc], per_archetype(rng, c.arch[vc], "channels"))
    from_fav = rng.random(V) < 0.7
    visit_cat = np.where(
        from_fav,
        c.fav[vc, rng.choice(3, size=V, p=[0.5, 0.3, 0.2])],
        per_archetype(rng, c.arch[vc], "categories"),
    )

    # views -> cart -> purchase
    ac = c.arch[vc]
    p_cart = sigmoid(np.log(column("p_cart") / (1 - column("p_cart")))[ac] + 0.5 * c.z_prop[vc])
    n_views = 1 + np.where(
        c.brief[vc], rng.choice(3, size=V, p=[0.6, 0.25, 0.15]), rng.poisson(column("extra_views")[ac])
    )
    carted = rng.random(V) < p_cart
    bought = carted & (rng.random(V) < column("p_buy")[ac])
    returned = bought & (rng.random(V) < column("p_return")[ac])
    L = n_views + carted + bought
    E = int(L.sum())
    ev = np.repeat(np.arange(V), L)  # visit of each event
    epos = np.arange(E) - np.repeat(np.cumsum(L) - L, L)
    nv = n_views[ev]
    etype = np.where(epos < nv, VIEW, np.where(epos == nv, CART, PURCHASE))
    # seconds since the previous event of the visit: browsing, adding to cart, checking out
    gap = np.where(etype == VIEW, 20 + rng.exponential(60, E), 10 + rng.exponential(40, E))
    gap = np.where(etype == PURCHASE, 30 + rng.exponential(120, E), gap)
    gap[epos == 0] = 0
    offset = np.cumsum(gap)
    offset -= np.repeat(offset[np.cumsum(L) - L], L)
    duration = offset[np.cumsum(L) - 1]
    visit_sec = day * DAY + hour * 3600 + rng.integers(0, 3600, V)
    visit_sec = np.minimum(visit_sec, hi * DAY - 1 - np.ceil(duration).astype(np.int64))
    sec = visit_sec[ev] + np.floor(offset).astype(np.int64)
    cat = np.where(
        (etype == VIEW) & (rng.random(E) < 0.3),
        per_archetype(rng, ac[ev], "categories"),
        visit_cat[ev],
    )
    noise = rng.lognormal(-0.5 * AMOUNT_SIGMA**2, AMOUNT_SIGMA, E)
    amount = np.where(etype == PURCHASE, np.round(PRICE[cat] * c.basket[vc[ev]] * noise, 2), np.nan)

    # returns: a refund of the whole purchase 1-21 days later
    r = np.flatnonzero((etype == PURCHASE) & returned[ev])
    r_sec = sec[r] + rng.integers(DAY, 21 * DAY, len(r))
    events = Events(
        cust=np.concatenate([vc[ev], vc[ev[r]]]),
        sec=np.concatenate([sec, r_sec]),
        etype=np.concatenate([etype, np.full(len(r), RETURN)]),
        cat=np.concatenate([cat, cat[r]]),
        chan=np.concatenate([channel[ev], channel[ev[r]]]),
        amount=np.concatenate([amount, -amount[r]]),
    )
    return visit_sec, events
