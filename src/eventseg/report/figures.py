"""The segment charts, each a Plotly figure so a notebook can show or restyle it: where segments
sit (the map), how big they are, how they behave, and what they are predicted and observed to
do next. One colour per broad segment throughout; outliers are always grey."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from eventseg.data.schema import OUTPUT_ID
from eventseg.report.format import percent, ratio, words
from eventseg.run.columns import score_columns

MAP_POINTS = 5_000  # a sample this size shows the shape; every point more only adds bytes
OUTLIER_COLOR = "#9e9e9e"
PALETTE = qualitative.D3 + qualitative.Dark24
TEMPLATE = "plotly_white"
FONT = {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12}
PROFILE = {"visits_vs_all": "visits / month", "basket_vs_all": "spend / visit", "recency_vs_all": "days since last visit",
           "tenure_vs_all": "days as customer"}


def segment_colors(segment_ids) -> dict[int, str]:
    """A stable colour per broad segment id (by rank of the id), grey for outliers (-1)."""
    ids = sorted({int(s) for s in segment_ids if int(s) >= 0})
    colors = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(ids)}
    colors[-1] = OUTLIER_COLOR
    return colors


def short_name(segment: int, name: str) -> str:
    """'#3 Weekly regulars': the headline of a name (its facts follow ' · '), with the id, since
    two headlines can repeat."""
    head = str(name).split(" · ")[0]
    return head if int(segment) < 0 else f"#{int(segment)} {head}"


def styled_layout(fig: go.Figure, height: int, **kw) -> go.Figure:
    fig.update_layout(template=TEMPLATE, height=height, font=FONT, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      hoverlabel={"align": "left"}, **kw)
    return fig


def broad_by_size(segments: pd.DataFrame) -> pd.DataFrame:
    """Broad segments, largest first, outliers last."""
    broad = segments[segments["level"] == "broad"] if "level" in segments.columns else segments
    return broad.assign(_out=broad["segment"] < 0).sort_values(["_out", "size"], ascending=[True, False]).drop(columns="_out")


def visualize_map(ids, matrix, customers: pd.DataFrame, *, max_points: int = MAP_POINTS, seed: int = 0) -> go.Figure:
    """2-D PCA of (a sample of) what was clustered, one colour per broad segment; hover names the
    segment, its size and its facts, the customer's micro-segment and scores."""
    from sklearn.decomposition import PCA

    ids, matrix = np.asarray(ids), np.asarray(matrix, dtype=np.float32)
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(len(ids), min(len(ids), max_points), replace=False))
    by_id = customers.set_index(OUTPUT_ID)
    known = pd.Index(ids[take]).isin(by_id.index)
    take = take[known]
    pca = PCA(n_components=2, random_state=seed).fit(matrix[take])
    xy = pca.transform(matrix[take])
    rows = by_id.loc[ids[take]]
    sizes = customers["segment"].value_counts()
    scores = score_columns(customers.columns, binary=True)
    colors = segment_colors(customers["segment"])
    fig = go.Figure()
    for seg in sorted(colors, key=lambda s: (s < 0, -sizes.get(s, 0))):
        hit = (rows["segment"] == seg).to_numpy()
        if not hit.any():
            continue
        members = rows[hit]
        name = (str(members["segment_name"].iloc[0]) if "segment_name" in members
                else "Outliers" if seg < 0 else f"segment {seg}")
        facts = "<br>".join(html.escape(part) for part in name.split(" · ")[1:])
        head = (f"<b>{html.escape(short_name(seg, name))}</b><br>{sizes[seg]:,} customers "
                f"({percent(sizes[seg] / len(customers))})" + (f"<br>{facts}" if facts else ""))
        custom = [np.array([html.escape(f"#{m} {n}" if m >= 0 else str(n)) for m, n in
                            zip(members["subsegment"].astype(int), members["subsegment_name"].astype(str))], dtype=object)
                  if "subsegment_name" in members else np.full(hit.sum(), "")]
        lines = ["micro-segment: %{customdata[0]}"]
        for i, score in enumerate(scores, start=1):
            custom.append(members[score.name].to_numpy(dtype=float))
            lines.append(f"{html.escape(words(score.label))}: %{{customdata[{i}]:.0%}}")
        fig.add_trace(go.Scatter(
            x=xy[hit, 0], y=xy[hit, 1], mode="markers", name=short_name(seg, name),
            marker={"size": 4, "color": colors[seg], "opacity": 0.75 if seg >= 0 else 0.6},
            customdata=np.column_stack(custom).astype(object) if len(custom) > 1 else np.asarray(custom[0])[:, None],
            hovertemplate=head + "<br>" + "<br>".join(lines) + "<extra></extra>"))
    var = pca.explained_variance_ratio_
    return styled_layout(fig, 560, xaxis={"title": f"PC 1 ({percent(var[0])} of variance)", "zeroline": False},
                   yaxis={"title": f"PC 2 ({percent(var[1])} of variance)", "zeroline": False},
                   legend={"itemsizing": "constant", "title": {"text": "broad segment (click to hide)"}},
                   title={"text": f"{len(take):,} of {len(ids):,} customers" if len(take) < len(ids) else f"{len(ids):,} customers",
                          "font": {"size": 13}})


