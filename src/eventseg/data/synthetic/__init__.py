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

After the cutoff (`months_after` = M > 0): `later_events` holds the same customers' events in
[cutoff, cutoff + M calendar months), drawn from a separate random stream after everything
else, so the history, labels and the truth columns above are identical whatever M is. The
model is stationary: each customer keeps the visit rate they had at the END of their history
(flat trajectories: their expected visits per day over their window; lapsing_loyalist: the
density exp(-k t) normalised on the window, evaluated at t = 1, i.e. low; rising_loyalist: its
mirror, high; weekly_regular: the same even spacing, continued), Poisson in time except the
regulars; brief customers never come back. Each visit then goes through exactly the same
in-visit simulation as the history (weekday and hour profiles, channel, categories, funnel,
amounts, returns) with the same latents. Refunds of purchases made just before the cutoff
that fall after it are in `later_events` too. write_synthetic then adds events_full.parquet
(history + later events, shuffled): the log to monitor with eventseg monitor.

Planted migrations: `migration_share` of the loyal archetypes' returning (non-brief)
customers (weekly_regular, rising_loyalist, weekend_big_spender) get a migration date (a
midnight) drawn uniformly between the cutoff and cutoff + (M - 2) months, so at least two
monthly periods follow it (M < 3: none); from that day on each of their visits is kept with
probability 0.1 (they start to lapse). truth then gains `migration_date` (NaT for
non-migrants) and `archetype_after` (the archetype, or "lapsed" for migrants).

Caveat: labels.parquet is drawn from the outcome model above and is not conditioned on
`later_events` (they share only the history and the latents): a customer labelled churned may
visit in `later_events` and vice versa. A backtest on the continuation should build its labels
from the events (e.g. from events_full.parquet with a cutoff), not read labels.parquet.
"""

from .archetypes import (
    ARCHETYPE_NAMES,
    ARCHETYPES,
    CATEGORIES,
    CHANNELS,
    EVENT_TYPES,
    ID_COL,
    LOYAL,
    ORDER_ONLY_PAIR,
    Archetype,
)  # fmt: skip
from .generate import SyntheticData, generate_synthetic
from .write import write_synthetic

__all__ = [
    "ARCHETYPES", "ARCHETYPE_NAMES", "Archetype", "CATEGORIES", "CHANNELS", "EVENT_TYPES", "ID_COL",
    "LOYAL", "ORDER_ONLY_PAIR", "SyntheticData", "generate_synthetic", "write_synthetic",
]  # fmt: skip
