"""report.html: one self-contained page (charts inlined as PNG data) that explains the segments.

Everything a reader needs to judge the run offline: where segments sit in embedding space,
how big they are, how they behave, what they are likely to do next, whether the heads beat
the built-in baseline, whether scores are calibrated, and whether the segments are stable.
Charts show the broad segments; the segments table nests each one's micro segments below it.
"""

from __future__ import annotations

import base64
import html
import io
import os
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from eventseg.artifacts import atomic_path  # noqa: E402
from eventseg.data.schema import OUTPUT_ID  # noqa: E402

MAP_POINTS = 20_000  # points drawn in the embedding map; more only blurs it


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure(title: str, src: str, chart_id: str) -> str:
    return f'<figure id="{chart_id}"><figcaption>{html.escape(title)}</figcaption><img alt="{html.escape(title)}" src="{src}"></figure>'


def _segment_colors(labels: np.ndarray) -> dict:
    cmap = plt.get_cmap("tab20")
    order = sorted(s for s in set(labels.tolist()) if s >= 0)
    colors = {s: cmap(i % 20) for i, s in enumerate(order)}
    colors[-1] = (0.75, 0.75, 0.75, 0.5)
    return colors


def embedding_map(ids: np.ndarray, matrix: np.ndarray, customers: pd.DataFrame, seed: int = 0) -> str:
    """PCA to 2-D of (a sample of) the embeddings, one colour per broad segment, outliers in grey."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    take = rng.choice(len(ids), min(len(ids), MAP_POINTS), replace=False)
    xy = PCA(n_components=2, random_state=seed).fit_transform(matrix[take])
    segment = customers.set_index(OUTPUT_ID).loc[ids[take], "segment"].to_numpy()
    colors = _segment_colors(segment)
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for s in sorted(colors):
        hit = segment == s
        if hit.any():
            ax.scatter(xy[hit, 0], xy[hit, 1], s=3, color=colors[s], label="outliers" if s < 0 else f"segment {s}")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(markerscale=4, fontsize=7, loc="best")
    return _png(fig)


def _axis_names(segments: pd.DataFrame) -> tuple[list[str], float]:
    """Segment names wrapped for a chart axis, and the height in inches they need: names carry
    numbers and run long, and unwrapped they would squeeze the plot to a sliver."""
    names = [textwrap.fill(name, 44) for name in segments["name"]]
    return names, 0.2 * sum(name.count("\n") + 1 for name in names) + 0.2 * len(names)


def segment_sizes(segments: pd.DataFrame) -> str:
    names, height = _axis_names(segments)
    fig, ax = plt.subplots(figsize=(7, height + 1))
    ax.barh(names, segments["size"], color="#4c72b0")
    ax.invert_yaxis()
    ax.set_xlabel("customers")
    return _png(fig)


def profile_heatmap(segments: pd.DataFrame, columns: list[str]) -> str:
    """log2 of each segment's profile relative to all customers: red above, blue below."""
    values = np.log2(segments[columns].astype(float).clip(lower=1e-3).to_numpy())
    names, height = _axis_names(segments)
    fig, ax = plt.subplots(figsize=(0.6 * len(columns) + 3, height + 1.5))
    im = ax.imshow(values, cmap="RdBu_r", vmin=-2, vmax=2, aspect="auto")
    ax.set_xticks(range(len(columns)), [c.replace("_vs_all", "") for c in columns], rotation=45, ha="right")
    ax.set_yticks(range(len(segments)), names)
    fig.colorbar(im, ax=ax, label="log2(segment / all customers)")
    return _png(fig)


def propensity_by_segment(segments: pd.DataFrame, labels: list[str]) -> str:
    names, height = _axis_names(segments)
    fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), height + 1.5), squeeze=False)
    for ax, label in zip(axes[0], labels):
        lift = segments[f"lift_{label}"].to_numpy(dtype=float)
        lo, hi = segments[f"lift_{label}_lo"].to_numpy(dtype=float), segments[f"lift_{label}_hi"].to_numpy(dtype=float)
        ax.barh(names, lift, xerr=[lift - lo, hi - lift], color="#dd8452")
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("lift vs all customers")
        ax.invert_yaxis()
        if ax is not axes[0][0]:
            ax.set_yticks([])
    return _png(fig)


def gain_chart(predictions: dict, labels: list[str]) -> str:
    """Cumulative share of positives captured when contacting the top x% by score."""
    fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), 3.6), squeeze=False)
    for ax, label in zip(axes[0], labels):
        y = np.asarray(predictions[label]["y"], dtype=float)
        for model, p in predictions[label]["scores"].items():
            order = np.argsort(-np.asarray(p), kind="stable")
            gains = np.concatenate([[0], np.cumsum(y[order]) / max(y.sum(), 1)])
            ax.plot(np.linspace(0, 1, len(gains)), gains, label=model)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="random")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("share of customers contacted")
        ax.set_ylabel("share of positives captured")
        ax.legend(fontsize=7)
    return _png(fig)


def calibration_chart(predictions: dict, labels: list[str], bins: int = 10) -> str:
    fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), 3.6), squeeze=False)
    for ax, label in zip(axes[0], labels):
        y = np.asarray(predictions[label]["y"], dtype=float)
        for model, p in predictions[label]["scores"].items():
            p = np.asarray(p, dtype=float)
            edges = np.quantile(p, np.linspace(0, 1, bins + 1))
            which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
            mean_p = np.bincount(which, p, bins) / np.maximum(np.bincount(which, minlength=bins), 1)
            mean_y = np.bincount(which, y, bins) / np.maximum(np.bincount(which, minlength=bins), 1)
            ax.plot(mean_p, mean_y, "o-", ms=3, label=model)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed rate")
        ax.legend(fontsize=7)
    return _png(fig)


