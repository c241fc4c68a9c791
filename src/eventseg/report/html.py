"""report.html: one self-contained page an analyst acts on — the run's facts and verdict, a card
per broad segment, the interactive map, model quality and stability.

Self-contained means it opens offline from an e-mail attachment: Plotly's own bundle is inlined
once, every style is inline, and nothing points outside the file. Script errors are written into
the page (data-js-errors on <html> and a visible note), so a broken chart is seen, not hidden."""

from __future__ import annotations

import os
from pathlib import Path

from plotly.offline import get_plotlyjs

from eventseg.report.cards import segment_cards
from eventseg.report.figures import visualize_lift, visualize_map, visualize_profile, visualize_sizes
from eventseg.report.format import esc, integer, words
from eventseg.report.inputs import ReportInputs
from eventseg.report.monitoring import monitoring_section
from eventseg.report.quality import visualize_calibration, visualize_gain
from eventseg.report.sections import candidates_table, run_facts, segments_vs_rfm, stability, verdict_banner
from eventseg.run.artifacts import atomic_path
from eventseg.run.layout import RunLayout

PLOT_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}

ERROR_HOOK = """<script>(function(){var errs=[];function show(){var box=document.getElementById('js-errors');
if(box&&errs.length){box.hidden=false;box.textContent='A chart failed to draw: '+errs.join(' | ');}}
function note(msg){errs.push(String(msg));document.documentElement.setAttribute('data-js-errors',String(errs.length));show();}
window.addEventListener('error',function(e){note(e.message||e);});
window.addEventListener('unhandledrejection',function(e){note(e.reason&&e.reason.message||e.reason);});
document.addEventListener('DOMContentLoaded',show);})();</script>"""

DONE_HOOK = """<script>document.documentElement.setAttribute('data-charts',
String(document.querySelectorAll('.js-plotly-plot').length));</script>"""

STYLE = """
:root{--ink:#1f2328;--muted:#656d76;--line:#d8dee4;--soft:#f6f8fa}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--ink);max-width:1180px;margin:0 auto;padding:1.5em 1.2em 4em;line-height:1.45}
h1{font-size:1.6em;margin:.2em 0 .4em}h2{font-size:1.25em;margin:2em 0 .6em;border-bottom:1px solid var(--line);padding-bottom:.2em}
h3{font-size:1.05em;margin:1.2em 0 .4em}h4{font-size:.78em;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);margin:0 0 .3em}
nav{font-size:.9em;margin:.6em 0}nav a{margin-right:1.1em;color:#0969da;text-decoration:none}
.muted{color:var(--muted);font-size:.88em;margin:.2em 0}
dl.facts{display:flex;flex-wrap:wrap;gap:.4em 1.6em;margin:.4em 0;font-size:.92em}
dl.facts div{min-width:8em}dl.facts dt{color:var(--muted);font-size:.8em;text-transform:uppercase;letter-spacing:.03em}
dl.facts dd{margin:0;font-weight:600}dl.compact{font-size:.86em}
.verdict{padding:.7em 1em;border-radius:8px;border:1px solid var(--line);background:var(--soft);margin:1em 0;overflow-wrap:anywhere}
.verdict.good{background:#dafbe1;border-color:#4ac26b}.verdict.bad{background:#ffebe9;border-color:#ff8182}
.verdict.neutral{background:#fff8c5;border-color:#d4a72c}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1em}
.card{border:1px solid var(--line);border-left:6px solid var(--seg);border-radius:8px;padding:.8em 1em;background:#fff;min-width:0}
.card.outliers{background:var(--soft)}.card:has(details[open]){grid-column:1/-1}
.card h3{margin:0;font-size:1.08em}.card .size{font-weight:600}
.card .facts{color:var(--muted);margin:.2em 0 .6em;font-size:.9em}
.blocks{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:.7em 1.2em}
.block p,.block ul{margin:.1em 0;font-size:.92em}.block ul{padding-left:1.1em}
.block.observed{background:#f0f6ff;border-radius:6px;padding:.4em .6em}
.block.action{background:#fff8e6;border-radius:6px;padding:.4em .6em;grid-column:1/-1}
.ci{color:var(--muted);font-size:.9em}code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em;background:var(--soft);padding:.05em .3em;border-radius:4px;overflow-wrap:anywhere}
.chip{display:inline-block;padding:0 .35em;border-radius:4px;font-variant-numeric:tabular-nums;font-size:.92em}
.chip.up{background:#ffdcd7}.chip.down{background:#d6e8ff}.chip.flat{background:#eaeef2}
table{border-collapse:collapse;font-size:.86em}td,th{padding:.25em .6em;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600}.num,td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.mini td{border:0;padding:.05em .5em .05em 0}
.wide{overflow-x:auto;max-width:100%}
details{margin-top:.6em}summary{cursor:pointer;color:#0969da;font-size:.92em}
table.micro{margin-top:.4em}table.micro td:first-child{min-width:18em}table.micro td:last-child{min-width:16em}
figure{margin:1em 0}figcaption{font-weight:600;margin-bottom:.3em}
/* two fixed tracks: with auto-fit the first chart is drawn full width before its neighbour exists */
.pair{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:1em}.pair>figure{min-width:0;margin:0}
@media (max-width:900px){.pair{grid-template-columns:minmax(0,1fr)}}
#js-errors{position:fixed;bottom:0;left:0;right:0;background:#ffebe9;border-top:2px solid #cf222e;padding:.5em 1em}
"""


