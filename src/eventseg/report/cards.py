"""One card per broad segment: who they are, how many, what they did next (observed) and are
predicted to do, what sets them apart, how to recognise them and what to do — the questions an
analyst acts on, answered in one place. Micro-segments open below each card."""

from __future__ import annotations

import pandas as pd

from eventseg.report.figures import broad_by_size, segment_colors, short_name
from eventseg.report.format import MISSING, days, esc, integer, interval, missing, money, percent, ratio, words
from eventseg.report.inputs import ReportInputs

BEHAVIOUR = [("visits_per_month", "visits_vs_all", "visits / month", lambda v: f"{float(v):.1f}"),  # as in the names
             ("basket", "basket_vs_all", "spend / visit", money),
             ("recency_days", "recency_vs_all", "since last visit", days),
             ("tenure_days", "tenure_vs_all", "customer for", days)]


def _get(row: pd.Series, column: str):
    value = row.get(column)
    return None if missing(value) or (isinstance(value, str) and not value.strip()) else value


def _is_rate(inputs: ReportInputs, label: str) -> bool:
    if label in inputs.binary_labels:
        return True
    if label in inputs.continuous_labels:
        return False
    values = inputs.segments.get(f"observed_{label}", pd.Series(dtype=float)).dropna()
    return bool(len(values)) and values.between(0, 1).all()


def observed_block(inputs: ReportInputs, row: pd.Series) -> str:
    """What the segment's held-out customers did in the label window, with an interval and the
    lift against everyone; says so plainly when nothing was observed."""
    labels = inputs.observed_labels
    horizon = ((inputs.summary or {}).get("data") or {}).get("horizon_days")
    title = f"Observed next {integer(horizon)} days" if not missing(horizon) else "Observed next"
    if not labels:
        why = ("not measured in this run's segments.parquet (rerun the segments stage)" if inputs.has_labels
               else "none (no labels)")
        return f'<div class="block observed"><h4>{title}</h4><p class="muted">observed outcomes: {why}</p></div>'
    items = []
    for lab in labels:
        value = _get(row, f"observed_{lab}")
        fmt = percent if _is_rate(inputs, lab) else money
        if value is None:
            items.append(f"<li>{esc(words(lab))}: <span class='muted'>not observed</span></li>")
            continue
        ci = interval(row.get(f"observed_{lab}_lo"), row.get(f"observed_{lab}_hi"), fmt)
        lift = _get(row, f"observed_lift_{lab}")
        items.append(f"<li>{esc(words(lab))}: <b>{fmt(value)}</b> <span class='ci'>{ci}</span>"
                     + (f" · {_ratio_chip(lift)} everyone" if lift is not None else "") + "</li>")
    n = _get(row, "observed_n")
    who = f"observed on {integer(n)} held-out customers" if n is not None else "observed on held-out customers"
    return f'<div class="block observed"><h4>{title}</h4><p class="muted">{who}</p><ul>{"".join(items)}</ul></div>'


def predicted_block(inputs: ReportInputs, row: pd.Series) -> str:
    items = []
    for lab in inputs.binary_labels:
        p = _get(row, f"mean_p_{lab}")
        if p is None:
            continue
        lift = _get(row, f"lift_{lab}")
        ci = interval(row.get(f"lift_{lab}_lo"), row.get(f"lift_{lab}_hi"), lambda v: ratio(v, 2))
        items.append(f"<li>{esc(words(lab))}: <b>{percent(p)}</b>"
                     + (f" · {_ratio_chip(lift, 2)} everyone <span class='ci'>{ci}</span>" if lift is not None else "") + "</li>")
    if not items:
        return ""
    return f'<div class="block"><h4>Predicted</h4><p class="muted">mean score of the segment\'s customers</p><ul>{"".join(items)}</ul></div>'


def _ratio_chip(value, decimals: int | None = None) -> str:
    """A ratio to everyone, red when well above, blue when well below."""
    if missing(value):
        return MISSING
    tone = "up" if float(value) >= 1.25 else "down" if float(value) <= 0.8 else "flat"
    return f'<span class="chip {tone}">{ratio(value, decimals)}</span>'