def _table(df: pd.DataFrame, table_id: str) -> str:
    return f'<div id="{table_id}">' + df.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0) + "</div>"


def _cell(column: str, value) -> str:
    """Shares and propensities as percentages, lifts to two decimals, days to one."""
    if isinstance(value, str):
        return html.escape(value)
    if pd.isna(value):
        return ""
    if column == "share" or column.startswith("mean_p_"):
        return f"{value:.1%}"
    if column.startswith("lift_"):
        return f"{value:.2f}"
    return f"{value:,}" if isinstance(value, (int, np.integer)) else f"{value:,.1f}"


def segments_table(segments: pd.DataFrame) -> str:
    """Each broad segment with its micro segments indented below it: the two levels read as one tree."""
    columns = ["segment", "name", "size", "share", "recency_days", "tenure_days"]  # the name already says visits and basket
    columns += [c for c in segments.columns if c.startswith(("mean_p_", "lift_")) and not c.endswith(("_lo", "_hi"))]
    columns.append("over_indexed")
    broad, micro = segments[segments["level"] == "broad"], segments[segments["level"] == "micro"]
    body = []
    for _, parent in broad.iterrows():
        children = micro[micro["parent"] == parent["segment"]]
        for level, row in [("broad", parent), *(("micro", child) for _, child in children.iterrows())]:
            body.append(f'<tr class="{level}">' + "".join(f"<td>{_cell(c, row[c])}</td>" for c in columns) + "</tr>")
    head = "".join(f"<th>{html.escape(c).replace('_', '_<wbr>')}</th>" for c in columns)  # long headers may wrap
    return f'<div id="table-segments" class="wide"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def build_report(
    path: str | os.PathLike,
    *,
    ids: np.ndarray,
    matrix: np.ndarray,
    customers: pd.DataFrame,
    segments: pd.DataFrame,
    cluster_metrics: dict,
    propensity: dict | None = None,
    title: str = "eventseg report",
    representation: str = "embedding",
) -> Path:
    """Write the report atomically. `propensity` holds "labels", "metrics" (a DataFrame of
    model x label scores) and "predictions" ({label: {"y": test labels, "scores": {model: p}}}).
    `matrix` is what was clustered; `representation` names it ("embedding" or "hybrid")."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    broad = segments[segments["level"] == "broad"]
    n_broad, n_micro = int((broad["segment"] >= 0).sum()), int((segments["level"] == "micro").sum())
    outliers, core = float(customers["is_outlier"].mean()), float(customers["is_core"].mean())
    parts.append(f"<p>{len(customers):,} customers in {n_broad} segments and {n_micro} micro segments: "
                 f"{1 - outliers:.1%} placed in a segment, {outliers:.1%} outliers, {core:.1%} in a dense core.</p>")
    what = "Embedding" if representation == "embedding" else "Embedding + aggregates (hybrid)"
    parts.append(_figure(f"{what} map (PCA), coloured by segment", embedding_map(ids, matrix, customers), "chart-map"))
    parts.append(_figure("Segment sizes", segment_sizes(broad), "chart-sizes"))
    profile_cols = [c for c in broad.columns if c.endswith("_vs_all") and broad[c].notna().any()]
    if profile_cols:
        parts.append(_figure("Behavioural profile vs all customers", profile_heatmap(broad, profile_cols), "chart-profile"))
    parts.append("<h2>Segments</h2>" + segments_table(segments))
    if propensity:
        labels = list(propensity["labels"])
        if labels:  # every label may have been skipped (one class, complement of another): no charts then
            parts.append(_figure("Propensity lift by segment (95% interval)", propensity_by_segment(broad, labels), "chart-lift"))
            parts.append(_figure("Gain chart on test customers", gain_chart(propensity["predictions"], labels), "chart-gain"))
            parts.append(_figure("Calibration on test customers", calibration_chart(propensity["predictions"], labels), "chart-calibration"))
        metrics = propensity["metrics"]
        is_binary = metrics["roc_auc"].notna() if "roc_auc" in metrics else pd.Series(True, index=metrics.index)
        tables = [_table(part.dropna(axis=1, how="all"), table_id)  # classification and regression columns apart
                  for part, table_id in ((metrics[is_binary], "table-models"), (metrics[~is_binary], "table-models-regression"))
                  if len(part)]
        parts.append("<h2>Heads vs baseline (test customers)</h2>" + "".join(tables))
    stability = cluster_metrics.get("stability") or {}
    if stability:
        rows = pd.DataFrame([{k: v for k, v in stability.items() if not isinstance(v, (list, dict))}])
        parts.append("<h2>Stability under resampling</h2>" + _table(rows, "table-stability"))
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "figure{margin:1.5em 0}figcaption{font-weight:600;margin-bottom:.4em}img{max-width:100%}"
             "table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #ddd}"
             ".wide{overflow-x:auto}#table-segments td:nth-child(2){min-width:20em}#table-segments td:last-child{min-width:12em}"
             "tr.broad{font-weight:600;background:#f4f6fa}tr.micro{color:#555}tr.micro td:nth-child(2){padding-left:2em}")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
