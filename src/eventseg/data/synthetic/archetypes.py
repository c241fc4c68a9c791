"""The hidden segments and the catalogue they shop from: every archetype parameter lives here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ID_COL = "customer_id"  # the synthetic tables' own id column (configs/data/synthetic.yaml), not eventseg's OUTPUT_ID
EVENT_TYPES = ("view", "cart", "purchase", "return")
CHANNELS = ("web", "app", "store")
# Ordered by overall popularity (Zipf rank) with a typical basket price for each.
CATEGORIES = (
    "groceries", "household", "beauty", "fashion_women", "electronics", "fashion_men",
    "home_decor", "kitchen", "toys", "sports", "books", "health", "shoes", "phones", "baby",
    "pet_supplies", "garden", "computers", "video_games", "furniture", "jewelry", "office",
    "music", "outdoor", "automotive", "tools", "watches", "travel", "gift_cards", "luxury",
)  # fmt: skip
PRICE = np.array([
    35, 25, 30, 55, 180, 50, 40, 45, 30, 60, 18, 22, 75, 350, 40,
    30, 45, 600, 50, 300, 120, 25, 20, 80, 70, 60, 200, 400, 50, 800,
], dtype=float)  # fmt: skip
VIEW, CART, PURCHASE, RETURN = range(4)
AMOUNT_SIGMA = 0.6  # per-purchase lognormal spread: the heavy tail
SPEND_SIGMA = 0.5
BRIEF_SHARE = 0.04
_ZIPF = 1.0 / np.arange(1, len(CATEGORIES) + 1) ** 1.1


def _hours(*bumps: tuple[float, float, float], floor: float = 0.03) -> np.ndarray:
    """Hour-of-day profile as circular Gaussian bumps (centre, width, weight) over a floor."""
    h = np.arange(24)
    p = np.full(24, floor)
    for centre, width, weight in bumps:
        d = np.minimum(np.abs(h - centre), 24 - np.abs(h - centre))
        p += weight * np.exp(-0.5 * (d / width) ** 2)
    return p / p.sum()


def _mix(boost: dict[str, float] | None = None, flatten: float = 1.0) -> np.ndarray:
    p = _ZIPF**flatten
    for name, factor in (boost or {}).items():
        p[CATEGORIES.index(name)] *= factor
    return p / p.sum()


def _norm(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x / x.sum()


@dataclass(frozen=True)
class Archetype:
    """One hidden segment: how often, how deep, what, where and when its customers shop."""

    name: str
    share: float
    visits_per_year: float
    extra_views: float  # Poisson mean of views beyond the first in a visit
    p_cart: float
    p_buy: float  # purchase given cart
    p_return: float
    basket: float  # multiplier on category prices
    categories: np.ndarray
    channels: np.ndarray
    hours: np.ndarray
    weekdays: np.ndarray  # Monday..Sunday
    trajectory: str = "flat"  # flat | decay | ramp | regular
    late_start: bool = False
    active_effect: float = 0.0
    buy_effect: float = 0.0


_BASE_HOURS = _hours((9, 1.5, 0.5), (12.5, 1.5, 1.0), (20, 2.0, 1.3))
_BASE_WEEK = _norm([1, 1, 1, 1, 1.1, 1.3, 1.2])
_LOYALIST = dict(
    share=0.13, visits_per_year=18, extra_views=1.8, p_cart=0.35, p_buy=0.6, p_return=0.04,
    basket=1.0, categories=_mix({"books": 3, "sports": 3, "kitchen": 3, "outdoor": 3,
                                 "home_decor": 1.5}),
    channels=_norm([0.55, 0.30, 0.15]), hours=_BASE_HOURS, weekdays=_BASE_WEEK,
)  # fmt: skip

ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        "weekly_regular", 0.21, 36, 0.3, 0.55, 0.75, 0.02, 1.0,
        _mix({"groceries": 3, "household": 2.5, "health": 2, "pet_supplies": 2, "baby": 1.5}),
        _norm([0.25, 0.35, 0.40]), _hours((8.5, 1.0, 1.0), (18, 1.2, 1.2), floor=0.02),
        _BASE_WEEK, trajectory="regular", active_effect=0.8, buy_effect=0.6,
    ),
    Archetype(
        "weekend_big_spender", 0.11, 10, 2.5, 0.45, 0.7, 0.08, 2.5,
        _mix({"electronics": 4, "furniture": 6, "computers": 5, "phones": 4, "home_decor": 2,
              "garden": 2, "watches": 3, "luxury": 4}),
        _norm([0.35, 0.15, 0.50]), _hours((11, 1.5, 0.5), (14, 2.5, 1.0), floor=0.02),
        _norm([0.35, 0.35, 0.35, 0.35, 0.6, 3.2, 2.8]), buy_effect=0.2,
    ),
    Archetype(
        "bargain_hunter", 0.17, 10, 4.5, 0.2, 0.45, 0.06, 0.45,
        _mix({"fashion_women": 3, "fashion_men": 3, "shoes": 3, "beauty": 2, "toys": 1.5,
              "gift_cards": 2}),
        _norm([0.60, 0.35, 0.05]), _hours((12.5, 1.0, 1.0), (21.5, 1.5, 1.2)),
        _norm([1.2, 1.2, 1.2, 1.2, 1.1, 0.8, 0.8]), active_effect=0.2, buy_effect=-0.6,
    ),
    Archetype("lapsing_loyalist", trajectory="decay", **_LOYALIST),
    Archetype("rising_loyalist", trajectory="ramp", **_LOYALIST),
    Archetype(
        "new_explorer", 0.09, 60, 3.5, 0.25, 0.5, 0.05, 0.9, _mix(flatten=0.3),
        _norm([0.35, 0.55, 0.10]), _BASE_HOURS * 0.8 + 0.2 / 24, _BASE_WEEK,
        late_start=True, active_effect=-0.3,
    ),
    Archetype(
        "night_app_browser", 0.16, 15, 3.0, 0.22, 0.55, 0.05, 0.8,
        _mix({"video_games": 4, "phones": 2, "music": 3, "fashion_men": 1.5,
              "electronics": 1.5, "beauty": 1.5}),
        _norm([0.12, 0.85, 0.03]), _hours((20, 1.5, 0.3), (23.5, 2.0, 1.5), (1.5, 1.5, 1.0),
                                          floor=0.02),
        _norm([1, 1, 1, 1, 1.2, 1.2, 1]), active_effect=0.3, buy_effect=-0.3,
    ),
)  # fmt: skip
ARCHETYPE_NAMES = tuple(a.name for a in ARCHETYPES)
ORDER_ONLY_PAIR = ("lapsing_loyalist", "rising_loyalist")
LOYAL = ("weekly_regular", "rising_loyalist", "weekend_big_spender")  # the ones a migration can hit
SHARES = _norm([a.share for a in ARCHETYPES])


def column(attr: str) -> np.ndarray:
    """One archetype attribute as an array indexed by archetype code."""
    return np.array([getattr(a, attr) for a in ARCHETYPES])


def per_archetype(rng, arch: np.ndarray, table: str) -> np.ndarray:
    """Draw one index per row from each row's archetype distribution `table` (one loop/archetype)."""
    out = np.empty(len(arch), dtype=np.int64)
    for k, a in enumerate(ARCHETYPES):
        rows = np.flatnonzero(arch == k)
        p = getattr(a, table)
        out[rows] = rng.choice(len(p), size=len(rows), p=p)
    return out