def _figure(fig, chart_id: str, caption: str) -> str:
    """A Plotly figure as a <figure>: its data and a newPlot call (the library is inlined once)."""
    body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"{chart_id}-plot", config=PLOT_CONFIG,
                       default_height=f"{int(fig.layout.height or 400)}px", default_width="100%")
    return f'<figure id="{chart_id}"><figcaption>{esc(caption)}</figcaption>{body}</figure>'


def _quality(inputs: ReportInputs) -> str:
    """Per label: the verdict, gain and calibration side by side, and every candidate's numbers."""
    metrics = inputs.propensity_metrics
    if not metrics:
        return ('<p class="muted">no labels: nothing to predict, so no model quality to show '
                "(set labels.path or data.cutoff)</p>")
    parts = []
    outcomes = metrics.get("outcomes") or {}
    for label, outcome in outcomes.items():
        verdict = outcome.get("verdict")
        parts.append(f"<h3>{esc(words(label))}</h3>" + (f"<p><b>Verdict:</b> {esc(verdict)}</p>" if verdict else ""))
        scores = inputs.predictions.get(label)
        if scores is not None and len(scores.y) and scores.scores:
            parts.append('<div class="pair">'
                         + _figure(visualize_gain(scores.y, scores.scores, title=f"gain · {words(label)}"),
                                   f"chart-gain-{label}", "Gain on test customers")
                         + _figure(visualize_calibration(scores.y, scores.scores, title=f"calibration · {words(label)}"),
                                   f"chart-calibration-{label}", "Calibration on test customers")
                         + "</div>")
        parts.append(candidates_table(inputs, label))
    parts.append(segments_vs_rfm(inputs))
    return "".join(parts)


def render(inputs: ReportInputs) -> str:
    """The whole page as one string."""
    broad = inputs.broad
    n_broad = int((broad["segment"] >= 0).sum())
    what = "Embedding + aggregates (hybrid)" if inputs.representation == "hybrid" else "Embedding"
    parts = [f"<h1>{esc(inputs.title)}</h1>", run_facts(inputs), verdict_banner(inputs),
             '<nav><a href="#segments">Segments</a><a href="#map">Map</a><a href="#behaviour">Size &amp; behaviour</a>'
             '<a href="#quality">Model quality</a><a href="#stability">Stability</a>'
             + ('<a href="#monitoring">Over time</a>' if inputs.monitor else "")
             + ('<a href="#audit">Fairness audit</a>' if inputs.audit else "") + "</nav>",
             f'<h2 id="segments">{n_broad} segments</h2>'
             f'<p class="muted">{integer(len(inputs.customers))} customers; each card is one broad segment, largest first '
             "(open it for its micro-segments). Ratios compare the segment with all customers; a rule's precision is the "
             "share of the customers it picks who are in the segment, its recall the share of the segment it picks.</p>",
             segment_cards(inputs)]
    parts.append('<h2 id="map">Map</h2>')
    if inputs.matrix is not None and inputs.ids is not None and len(inputs.ids) > 1:
        parts.append(_figure(visualize_map(inputs.ids, inputs.matrix, inputs.customers), "chart-map",
                             f"{what} map (PCA), coloured by broad segment; outliers grey; hover for facts"))
    else:
        parts.append('<p class="muted">no embeddings in the run folder: no map</p>')
    parts.append('<h2 id="behaviour">Size &amp; behaviour</h2>')
    parts.append(_figure(visualize_sizes(inputs.segments), "chart-sizes", "Customers per broad segment"))
    if any(c in broad.columns and broad[c].notna().any() for c in ("visits_vs_all", "basket_vs_all", "recency_vs_all")):
        parts.append(_figure(visualize_profile(inputs.segments), "chart-profile", "Behaviour vs all customers"))
    if inputs.binary_labels:
        parts.append(_figure(visualize_lift(inputs.segments), "chart-lift",
                             "Lift vs everyone: predicted (bars, 95% interval) and observed on held-out customers"))
    parts.append('<h2 id="quality">Model quality</h2>' + _quality(inputs))
    parts.append('<h2 id="stability">Stability</h2>' + stability(inputs))
    if inputs.monitor:
        parts.append('<h2 id="monitoring">Segments over time</h2>'
                     + monitoring_section(inputs.monitor, inputs.monitor_transitions, inputs.segments, _figure))
    if inputs.audit:
        from eventseg.report.audit_section import (
            audit_section,  # here: eventseg.apps.audit itself imports report.format
        )

        parts.append('<h2 id="audit">Fairness audit</h2>' + audit_section(inputs.audit, _figure))
    head = (f'<meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{esc(inputs.title)}</title><style>{STYLE}</style>{ERROR_HOOK}"
            f'<script type="text/javascript">{get_plotlyjs()}</script>')
    return (f'<!doctype html><html lang="en"><head>{head}</head><body>{"".join(parts)}'
            f'<div id="js-errors" hidden></div>{DONE_HOOK}</body></html>')


def report_title(data_name) -> str:
    return f"eventseg · {data_name}"


def rebuild_run_report(run_dir: str | os.PathLike) -> Path:
    """report.html again from a finished run's files, after a later job (monitor, audit) added its own."""
    from eventseg.run.manifest import read_manifest, record_rewritten_file

    run = Path(run_dir)
    cfg = read_manifest(run).get("config") or {}
    inputs = ReportInputs.from_run(run, title=report_title((cfg.get("data") or {}).get("name")),
                                   representation=str(cfg.get("representation") or "embedding"))
    path = build_report(RunLayout(run).report, inputs)
    record_rewritten_file(run, RunLayout.report)
    return path


def build_report(path: str | os.PathLike, inputs: ReportInputs) -> Path:
    """Write the page atomically: a failed write leaves the previous report whole."""
    page = render(inputs)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
