"""The page's text sections: what data the run saw and how training went, the one-line verdict
on embeddings vs RFM, every candidate model against the baselines with intervals, whether the
segments explain outcomes better than RFM groups, and how stable they are."""

from __future__ import annotations

from eventseg.propensity.selection import BASELINES
from eventseg.report.format import MISSING, esc, fixed, integer, interval, missing, number, percent, signed, words
from eventseg.report.inputs import ReportInputs


def html_table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    return (f'<div class="wide"><table class="{cls}"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
            + "</tbody></table></div>")


def run_facts(inputs: ReportInputs) -> str:
    """Data, size, window and truncation, training against the constant guess, segment counts."""
    summary = inputs.summary or {}
    data, training, seg = summary.get("data") or {}, summary.get("training") or {}, summary.get("segments") or {}
    facts = []
    if data.get("name"):
        facts.append(("data", esc(data["name"])))
    facts.append(("customers", integer(data.get("customers") or len(inputs.customers))))
    if not missing(data.get("events")):
        facts.append(("events", integer(data["events"])))
    facts.append(("cutoff", esc(data["cutoff"]) if data.get("cutoff") else "none (all events)"))
    if not missing(data.get("horizon_days")):
        facts.append(("label window", f"{integer(data['horizon_days'])} days after the cutoff"))
    if not missing(data.get("customers_truncated")):
        cut = int(data["customers_truncated"])
        facts.append(("truncation", "none" if not cut else
                      f"{integer(cut)} customers kept to their last {integer(data.get('max_len'))} events "
                      f"({integer(data.get('events_truncated'))} older events left out)"))
    if training:
        beats = training.get("beats_constant_guess")
        word = "beats" if beats else "does not beat" if beats is not None else "vs"
        loss, const = training.get("val_loss"), training.get("constant_guess")
        text = f"validation loss {number(loss)} {word} the constant guess ({number(const)})"
        if not missing(training.get("vs_constant")):
            text += f": {percent(abs(1 - float(training['vs_constant'])))} {'lower' if float(training['vs_constant']) < 1 else 'higher'}"
        if training.get("objective"):
            text = f"{esc(training['objective'])} objective, " + text
        if not missing(training.get("steps")):
            text += f", {integer(training['steps'])} steps"
        facts.append(("training", text))
    n_broad = seg.get("n_broad", int((inputs.broad["segment"] >= 0).sum()))
    n_micro = seg.get("n_micro", len(inputs.micro))
    outliers = seg.get("outlier_share", float(inputs.customers["is_outlier"].mean()) if "is_outlier" in inputs.customers else None)
    facts.append(("segments", f"{integer(n_broad)} broad, {integer(n_micro)} micro; {percent(outliers)} outliers"
                  + (f", {percent(seg['coverage'])} placed in a segment" if not missing(seg.get("coverage")) else "")))
    facts.append(("map of", "embeddings + aggregates (hybrid)" if inputs.representation == "hybrid" else "embeddings"))
    return '<dl class="facts">' + "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts) + "</dl>"


def _propensity_verdicts(inputs: ReportInputs) -> list[str]:
    outcomes = (inputs.propensity_metrics or {}).get("outcomes") or {}
    return [f"{words(lab)}: {o['verdict']}" for lab, o in outcomes.items() if o.get("kind") == "binary" and o.get("verdict")]


def _segment_verdicts(inputs: ReportInputs) -> list[str]:
    eta = ((inputs.summary or {}).get("segments") or {}).get("eta2") \
        or ((inputs.segment_metrics or {}).get("outcomes") or {})
    return [f"{words(lab)}: {r['verdict']}" for lab, r in eta.items() if isinstance(r, dict) and r.get("verdict")]


def verdict_banner(inputs: ReportInputs) -> str:
    """One line in words: do the embeddings beat RFM here (scores; and segments, when measured)."""
    if not inputs.has_labels:
        return ('<p class="verdict neutral" id="verdict"><b>Embeddings vs RFM:</b> not measured: '
                "this run has no labels, so nothing was predicted or observed</p>")
    line = (inputs.summary or {}).get("verdict")
    if isinstance(line, str) and line.strip():
        for label in sorted(inputs.binary_labels + inputs.continuous_labels, key=len, reverse=True):
            line = line.replace(label, words(label))
        scores = [line]
    else:
        scores = _propensity_verdicts(inputs)
    segments = _segment_verdicts(inputs)
    text = " · ".join(part for part in (
        ("scores — " + "; ".join(scores)) if scores else "",
        ("segments vs RFM k-means — " + "; ".join(segments)) if segments else "") if part)
    joined = " ".join(scores + segments)
    wins, ties = joined.count("beats") + joined.count("explains more"), joined.count("within noise") + joined.count("no better")
    tone = "bad" if "worse" in joined else "good" if wins and not ties else "neutral"  # green only when it wins throughout
    return f'<p class="verdict {tone}" id="verdict"><b>Embeddings vs RFM:</b> {esc(text or "not measured")}</p>'


def _lift(value) -> str:
    return MISSING if missing(value) else f"{float(value):.2f}×"


def _model_cell(model: str, candidate: dict, published: str | None) -> str:
    """The model's name (bold when published); hovering it shows what the model is."""
    name = f"<b>{esc(model)}</b>" if model == published else esc(model)
    what = candidate.get("description")
    return f'<span title="{esc(what)}">{name}</span>' if what else name