def visualize_sizes(segments: pd.DataFrame) -> go.Figure:
    """Customers per broad segment, with their share of everyone."""
    broad = broad_by_size(segments)
    colors = segment_colors(broad["segment"])
    names = [short_name(s, n) for s, n in zip(broad["segment"], broad["name"])]
    fig = go.Figure(go.Bar(
        x=broad["size"], y=names, orientation="h", marker_color=[colors[int(s)] for s in broad["segment"]],
        text=[f"{int(n):,} · {percent(s)}" for n, s in zip(broad["size"], broad["share"])], textposition="auto",
        hovertemplate="%{y}<br>%{x:,} customers<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return styled_layout(fig, 80 + 34 * len(broad), xaxis={"title": "customers", "tickformat": ","}, showlegend=False)


def visualize_profile(segments: pd.DataFrame) -> go.Figure:
    """Each broad segment's behaviour as a ratio to all customers: red above, blue below (log
    scale, so 2× and 0.5× read as equally far from 1×)."""
    broad = broad_by_size(segments)
    cols = [c for c in PROFILE if c in broad.columns and broad[c].notna().any()]
    values = broad[cols].astype(float).to_numpy()
    z = np.log2(np.clip(values, 1 / 16, 16))
    names = [short_name(s, n) for s, n in zip(broad["segment"], broad["name"])]
    fig = go.Figure(go.Heatmap(
        z=z, x=[PROFILE[c] for c in cols], y=names, zmin=-2, zmax=2, colorscale="RdBu", reversescale=True,
        text=[[ratio(v) for v in row] for row in values], texttemplate="%{text}",
        customdata=values, hovertemplate="%{y}<br>%{x}: %{text} everyone's<extra></extra>",
        colorbar={"title": "vs all", "tickvals": [-2, -1, 0, 1, 2], "ticktext": ["¼×", "½×", "1×", "2×", "4×"]}))
    fig.update_yaxes(autorange="reversed")
    return styled_layout(fig, 90 + 34 * len(broad), xaxis={"side": "top"})


def visualize_lift(segments: pd.DataFrame) -> go.Figure:
    """Per label, each broad segment's predicted propensity against everyone's (95% interval),
    and beside it the observed lift where the run measured it on held-out customers."""
    broad = broad_by_size(segments)
    labels = [c[len("lift_"):] for c in broad.columns
              if c.startswith("lift_") and not c.endswith(("_lo", "_hi")) and broad[c].notna().any()]
    if not labels:
        raise ValueError("segments have no lift_<label> columns: the run had no labels")
    names = [short_name(s, n) for s, n in zip(broad["segment"], broad["name"])]
    fig = make_subplots(rows=1, cols=len(labels), shared_yaxes=True, subplot_titles=[words(lab) for lab in labels],
                        horizontal_spacing=0.04)
    for i, lab in enumerate(labels, start=1):
        lift = broad[f"lift_{lab}"].to_numpy(dtype=float)
        lo = broad.get(f"lift_{lab}_lo", pd.Series(lift)).to_numpy(dtype=float)
        hi = broad.get(f"lift_{lab}_hi", pd.Series(lift)).to_numpy(dtype=float)
        fig.add_trace(go.Bar(x=lift, y=names, orientation="h", name="predicted", legendgroup="predicted",
                             showlegend=i == 1, marker_color="#dd8452",
                             error_x={"type": "data", "symmetric": False, "array": hi - lift, "arrayminus": lift - lo},
                             hovertemplate="%{y}<br>predicted lift %{x:.2f}×<extra></extra>"), row=1, col=i)
        if f"observed_lift_{lab}" in broad.columns:
            fig.add_trace(go.Scatter(x=broad[f"observed_lift_{lab}"].to_numpy(dtype=float), y=names, mode="markers",
                                     name="observed (held-out)", legendgroup="observed", showlegend=i == 1,
                                     marker={"symbol": "diamond", "size": 10, "color": "#222"},
                                     hovertemplate="%{y}<br>observed lift %{x:.2f}×<extra></extra>"), row=1, col=i)
        fig.add_vline(x=1.0, line_width=1, line_color="#444", row=1, col=i)
        fig.update_xaxes(title_text="× everyone", row=1, col=i)
    fig.update_yaxes(autorange="reversed")
    styled_layout(fig, 130 + 34 * len(broad), barmode="overlay",
                   legend={"orientation": "h", "y": -0.12 - 1.5 / len(broad), "x": 0})
    return fig.update_layout(margin={"t": 64})  # subplot titles clear of the mode bar
