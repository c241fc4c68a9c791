"""The monitoring section (after eventseg monitor): how many customers changed segment each
period beside the RFM baseline, where they went, what drifted, how the frozen heads did against
what happened, and whether a refresh is recommended."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from eventseg.report.figures import short_name, styled_layout
from eventseg.report.format import esc, fixed, integer, percent, signed, words
from eventseg.report.sections import html_table

ORDER_LAST = ("new", "gone", "-1")  # the pseudo-segments after the real ones


def _names(segments: pd.DataFrame) -> dict[str, str]:
    broad = segments[segments["level"] == "broad"] if "level" in segments.columns else segments
    names = {str(int(s)): short_name(int(s), n) for s, n in zip(broad["segment"], broad["name"])}
    names.update({"-1": "outliers", "new": "new customers", "gone": "gone"})
    return names


def _ordered(values) -> list[str]:
    head = sorted((v for v in set(values) if v not in ORDER_LAST), key=lambda v: int(v))
    return head + [v for v in ORDER_LAST if v in set(values)]


def visualize_transitions(transitions: pd.DataFrame, segments: pd.DataFrame, *, title: str = "") -> go.Figure:
    """Heatmap of one period's flows: each row (segment at the earlier date) split by where its
    customers are at the later date, as shares of the row; hover gives the counts."""
    names = _names(segments)
    rows, cols = _ordered(transitions["from_segment"]), _ordered(transitions["to_segment"])
    counts = (transitions.pivot_table(index="from_segment", columns="to_segment", values="customers", aggfunc="sum")
              .reindex(index=rows, columns=cols).fillna(0))
    share = counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0).fillna(0)
    text = [[f"{share.iat[i, j]:.0%}" if counts.iat[i, j] else "" for j in range(len(cols))] for i in range(len(rows))]
    hover = [[f"{names.get(r, r)} → {names.get(c, c)}: {int(counts.iat[i, j]):,} customers ({share.iat[i, j]:.1%} of the row)"
              for j, c in enumerate(cols)] for i, r in enumerate(rows)]
    fig = go.Figure(go.Heatmap(z=share.to_numpy(), x=[names.get(c, c) for c in cols], y=[names.get(r, r) for r in rows],
                               text=text, texttemplate="%{text}", hovertext=hover, hoverinfo="text",
                               colorscale="Blues", zmin=0, zmax=1, colorbar={"title": "share of row"}))
    fig.update_yaxes(autorange="reversed", title="from")
    fig.update_xaxes(title="to", side="top")
    return styled_layout(fig, 120 + 36 * len(rows), title=title)


def visualize_churn(summary: dict) -> go.Figure:
    """Membership churn per period: eventseg's segments beside k-means on RFM, with the limit."""
    periods = summary.get("periods") or []
    x = [f"{p['from']} → {p['to']}" for p in periods]
    fig = go.Figure()
    fig.add_bar(x=x, y=[p.get("membership_churn") for p in periods], name="eventseg segments", marker_color="#1f77b4")
    fig.add_bar(x=x, y=[p.get("rfm_kmeans_churn") for p in periods], name="k-means on RFM (frozen)",
                marker_color="#bbbbbb")
    limit = (summary.get("thresholds") or {}).get("membership_churn")
    if limit is not None:
        fig.add_hline(y=limit, line_dash="dot", line_color="#d62728", annotation_text=f"limit {limit:.0%}")
    fig.update_yaxes(tickformat=".0%", title="customers changing segment")
    return styled_layout(fig, 340, barmode="group", legend={"orientation": "h", "y": 1.12, "x": 0})