def _role(model: str, published: str | None) -> str:
    if model == published:
        return "published"
    return "baseline" if model in BASELINES else "candidate"


def candidates_table(inputs: ReportInputs, label: str) -> str:
    """Every candidate for a label on test customers, the difference from the reference (RFM)
    with its 95% bootstrap interval, and the true propensity where the data knows it."""
    metrics = inputs.propensity_metrics or {}
    outcome = (metrics.get("outcomes") or {}).get(label) or {}
    reference = (metrics.get("selection") or {}).get("reference", "rfm_logistic")
    published = outcome.get("selected")
    candidates = outcome.get("candidates") or {m: {"test": t} for m, t in ((metrics.get("test") or {}).get(label) or {}).items()
                                                 if m != "oracle"}
    rows = []
    if outcome.get("kind", "binary") == "binary":
        head = ["model", "role", "ROC-AUC", f"vs {esc(reference)} (95% interval)", "PR-AUC", "top-10% lift", "Brier", "ECE"]
        for model, c in candidates.items():
            t, vs = c.get("test") or {}, c.get(f"test_roc_auc_vs_{reference}") or {}
            diff = "reference" if model == reference else (
                f"{signed(vs.get('difference'))} {interval(vs.get('ci_low'), vs.get('ci_high'), signed)}" if vs else MISSING)
            rows.append([_model_cell(model, c, published), _role(model, published), fixed(t.get("roc_auc")), diff,
                         fixed(t.get("pr_auc")), _lift(t.get("top_decile_lift")), fixed(t.get("brier")), fixed(t.get("ece"))])
        oracle = outcome.get("oracle")
        if oracle:
            rows.append(["true propensity", "ceiling (synthetic truth)", fixed(oracle.get("roc_auc")), MISSING,
                         fixed(oracle.get("pr_auc")), _lift(oracle.get("top_decile_lift")),
                         fixed(oracle.get("brier")), fixed(oracle.get("ece"))])
    else:
        head = ["model", "role", "R²", "MAE", "RMSE", "mean outcome"]
        for model, c in candidates.items():
            t = c.get("test") or {}
            rows.append([_model_cell(model, c, published), _role(model, published), fixed(t.get("r2")),
                         number(t.get("mae")), number(t.get("rmse")), number(t.get("mean"))])
    n = next((c.get("test", {}).get("n") for c in candidates.values() if c.get("test")), None)
    note = (f'<p class="muted">{integer(n)} test customers; the published model is in bold; hover a name for what '
            'the model is</p>') if n else ""
    return html_table(head, rows, "models") + note


def segments_vs_rfm(inputs: ReportInputs) -> str:
    """η²: the share of an observed outcome's variance the broad segments explain on test
    customers, against k-means on RFM with as many groups."""
    outcomes = (inputs.segment_metrics or {}).get("outcomes") or ((inputs.summary or {}).get("segments") or {}).get("eta2")
    if not outcomes:
        return ""
    rows = []
    for label, r in outcomes.items():
        eta = r.get("eta2", r)
        rows.append([esc(words(label)), fixed(eta.get("eventseg")), fixed(eta.get("rfm_kmeans")),
                     fixed(eta.get("limit")), esc(r.get("verdict") or MISSING)])
    return ("<h3>Do the segments separate outcomes better than RFM groups?</h3>"
            + html_table(["outcome", "η² segments", "η² RFM k-means", "η² limit (score tiers)", "verdict"], rows, "models")
            + '<p class="muted">η²: share of the observed outcome\'s variance explained by group membership, on test customers</p>')


def stability(inputs: ReportInputs) -> str:
    """Would the same segments come back on other data or another seed (adjusted Rand index)."""
    cm = inputs.cluster_metrics or {}
    broad = cm.get("broad") or {}
    stab = broad.get("stability") or cm.get("stability") or {}
    if not stab:
        return '<p class="muted">no stability measurements in cluster_metrics.json</p>'
    names = {"ari_resample_mean": "ARI on resamples (mean)", "ari_resample_min": "ARI on resamples (worst)",
             "ari_seed": "ARI with another seed", "silhouette": "silhouette", "largest_share": "largest segment"}
    items = [(names.get(k, words(k)), percent(v) if k.endswith("share") else number(v))
             for k, v in stab.items() if not isinstance(v, (list, dict))]
    out = '<dl class="facts compact">' + "".join(f"<div><dt>{esc(k)}</dt><dd>{v}</dd></div>" for k, v in items) + "</dl>"
    selection = broad.get("selection") or []
    if selection:
        rows = [[("<b>%s</b>" if s.get("chosen") else "%s") % integer(s.get("k")), number(s.get("ari_resample_mean")),
                 number(s.get("ari_seed")), percent(s.get("largest_share")), number(s.get("silhouette")),
                 "chosen" if s.get("chosen") else ("eligible" if s.get("eligible") else "unstable")] for s in selection]
        out += ("<details><summary>how the number of broad segments was chosen</summary>"
                + html_table(["segments", "ARI resamples", "ARI seed", "largest", "silhouette", ""], rows, "models compact")
                + "</details>")
    dense = (cm.get("dense") or {}).get("stability") or {}
    if dense.get("ari_mean") is not None:
        unstable = dense.get("unstable_groups") or []
        out += (f'<p class="muted">micro-segments (dense groups): ARI on resamples {number(dense["ari_mean"])}; '
                f"{len(unstable)} of {integer((cm.get('dense') or {}).get('n_groups'))} dense groups unstable</p>")
    return out
