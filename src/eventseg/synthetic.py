"""Built-in synthetic customers: the default data, with known archetypes and true outcome odds.

Later stages score segments against the hidden archetypes (ARI) and propensity heads against
the true probabilities (oracle AUC), so every generative choice here is recorded in `truth`.

How a history is made (all vectorised; one loop per archetype at most):
customer -> archetype + latents (activity, purchase propensity, basket size, hour shift,
favourite categories and channel) -> sessions (visits) placed on the calendar by the
archetype's trajectory, weekday and hour profiles -> events inside a session, seconds to
minutes apart: views, then maybe a cart, then maybe a purchase; a purchase may be
returned 1-21 days later. Event types therefore follow a funnel (mostly views).

Field rules: `amount` is positive for purchases (lognormal around the category price level,
heavy tail), the negative of the refunded purchase for returns, NaN for views and carts.
Rows are shuffled so nothing downstream can rely on order. About 4% of customers are
"brief": one visit of 1-5 events (many have a single event).

Archetypes (share): weekly_regular (21%) visits on a personal weekday at evenly spaced
intervals, groceries/household, store and app, short high-converting visits;
weekend_big_spender (11%) Saturday/Sunday, big-ticket categories, 2.5x baskets;
bargain_hunter (17%) many views per visit, low conversion, 0.45x baskets, fashion;
lapsing_loyalist / rising_loyalist (13% each) books/sports/kitchen/outdoor, mostly web,
the order-only pair below; new_explorer (9%) history starts in the last 14-100 days, broad
category mix; night_app_browser (16%) 22:00-03:00, app, games/music. The latents blur the
archetypes: activity scales visit counts, propensity raises the cart rate in the history
and the purchase odds after it, so both are partly observable.

Order-only pair: lapsing_loyalist and rising_loyalist share every parameter (visit count,
event-type funnel, categories, channels, hours, weekdays, amounts, outcome effects) except
the trajectory: within the same activity window a lapsing customer's visit times follow a
decaying density exp(-k t) and a rising customer's are its mirror image, so totals are
identically distributed and only the timing (first vs second half, recency) tells them
apart. Their outcomes differ only through that timing, via the recent-trend term below.

Outcomes over the horizon H after the cutoff: with r = visits per H over the last 2H days
and trend = log ratio of that rate to the earlier rate, p(any activity) = sigmoid(archetype
+ 1.1 log1p(r) + 0.5 trend + 0.4 activity latent), p_churn = 1 - that, and p_purchase =
p(active) * sigmoid(archetype + 0.5 trend + 0.3 log1p(r) + 0.7 propensity latent). Labels
are drawn jointly (a purchase implies no churn); spend is 0 without a purchase, otherwise
lognormal around the customer's expected basket. Label columns are named for the horizon
(`purchase_within_30d`, `churn_30d`, `spend_30d` by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from eventseg.artifacts import write_parquet, write_sidecar

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


@dataclass
class SyntheticData:
    events: pd.DataFrame  # customer_id, ts, event_type, category, channel, amount
    labels: pd.DataFrame  # customer_id, purchase_within_{H}d, churn_{H}d, spend_{H}d
    truth: pd.DataFrame  # customer_id, archetype, p_purchase_within_{H}d, p_churn_{H}d, ...
    cutoff: pd.Timestamp
    params: dict = field(default_factory=dict)  # generator arguments, for the sidecars


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _check(n_customers: int, days: int, horizon_days: int, start: str) -> pd.Timestamp:
    if int(n_customers) < 1:
        raise ValueError(f"n_customers must be >= 1, got {n_customers!r}")
    if int(horizon_days) < 1:
        raise ValueError(f"horizon_days must be >= 1, got {horizon_days!r}")
    if int(days) < 2 * int(horizon_days):
        raise ValueError(
            f"days must be >= 2 * horizon_days (the recent trend compares the last two "
            f"horizons with earlier history), got days={days!r}, horizon_days={horizon_days!r}"
        )
    try:
        ts = pd.Timestamp(start)
    except (ValueError, TypeError) as e:
        raise ValueError(f"start must be a date like '2025-01-01', got {start!r}") from e
    if ts.tz is not None:
        raise ValueError(f"start must be a naive date (no time zone), got {start!r}")
    return ts.normalize()


def _per_archetype(rng, arch: np.ndarray, table: str) -> np.ndarray:
    """Draw one index per row from each row's archetype distribution `table` (one loop/archetype)."""
    out = np.empty(len(arch), dtype=np.int64)
    for k, a in enumerate(ARCHETYPES):
        rows = np.flatnonzero(arch == k)
        p = getattr(a, table)
        out[rows] = rng.choice(len(p), size=len(rows), p=p)
    return out


def _strings(codes: np.ndarray, names: tuple[str, ...]) -> pd.Series:
    return pd.Series(pd.Categorical.from_codes(codes, categories=list(names))).astype("str")


