"""The report's fairness-audit section, from a run's audit.json: what was compared, every flag in
a sentence, and per attribute the overall tests, the flagged cells, the four-fifths ratios of
the high tiers and (folded) every cell. Suppressed cells read "<10" (or "hidden" where they
protect one): the section shows only what audit.json published, so it cannot leak a count."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from eventseg.report.audit_wording import CORRECTION_NAMES, PRIMARY, flag_text, grouping_name, p_value
from eventseg.report.figures import short_name, styled_layout
from eventseg.report.format import MISSING, esc, fixed, integer, interval, number, percent, ratio, words
from eventseg.report.sections import html_table


def audit_section(audit: dict, figure=None) -> str:
    """An HTML fragment (no heading: the page gives it one) for the audit in `audit`; with
    `figure(fig, chart_id, caption)` (how the page embeds a chart), each attribute flagged in a
    segment also gets its `visualize_audit` heatmap."""
    settings, people = audit.get("settings") or {}, audit.get("customers") or {}
    correction = settings.get("correction", "holm")
    noun = settings.get("noun", "customers")
    flags = audit.get("flags") or []
    attributes = audit.get("attributes") or []
    facts = [("attributes", esc(", ".join(words(a["name"]) for a in attributes))),
             (f"{esc(noun)} with attributes", f"{integer(people.get('matched_customers'))} of {integer(people.get('run'))} in the run"),
             ("compared with", esc(", ".join(grouping_name(g) + ("s" if g == "segment" else "")
                                              for g in audit.get("groupings") or []))),
             ("tests", f"{integer(audit.get('n_tests'))}, {esc(CORRECTION_NAMES.get(correction, correction))}-corrected "
                       f"at {number(settings.get('alpha', 0.05), 2)}"),
             ("suppressed", f"cells under {integer(settings.get('min_cell', 10))} {esc(noun)}")]
    out = ['<dl class="facts">' + "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts) + "</dl>",
           '<p class="muted">The attributes were read only by this audit, never by training, segmentation or scoring. '
           f"A cell is flagged when its share differs from the population's by {ratio(settings.get('min_ratio', 1.25), 2)} "
           f"or more and the difference is significant after correction; a high tier when a value reaches it at under "
           f"{percent(settings.get('four_fifths', 0.8))} of the most-favoured value's rate (four-fifths rule), "
           "significantly.</p>"]
    if flags:
        out.append(f'<div class="verdict bad" id="audit-verdict"><b>{len(flags)} flag{"s" if len(flags) > 1 else ""}:</b><ul>'
                   + "".join(f"<li>{esc(flag_text(f, correction, noun))}</li>" for f in flags) + "</ul></div>")
    else:
        out.append('<p class="verdict good" id="audit-verdict"><b>No flags:</b> no segment or tier over- or '
                   f"under-represents any attribute value beyond chance ({esc(CORRECTION_NAMES.get(correction, correction))}"
                   f", {integer(audit.get('n_tests'))} tests).</p>")
    results = audit.get("results") or {}
    for about in attributes:
        by_grouping = results.get(about["name"]) or {}
        out.append(_attribute(about["name"], about, [(g, by_grouping[g]) for g in audit.get("groupings") or []
                                                     if g in by_grouping], settings, _names(audit)))
        if figure is not None and any(c.get("flag") for c in (by_grouping.get("segment") or {}).get("cells") or []):
            out.append(figure(visualize_audit(audit, about["name"], "segment"), f"chart-audit-{about['name']}",
                              f"{words(about['name'])} by segment: each value's share against all {noun}' (★ flagged)"))
    return "".join(out)


def _names(audit: dict) -> dict:
    return {int(s["segment"]): s.get("name") for s in audit.get("segments") or []}


def _attribute(name: str, about: dict, by_grouping: list[tuple[str, dict]], settings: dict, names: dict) -> str:
    how = esc(about.get("kind", ""))
    if about.get("bands"):
        how += " in quantile bands, edges " + esc(", ".join(number(e) for e in about["bands"]))
    head = (f'<h3 data-attribute="{esc(name)}">{esc(words(name))}</h3><p class="muted">{how}; known for '
            f"{integer(about.get('known'))}, unknown for {integer(about.get('unknown'))}</p>")
    limit = int(settings.get("min_cell", 10))
    overall, flagged, fifths, cells = [], [], [], []
    for grouping, r in by_grouping:
        left = r.get("left_out") or {}
        shown = {"values": [str(v) for v in left.get("values") or []],
                 "groups": [_group(grouping, g, names) for g in left.get("groups") or []]}
        note = "; ".join(f"{k} {esc(', '.join(v))}" for k, v in shown.items() if v)
        if r.get("skipped"):
            overall.append([esc(grouping_name(grouping)), MISSING, MISSING, MISSING, MISSING, MISSING, esc(r["skipped"])])
            continue
        o = r["overall"]
        overall.append([esc(grouping_name(grouping)), integer(o["n"]), f"{number(o['chi2'])} ({integer(o['dof'])})",
                        fixed(o["cramers_v"], 2), p_value(o["p"]),
                        p_value(o["p_adjusted"]) + (" <b>flagged</b>" if o["significant"] else ""),
                        note])
        for c in r["cells"]:
            if c.get("flag"):
                flagged.append([esc(_group(grouping, c["group"], names)), esc(c["value"]), _cell(c, limit),
                                MISSING if c.get("share") is None else f"{percent(c['share'])} vs {percent(c['population_share'])}",
                                MISSING if c.get("p_adjusted") is None else p_value(c["p_adjusted"])])
        for f in r.get("four_fifths") or []:
            fifths.append([esc(grouping_name(grouping)), esc(f["value"]) + (" (reference)" if f.get("is_reference") else ""),
                           integer(f["n"]), _suppressed(f, limit) if f.get("rate") is None else percent(f["rate"]),
                           _fifths_ratio(f), MISSING if f.get("p_adjusted") is None else p_value(f["p_adjusted"])])
        cells.append(f"<h4>{esc(grouping_name(grouping))}</h4>" + _matrix(grouping, r, names, limit))
    parts = [head, html_table(["compared with", esc(settings.get("noun", "customers")), "χ² (dof)", "Cramér's V",
                           "p", "p after correction", f"left out (every cell under {limit})"], overall, "compact")]
    parts.append(html_table(["group", "value", "vs population", "share: group vs all", "p after correction"], flagged, "compact")
                 if flagged else '<p class="muted">no cell flagged</p>')
    if fifths:
        parts.append("<details><summary>high-tier rates (four-fifths rule)</summary>"
                     + html_table(["tier", "value", "n", "high-tier rate", "vs reference", "p after correction"], fifths, "compact")
                     + "</details>")
    parts.append("<details><summary>every cell: share of the group vs share of all</summary>" + "".join(cells) + "</details>")
    return "".join(parts)


def _group(grouping: str, group, names: dict) -> str:
    if grouping != "segment":
        return f"{group} {grouping_name(grouping)}"
    name = names.get(int(group))
    return short_name(int(group), name) if name else "Outliers" if int(group) < 0 else f"#{int(group)}"


def _suppressed(c: dict, limit: int) -> str:
    """"<10" for a cell under the limit, "hidden" for one hidden to protect such a cell."""
    return f"&lt;{limit}" if c.get("suppressed") == PRIMARY else "hidden"


def _cell(c: dict, limit: int) -> str:
    """A cell's representation ratio with its interval; a chip when flagged; "<10" / "hidden"."""
    text = _suppressed(c, limit) if c.get("ratio") is None else ratio(c["ratio"])
    if c.get("flag"):
        text = f'<span class="chip {"up" if c["flag"] == "over" else "down"}">{text}</span>'
    return text if c.get("ratio") is None else f'{text} <span class="ci">{interval(c["ci_low"], c["ci_high"], ratio)}</span>'