def behaviour_block(row: pd.Series) -> str:
    rows = [f"<tr><td>{label}</td><td class='num'>{fmt(row[col])}</td><td>{_ratio_chip(row.get(vs))}</td></tr>"
            for col, vs, label, fmt in BEHAVIOUR if _get(row, col) is not None]
    if not rows:
        return ""
    return ('<div class="block"><h4>Behaviour vs everyone</h4><table class="mini"><tbody>'
            + "".join(rows) + "</tbody></table></div>")


def _text_block(title: str, text, cls: str = "", html: str | None = None) -> str:
    return "" if text is None else f'<div class="block {cls}"><h4>{title}</h4><p>{html or esc(text)}</p></div>'


def rule_block(row: pd.Series) -> str:
    rule = _get(row, "rule")
    if rule is None:
        return ""
    precision, recall = _get(row, "rule_precision"), _get(row, "rule_recall")
    quality = " · ".join(part for part in (
        f"precision {percent(precision)}" if precision is not None else "",
        f"recall {percent(recall)}" if recall is not None else "") if part)
    note = f'<p class="muted">{quality}</p>' if quality else ""
    return f'<div class="block"><h4>How to recognise them</h4><p><code>{esc(rule)}</code></p>{note}</div>'


def _values(text) -> str:
    """Top values come as 'a (x1.3); b (x1.2)': one per line reads faster."""
    return "" if text is None else "<br>".join(esc(part.strip()) for part in str(text).split(";") if part.strip())


def micro_table(inputs: ReportInputs, parent: int) -> str:
    micro = inputs.micro[inputs.micro["parent"] == parent].sort_values("size", ascending=False)
    if micro.empty:
        return ""
    labels = inputs.binary_labels
    observed = [lab for lab in inputs.observed_labels if f"observed_{lab}" in micro.columns]
    head = (["micro-segment", "customers", "share"] + [f"predicted {words(lab)}" for lab in labels]
            + [f"observed {words(lab)}" for lab in observed] + ["over-indexed"])
    body = []
    for _, m in micro.iterrows():
        name = str(m["name"])
        cells = [f"<b>{esc(short_name(m['segment'], name))}</b><br><span class='muted'>"
                 f"{esc(' · '.join(name.split(' · ')[1:]))}</span>",
                 f"<span class='num'>{integer(m['size'])}</span>", percent(m["share"])]
        cells += [percent(m.get(f"mean_p_{lab}")) for lab in labels]
        cells += [(percent if _is_rate(inputs, lab) else money)(m.get(f"observed_{lab}")) for lab in observed]
        cells.append(_values(_get(m, "top_values") or _get(m, "over_indexed")) or MISSING)
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ('<div class="wide"><table class="micro"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(body) + "</tbody></table></div>")


def segment_card(inputs: ReportInputs, row: pd.Series, color: str) -> str:
    seg, name = int(row["segment"]), str(row["name"])
    facts = " · ".join(name.split(" · ")[1:])
    n_micro = int((inputs.micro["parent"] == seg).sum()) if seg >= 0 else 0
    micro = micro_table(inputs, seg) if n_micro else ""
    details = (f"<details><summary>{n_micro} micro-segment{'s' if n_micro != 1 else ''}</summary>{micro}</details>"
               if micro else "")
    about = ("<p class='muted'>customers who fit no segment well (highest outlier scores): look at them one by one, "
             "not as a group</p>" if seg < 0 else (f"<p class='facts'>{esc(facts)}</p>" if facts else ""))
    values = _get(row, "top_values") or _get(row, "over_indexed")
    blocks = [_text_block("Suggested action", _get(row, "action"), "action"),  # what to do, first
              observed_block(inputs, row), predicted_block(inputs, row), behaviour_block(row),
              _text_block("Over-indexed", values, html=_values(values)), _text_block("Timing", _get(row, "timing")),
              rule_block(row)]
    return (f'<article class="card{" outliers" if seg < 0 else ""}" data-segment="{seg}" style="--seg:{color}">'
            f'<header><h3>{esc(short_name(seg, name))}</h3><span class="size">{integer(row["size"])} customers · '
            f'{percent(row["share"])} of everyone</span></header>{about}'
            f'<div class="blocks">{"".join(b for b in blocks if b)}</div>{details}</article>')


def segment_cards(inputs: ReportInputs) -> str:
    broad = broad_by_size(inputs.segments)
    colors = segment_colors(broad["segment"])
    return '<div class="cards">' + "".join(segment_card(inputs, row, colors[int(row["segment"])])
                                           for _, row in broad.iterrows()) + "</div>"