def generate_synthetic(
    n_customers: int = 20_000,
    seed: int = 0,
    start: str = "2025-01-01",
    days: int = 365,
    horizon_days: int = 30,
) -> SyntheticData:
    """Simulate `days` of history from `start` (a date; midnight) for `n_customers`, plus outcomes.

    Deterministic in `seed`. Events lie in [start, cutoff) with cutoff = start + days; labels
    and truth describe the `horizon_days` after the cutoff.
    """
    t0 = _check(n_customers, days, horizon_days, start)
    n, D, H = int(n_customers), int(days), int(horizon_days)
    rng = np.random.default_rng(seed)
    cutoff = t0 + pd.Timedelta(days=D)
    A = len(ARCHETYPES)
    col = lambda attr: np.array([getattr(a, attr) for a in ARCHETYPES])  # noqa: E731

    # --- customers: archetype and individual latents -------------------------------------
    arch = rng.choice(A, size=n, p=_norm(col("share")))
    z_act, z_prop, z_basket = rng.standard_normal((3, n))
    hour_shift = np.rint(rng.normal(0, 1.2, n)).astype(np.int64)
    pref_weekday = rng.integers(0, 7, n)
    fav = np.stack([_per_archetype(rng, arch, "categories") for _ in range(3)], axis=1)
    fav_channel = _per_archetype(rng, arch, "channels")
    brief = rng.random(n) < BRIEF_SHARE
    late = col("late_start")[arch]
    joined_late = ~late & (rng.random(n) < 0.25)  # some ordinary customers join mid-year
    win_start = np.where(late, D - rng.uniform(14, 100, n), 0.0)
    win_start = np.where(joined_late, rng.uniform(0, 0.7 * D, n), np.clip(win_start, 0, None))
    win_len = D - win_start
    rate = col("visits_per_year")[arch] * win_len / 365.0 * np.exp(0.6 * z_act - 0.18)
    n_visits = np.where(brief, 1, np.maximum(1, rng.poisson(rate)))

    # --- visits: calendar day, time of day, channel, main category ------------------------
    V = int(n_visits.sum())
    vc = np.repeat(np.arange(n), n_visits)  # customer of each visit
    rank = np.arange(V) - np.repeat(np.cumsum(n_visits) - n_visits, n_visits)
    traj = np.array([a.trajectory for a in ARCHETYPES])[arch[vc]]
    u = rng.random(V)
    k = rng.uniform(2.5, 4.5, n)[vc]  # individual decay speed
    decay = -np.log1p(-u * -np.expm1(-k)) / k  # inverse CDF of exp(-k t) on [0, 1]
    pos = np.select(
        [traj == "decay", traj == "ramp", traj == "regular"],
        [decay, 1.0 - decay, (rank + rng.uniform(0.25, 0.75, V)) / n_visits[vc]],
        default=u,
    )
    day = np.floor(win_start[vc] + pos * win_len[vc]).astype(np.int64)
    weekday = _per_archetype(rng, arch[vc], "weekdays")
    regular = arch[vc] == ARCHETYPE_NAMES.index("weekly_regular")
    weekday = np.where(regular & (rng.random(V) < 0.75), pref_weekday[vc], weekday)
    shift = (weekday - (t0.weekday() + day)) % 7
    day = day + np.where(shift > 3, shift - 7, shift)  # nearest date with that weekday
    day = np.where(day < 0, day + 7, np.where(day >= D, day - 7, day))
    hour = (_per_archetype(rng, arch[vc], "hours") + hour_shift[vc]) % 24
    channel = np.where(rng.random(V) < 0.6, fav_channel[vc], _per_archetype(rng, arch[vc], "channels"))
    from_fav = rng.random(V) < 0.7
    visit_cat = np.where(
        from_fav,
        fav[vc, rng.choice(3, size=V, p=[0.5, 0.3, 0.2])],
        _per_archetype(rng, arch[vc], "categories"),
    )

    # --- events inside a visit: views -> cart -> purchase -------------------------------
    ac = arch[vc]
    p_cart = _sigmoid(np.log(col("p_cart") / (1 - col("p_cart")))[ac] + 0.5 * z_prop[vc])
    n_views = 1 + np.where(
        brief[vc], rng.choice(3, size=V, p=[0.6, 0.25, 0.15]), rng.poisson(col("extra_views")[ac])
    )
    carted = rng.random(V) < p_cart
    bought = carted & (rng.random(V) < col("p_buy")[ac])
    returned = bought & (rng.random(V) < col("p_return")[ac])
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
    visit_sec = day * 86400 + hour * 3600 + rng.integers(0, 3600, V)
    visit_sec = np.minimum(visit_sec, D * 86400 - 1 - np.ceil(duration).astype(np.int64))
    sec = visit_sec[ev] + np.floor(offset).astype(np.int64)
    cat = np.where(
        (etype == VIEW) & (rng.random(E) < 0.3),
        _per_archetype(rng, ac[ev], "categories"),
        visit_cat[ev],
    )
    basket_c = col("basket")[arch] * np.exp(0.35 * z_basket)
    noise = rng.lognormal(-0.5 * AMOUNT_SIGMA**2, AMOUNT_SIGMA, E)
    amount = np.where(etype == PURCHASE, np.round(PRICE[cat] * basket_c[vc[ev]] * noise, 2), np.nan)

    # returns: a refund of the whole purchase 1-21 days later, if before the cutoff
    r = np.flatnonzero((etype == PURCHASE) & returned[ev])
    r_sec = sec[r] + rng.integers(86400, 21 * 86400, len(r))
    keep = r_sec < D * 86400
    r, r_sec = r[keep], r_sec[keep]
    cust = np.concatenate([vc[ev], vc[ev[r]]])
    sec = np.concatenate([sec, r_sec])
    etype = np.concatenate([etype, np.full(len(r), RETURN)])
    cat = np.concatenate([cat, cat[r]])
    chan = np.concatenate([channel[ev], channel[ev[r]]])
    amount = np.concatenate([amount, -amount[r]])

    customer_id = np.sort(rng.choice(9_000_000, size=n, replace=False)) + 1_000_000
    perm = rng.permutation(len(sec))
    ts = (np.datetime64(t0.to_datetime64(), "s") + sec[perm].astype("timedelta64[s]")).astype(
        "datetime64[ns]"
    )
    events = pd.DataFrame(
        {
            ID_COL: customer_id[cust[perm]].astype(np.int64),
            "ts": ts,
            "event_type": _strings(etype[perm], EVENT_TYPES),
            "category": _strings(cat[perm], CATEGORIES),
            "channel": _strings(chan[perm], CHANNELS),
            "amount": amount[perm].astype(np.float64),
        }
    )

    # --- outcomes after the cutoff --------------------------------------------------------
    vday = visit_sec / 86400.0
    first = np.full(n, np.inf)
    np.minimum.at(first, vc, vday)
    recent_from = D - 2 * H
    n_recent = np.bincount(vc, weights=vday >= recent_from, minlength=n)
    r_recent = n_recent / np.clip(D - first, H, 2 * H) * H  # visits per horizon, lately
    early_span = recent_from - first
    r_early = np.where(
        early_span >= H, (n_visits - n_recent) / np.maximum(early_span, H) * H, r_recent
    )
    trend = np.clip(np.log((r_recent + 0.5) / (r_early + 0.5)), -3, 3)
    p_active = _sigmoid(
        -0.9 + col("active_effect")[arch] + 1.1 * np.log1p(r_recent) + 0.5 * trend + 0.4 * z_act
    )
    p_buy = _sigmoid(
        -0.2 + col("buy_effect")[arch] + 0.5 * trend + 0.3 * np.log1p(r_recent) + 0.7 * z_prop
    )
    p_purchase = p_active * p_buy
    # expected basket: the purchase-amount model averaged over where this customer shops
    price_c = 0.7 * (PRICE[fav] @ np.array([0.5, 0.3, 0.2])) + 0.3 * (
        np.stack([a.categories for a in ARCHETYPES]) @ PRICE
    )[arch]
    spend_if_buy = price_c * basket_c * (1 + 0.1 * np.minimum(r_recent, 20))
    active = rng.random(n) < p_active
    purchased = active & (rng.random(n) < p_buy)
    spend = np.where(
        purchased,
        np.round(spend_if_buy * rng.lognormal(-0.5 * SPEND_SIGMA**2, SPEND_SIGMA, n), 2),
        0.0,
    )
    labels = pd.DataFrame(
        {
            ID_COL: customer_id,
            f"purchase_within_{H}d": purchased.astype(np.int64),
            f"churn_{H}d": (~active).astype(np.int64),
            f"spend_{H}d": spend,
        }
    )
    truth = pd.DataFrame(
        {
            ID_COL: customer_id,
            "archetype": _strings(arch, ARCHETYPE_NAMES),
            f"p_purchase_within_{H}d": p_purchase,
            f"p_churn_{H}d": 1.0 - p_active,
            f"expected_spend_{H}d": p_purchase * spend_if_buy,
        }
    )
    params = dict(n_customers=n, seed=seed, start=str(t0.date()), days=D, horizon_days=H)
    return SyntheticData(events, labels, truth, cutoff, params)


def write_synthetic(data: SyntheticData, out_dir) -> dict[str, Path]:
    """Write events/labels/truth Parquet files atomically, each with a `<file>.json` sidecar."""
    out = Path(out_dir)
    paths = {}
    for name in ("events", "labels", "truth"):
        df = getattr(data, name)
        path = out / f"{name}.parquet"
        write_parquet(df, path)
        write_sidecar(
            path,
            producer="eventseg.synthetic.generate_synthetic",
            params=data.params,
            rows=len(df),
            cutoff=str(data.cutoff),
        )
        paths[name] = path
    return paths
