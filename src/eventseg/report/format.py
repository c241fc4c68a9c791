"""Numbers as people read them: integers with thousands separators, shares as percentages,
ratios as "1.7×", and a dash for what was not measured — never "996.000" or "nan"."""

from __future__ import annotations

import html
import math
from typing import Any

MISSING = "—"


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def integer(value: Any) -> str:
    return MISSING if missing(value) else f"{int(round(float(value))):,}"


def percent(value: Any, digits: int | None = None) -> str:
    """0.2338 -> '23%' ('23.4%' below 10 points, '0.4%' below 1): precision where it is read."""
    if missing(value):
        return MISSING
    v = float(value)
    if digits is None:
        digits = 0 if abs(v) >= 0.095 else 1
    return f"{v:.{digits}%}".replace("-", "\u2212")


def ratio(value: Any, decimals: int | None = None) -> str:
    """A segment against everyone: '1.7×', '0.45×' (two figures either side of 1)."""
    if missing(value):
        return MISSING
    v = float(value)
    if decimals is None:
        decimals = 1 if v >= 0.995 or v < 0.095 else 2
    return f"{v:.{decimals}f}×"


def number(value: Any, digits: int = 3) -> str:
    """A measured quantity with about `digits` significant figures, in thousands style."""
    if missing(value):
        return MISSING
    v = float(f"{float(value):.{digits}g}")  # rounded first: 9.96 at two figures is 10, not 10.0
    if v == 0:
        return "0"
    if abs(v) >= 10 ** (digits - 1):
        return f"{v:,.0f}".replace("-", "\u2212")
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(v)))))
    return f"{v:,.{decimals}f}".replace("-", "\u2212")


def fixed(value: Any, decimals: int = 3) -> str:
    """Scores read side by side in a column (ROC-AUC, Brier, η²): the same decimals for all."""
    return MISSING if missing(value) else f"{float(value):.{decimals}f}".replace("-", "\u2212")


def signed(value: Any, decimals: int = 3) -> str:
    return MISSING if missing(value) else f"{float(value):+.{decimals}f}".replace("-", "\u2212")


def money(value: Any) -> str:
    """Amounts in the style of the segment names: $38 from ten up, $4.5 below."""
    if missing(value):
        return MISSING
    return f"${float(value):,.0f}" if abs(float(value)) >= 9.95 else "$" + number(value, 2)


def days(value: Any) -> str:
    """'312 days', '7.2 days': whole days from ten up."""
    if missing(value):
        return MISSING
    v = float(value)
    return f"{v:,.0f} days" if abs(v) >= 9.95 else f"{v:.1f} days"


def interval(lo: Any, hi: Any, fmt=percent) -> str:
    """'[21%, 26%]', or nothing when either end is unknown."""
    return "" if missing(lo) or missing(hi) else f"[{fmt(lo)}, {fmt(hi)}]"


def words(name: str) -> str:
    """A column or label name for prose: 'purchase_within_30d' -> 'purchase within 30d'."""
    return str(name).replace("__", " ").replace("_", " ")
