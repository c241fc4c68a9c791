"""Does a score rank and is it honest: cumulative gain (who to contact first) and calibration
(is "30%" really 30%), on test customers, for the published candidate beside the baselines."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from eventseg.report.figures import PALETTE, styled_layout

CURVE_POINTS = 101  # a gain curve drawn at every 1% of customers: the file stays small at any size


def _scores(scores) -> dict[str, np.ndarray]:
    return dict(scores) if isinstance(scores, dict) else {"score": np.asarray(scores)}


def visualize_gain(y, scores, *, title: str | None = None) -> go.Figure:
    """Share of all positives captured when contacting the top x% by each score; the diagonal is
    contacting at random, the dotted line a perfect ranking."""
    y = np.asarray(y, dtype=float)
    n, positives = len(y), max(float(y.sum()), 1.0)
    share = np.linspace(0, 1, CURVE_POINTS)
    at = np.round(share * n).astype(int)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=share, y=np.minimum(at / positives, 1.0), mode="lines", name="perfect",
                             line={"dash": "dot", "color": "#999", "width": 1}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="random", line={"dash": "dash", "color": "#666", "width": 1},
                             hoverinfo="skip"))
    for i, (model, p) in enumerate(_scores(scores).items()):
        order = np.argsort(-np.asarray(p, dtype=float), kind="stable")
        gains = np.concatenate([[0.0], np.cumsum(y[order]) / positives])[at]
        fig.add_trace(go.Scatter(x=share, y=gains, mode="lines", name=model, line={"color": PALETTE[i], "width": 2},
                                 hovertemplate=f"{model}<br>top %{{x:.0%}} contacted → %{{y:.0%}} of positives<extra></extra>"))
    return styled_layout(fig, 360, title={"text": title or "cumulative gain", "font": {"size": 13}},
                   xaxis={"title": "share of customers contacted (highest score first)", "tickformat": ".0%"},
                   yaxis={"title": "share of positives captured", "tickformat": ".0%", "range": [0, 1.02]},
                   legend={"x": 0.98, "xanchor": "right", "y": 0.02, "yanchor": "bottom"})


def _bins(p: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-count bins by rank (quantile edges collapse when many scores tie)."""
    groups = np.array_split(np.argsort(p, kind="stable"), min(bins, len(p)))
    groups = [g for g in groups if len(g)]
    return (np.array([p[g].mean() for g in groups]), np.array([y[g].mean() for g in groups]),
            np.array([len(g) for g in groups]))


def visualize_calibration(y, scores, *, bins: int = 10, title: str | None = None) -> go.Figure:
    """Mean predicted probability against the observed rate in ten equal-size groups of
    customers; points on the diagonal mean the score can be read as a probability."""
    y = np.asarray(y, dtype=float)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                             line={"dash": "dash", "color": "#666", "width": 1}, hoverinfo="skip"))
    top = 0.0
    for i, (model, p) in enumerate(_scores(scores).items()):
        mean_p, rate, count = _bins(np.asarray(p, dtype=float), y, bins)
        top = max(top, float(mean_p.max(initial=0)), float(rate.max(initial=0)))
        fig.add_trace(go.Scatter(x=mean_p, y=rate, mode="lines+markers", name=model, customdata=count,
                                 line={"color": PALETTE[i], "width": 2}, marker={"size": 6},
                                 hovertemplate=f"{model}<br>predicted %{{x:.0%}}, observed %{{y:.0%}}"
                                               "<br>%{customdata:,} customers<extra></extra>"))
    edge = min(1.0, top * 1.08 + 0.02)
    return styled_layout(fig, 360, title={"text": title or "calibration", "font": {"size": 13}},
                   xaxis={"title": "predicted probability", "tickformat": ".0%", "range": [0, edge]},
                   yaxis={"title": "observed rate", "tickformat": ".0%", "range": [0, edge]},
                   legend={"x": 0.02, "y": 0.98})