def _fifths_ratio(f: dict) -> str:
    """The ratio to the most-favoured value; where it would reveal a hidden count, only whether
    it is under four-fifths."""
    if f.get("ratio") is None:
        return "below 4/5" if f.get("below_four_fifths") else "hidden"
    shown = ratio(f["ratio"], 2)
    return f'<span class="chip down">{shown}</span>' if f.get("flag") else shown


def _matrix(grouping: str, r: dict, names: dict, limit: int) -> str:
    """Values down, groups across, each cell its ratio to the population (flagged ones as chips)."""
    groups = [g["group"] for g in r["groups"]]
    by_cell = {(c["value"], c["group"]): c for c in r["cells"]}
    head = ["value", "all"] + [f"{esc(_group(grouping, g, names))}<br><span class='ci'>n = {integer(n['n'])}</span>"
                               for g, n in zip(groups, r["groups"])]
    total = sum(v["n"] for v in r["values"])
    rows = [[esc(v["value"]), percent(v["n"] / total)] + [_cell(by_cell[(v["value"], g)], limit) for g in groups]
            for v in r["values"]]
    return html_table(head, rows, "compact")


def visualize_audit(audit: dict, attribute: str, grouping: str = "segment") -> go.Figure:
    """One attribute against one grouping: each cell's share as a ratio to the population's,
    red above and blue below on a log scale (2× and 0.5× equally far from 1×); suppressed cells
    blank with "<10" / "hidden", flagged cells marked ★. The page's caption names the pair."""
    r = ((audit.get("results") or {}).get(attribute) or {}).get(grouping)
    if not r or r.get("skipped"):
        raise ValueError(f"audit has no table for {attribute!r} × {grouping!r}"
                         + (f": {r['skipped']}" if r and r.get("skipped") else ""))
    names = _names(audit)
    groups = [g["group"] for g in r["groups"]]
    values = [v["value"] for v in r["values"]]
    by_cell = {(c["value"], c["group"]): c for c in r["cells"]}
    ratios = np.array([[np.nan if by_cell[(v, g)].get("ratio") is None else by_cell[(v, g)]["ratio"] for g in groups]
                       for v in values], dtype=float)
    limit = int((audit.get("settings") or {}).get("min_cell", 10))
    text = [[(_suppressed(by_cell[(v, g)], limit).replace("&lt;", "<") if np.isnan(x) else ratio(x))
             + (" ★" if by_cell[(v, g)].get("flag") else "") for g, x in zip(groups, row)] for v, row in zip(values, ratios)]
    columns = [_group(grouping, g, names) for g in groups]
    fig = go.Figure(go.Heatmap(
        z=np.log2(np.clip(ratios, 1 / 16, 16)), x=columns, y=values, zmin=-2, zmax=2, colorscale="RdBu", reversescale=True,
        text=text, texttemplate="%{text}", hovertemplate="%{y} in %{x}: %{text} the population's share<extra></extra>",
        colorbar={"title": "vs all", "tickvals": [-2, -1, 0, 1, 2], "ticktext": ["¼×", "½×", "1×", "2×", "4×"]}))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(side="top", type="category", tickangle=-25, automargin=True)
    # room for the slanted segment names above and for the colour bar's five ticks beside
    return styled_layout(fig, max(280, 180 + 34 * len(values)))
