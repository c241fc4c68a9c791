"""Flags in plain language, for the report section, the script's output and audit.json alike:
"customers with age 65+ are 2.1× over-represented in segment 3 (p = 0.001 after Holm)"."""

from __future__ import annotations

from eventseg.report.format import percent, ratio, words
from eventseg.run.columns import tier_label

# how audit.json marks a suppressed cell (written by eventseg.apps.audit.disclosure, read here)
PRIMARY = "under min_cell"
COMPLEMENTARY = "hides a cell under min_cell"

CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini–Hochberg"}


def p_value(p) -> str:
    """'p = 0.012', 'p < 0.001': three decimals are as far as a reader compares them."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def grouping_name(grouping: str) -> str:
    """'segment' -> 'segment'; 'tier_churn_30d' -> 'churn 30d tier'."""
    label = tier_label(grouping)
    return words(grouping) if label is None else f"{words(label)} tier"


def group_name(flag: dict) -> str:
    """'segment 3 (Weekly regulars)', 'the outliers', 'the high churn 30d tier'."""
    if flag["grouping"] != "segment":
        return f"the {flag['group']} {grouping_name(flag['grouping'])}"
    if int(flag["group"]) < 0:
        return "the outliers"
    head = str(flag.get("group_name") or "").split(" · ")[0]
    return f"segment {flag['group']}" + (f" ({head})" if head else "")


def flag_text(flag: dict, correction: str = "holm", noun: str = "customers") -> str:
    """One sentence per flag (plain text; `esc` it for HTML)."""
    after = f"after {CORRECTION_NAMES.get(correction, correction)}"
    who = f"{noun} with {words(flag['attribute'])} {flag['value']}" if "value" in flag else ""
    if flag["kind"] == "association":
        return (f"{words(flag['attribute'])} and {grouping_name(flag['grouping'])} are associated "
                f"(Cramér's V {flag['cramers_v']:.2f}, {p_value(flag['p_adjusted'])} {after})")
    if flag["kind"] == "representation":
        word = "over" if flag["direction"] == "over" else "under"
        if flag.get("ratio") is None and flag.get("suppressed") == PRIMARY:
            return (f"fewer than {flag['min_cell']} {who} are in {group_name(flag)}: {word}-represented "
                    f"(significant {after}; count suppressed)")
        if flag.get("ratio") is None:
            return (f"{who} are {word}-represented in {group_name(flag)} (significant {after}; numbers "
                    f"hidden so that a cell under {flag['min_cell']} cannot be worked out from them)")
        return (f"{who} are {ratio(flag['ratio'])} {word}-represented in {group_name(flag)} "
                f"({percent(flag['share'])} of it vs {percent(flag['population_share'])} of all; "
                f"{p_value(flag['p_adjusted'])} {after})")
    reference = f"{words(flag['attribute'])} {flag['reference']}"
    tier = f"the high {grouping_name(flag['grouping'])}"
    if flag.get("ratio") is None:
        return (f"{who} reach {tier} at under {percent(flag['threshold'])} of the rate of {reference} "
                f"(significant {after}; count suppressed)")
    return (f"{who} reach {tier} at {ratio(flag['ratio'])} the rate of {reference} "
            f"({percent(flag['rate'])} vs {percent(flag['reference_rate'])}; below four-fifths, "
            f"{p_value(flag['p_adjusted'])} {after})")