def _backtest_rows(summary: dict) -> list[list[str]]:
    rows = []
    for p in summary.get("periods") or []:
        bt = p.get("backtest") or {}
        if bt.get("status") != "scored":
            rows.append([esc(bt.get("scored_at", p["from"])), esc(bt.get("reason") or bt.get("status", "")), "—",
                         "", "", "", ""])
            continue
        for label, m in (bt.get("labels") or {}).items():
            if "roc_auc" not in m:
                rows.append([esc(bt["scored_at"]), esc(words(label)), f"R² {fixed(m.get('r2'))}", "", "", "", ""])
                continue
            drop = m.get("drop") or {}
            change = (f"{signed(-drop['drop'])} ({signed(-drop['ci_high'])} to {signed(-drop['ci_low'])})"
                      if drop.get("ci_low") is not None else "—")
            rows.append([esc(bt["scored_at"]), esc(words(label)), fixed(m.get("roc_auc")), fixed(drop.get("reference_auc")),
                         change, percent(m.get("mean_score")), percent(m.get("base_rate"))])
    return rows


def monitoring_section(summary: dict, transitions: pd.DataFrame | None, segments: pd.DataFrame, figure) -> str:
    """HTML of the section; `figure(fig, chart_id, caption)` embeds a chart the way the page does."""
    periods = summary.get("periods") or []
    if not periods:
        return '<p class="muted">no monitoring periods</p>'
    verdict = ("<b>Refresh recommended.</b> " + esc("; ".join(summary.get("refresh_reasons") or []))
               if summary.get("refresh_recommended") else
               "<b>No refresh needed:</b> no backtest drop beyond noise, and in the latest period no propensity drift, "
               "embedding drift or churn above the limits.")
    parts = [f'<p class="muted">The run\'s frozen model re-scored every customer at {len(summary["cutoffs"])} dates '
             f"({esc(summary['cutoffs'][0])} … {esc(summary['cutoffs'][-1])}) from their history before each; nothing "
             "was refitted, so a move between segments is the customer's behaviour moving. Drift is measured against "
             "the run's own customers.</p>", f'<p class="verdict">{verdict}</p>',
             figure(visualize_churn(summary), "chart-monitor-churn", "Membership churn per period")]
    if transitions is not None and len(transitions):
        last = periods[-1]
        flows = transitions[transitions["to_cutoff"].astype(str).str.startswith(last["to"])]
        parts.append(figure(visualize_transitions(flows, segments), "chart-monitor-flows",
                            f"Where each segment's customers went, {last['from']} → {last['to']}"))
    alert_rows = []
    for p in periods:
        when = esc(f"{p['from']} → {p['to']}")
        alert_rows += [[when, esc(words(a["kind"])), esc(a["message"])] for a in p["alerts"] if a["kind"] != "feature_psi"]
        drifted = [a for a in p["alerts"] if a["kind"] == "feature_psi"]
        if drifted:  # one line: features that grow with the calendar (tenure) drift every period
            top = ", ".join(f"{a['subject']} {a['value']:.2f}" for a in drifted[:4])
            alert_rows.append([when, "feature psi", esc(f"{len(drifted)} aggregate feature(s) above PSI "
                                                       f"{drifted[0]['threshold']:.2f}: {top}" + (" …" if len(drifted) > 4 else ""))])
    parts.append("<h3>Alerts</h3>" + (html_table(["period", "kind", "what"], alert_rows, "models compact") if alert_rows
                                      else '<p class="muted">none</p>'))
    churn_rows = [[esc(f"{p['from']} → {p['to']}"), integer(p["customers_both"]), integer(p["new_customers"]),
                   percent(p["membership_churn"]), percent(p["rfm_kmeans_churn"]), fixed(p["drift"].get("embedding_auc"))]
                  for p in periods]
    parts.append("<h3>Periods</h3>" + html_table(["period", "customers at both dates", "new", "changed segment",
                                              "RFM k-means changed", "embedding drift AUC"], churn_rows, "models compact"))
    parts.append("<h3>Backtest of the frozen heads</h3>" + html_table(
        ["scored at", "label", "ROC-AUC (R² for amounts)", "run's test AUC", "change (95% interval)", "mean score", "observed rate"],
        _backtest_rows(summary), "models compact"))
    return "".join(parts)
