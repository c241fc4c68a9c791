"""Do the embeddings earn their keep? The same probes on every representation, one split.

For a dataset with labels, `evaluate_probes` fits the same simple probes (logistic
regression, gradient-boosted trees) on the same seeded customer split for
- `aggregates`: the hand-made features of eventseg.features.aggregates (the yardstick);
- each set of embeddings (one per training objective, or any embeddings file);
- each `<embeddings>+aggregates`: both blocks side by side (eventseg.features.representation.HybridRepresentation);
and reports test ROC-AUC with a bootstrap 95% interval, PR-AUC and top-decile lift, plus the
oracle (true probabilities) where a truth table exists. Probes are deliberately fixed and
simple: a difference between rows is then a difference between representations, not tuning.

Every representation goes through HybridRepresentation (with one block or both), so the
aggregate columns are scaled identically alone and in the hybrid: a difference in AUC is the
added block, not a different regularisation strength.

`evaluate_from_config` is the script's entry: it trains one model per objective (reusing
up-to-date trainings and embeddings through eventseg.run.stages), builds or reads the labels,
runs the probes and writes `evaluation.md` and `evaluation.json` under `out_dir`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from eventseg.data.io import read_events, read_table
from eventseg.data.labels import align_to_ids, build_labels, complement_of, label_kinds, one_class_reason
from eventseg.data.schema import EventSchema, id_key
from eventseg.data.sources import completejourney_demographic_labels, resolve_source, source_files
from eventseg.data.split import SPLITS, TEST, TRAIN, VAL, assign_splits
from eventseg.features.aggregates import AggregateFeatureBuilder, as_validated
from eventseg.features.representation import HybridRepresentation
from eventseg.propensity.metrics import bootstrap_aucs, classification_metrics, percentile_interval
from eventseg.run.artifacts import atomic_path, sidecar_path, write_json
from eventseg.run.columns import probability_column
from eventseg.run.config import plain
from eventseg.run.layout import RunLayout

PROBES = ("logistic", "hgb")
AGGREGATES = "aggregates"
ORACLE = "oracle"
# The targets, ROC-AUC against aggregates: embeddings alone within 0.005, hybrid ahead by 0.01.
EMBEDDING_TOLERANCE = 0.005
HYBRID_GAIN = 0.01


# --- probes ----------------------------------------------------------------------------------


def make_probe(kind: str, seed: int = 0, logistic: Mapping | None = None, hgb: Mapping | None = None):
    """A fresh, fixed probe: `logistic` (L2, fixed C) or `hgb` (seeded trees, no early stopping)."""
    if kind == "logistic":
        return LogisticRegression(**{"C": 1.0, "max_iter": 2000, **dict(logistic or {})})
    if kind == "hgb":
        return HistGradientBoostingClassifier(**{"early_stopping": False, **dict(hgb or {}), "random_state": seed})
    raise ValueError(f"unknown probe {kind!r}; use any of {list(PROBES)}")


def _probe_labels(tables: Sequence[pd.DataFrame], ids: np.ndarray, id_col: str) -> tuple[pd.DataFrame, dict]:
    """The binary label columns of every table, aligned to `ids` (NaN = unlabelled), and a report."""
    aligned, reports = [], []
    for table in tables:
        values, report = align_to_ids(ids, table, id_key(table.columns, id_col), "labels")
        clash = sorted(set(values.columns) & {c for a in aligned for c in a.columns})
        if clash:
            raise ValueError(f"label column(s) {clash} come from more than one labels table: rename one")
        aligned.append(values)
        reports.append({"columns": list(values.columns), **report})
    if not aligned:
        raise ValueError("no labels: set labels.path, or data.cutoff to build them from the events (or labels.demographics)")
    labels = pd.concat(aligned, axis=1)
    binary, continuous, skipped = label_kinds(labels)
    skipped.update({c: "continuous target: the probes are classifiers" for c in continuous})
    kept = []
    for col in binary:
        other = complement_of(labels, col, kept)
        if other is not None:
            skipped[col] = f"exactly 1 - {other}: same ranking problem"
        else:
            kept.append(col)
    if not kept:
        raise ValueError(f"no binary (0/1) label to probe; skipped: {skipped}")
    return labels[kept], {"tables": reports, "probed": kept, "skipped": skipped}


def evaluate_probes(
    events: pd.DataFrame,
    schema: EventSchema,
    embeddings: Mapping[str, tuple[np.ndarray, np.ndarray]],
    labels: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    truth: pd.DataFrame | None = None,
    cutoff=None,
    split_seed: int = 0,
    split_fractions=(0.8, 0.1, 0.1),
    kinds: Sequence[str] = PROBES,
    n_boot: int = 1000,
    seed: int = 0,
    logistic: Mapping | None = None,
    hgb: Mapping | None = None,
    top_k_categories: int = 10,
    threads: int | None = None,
) -> dict:
    """Fit every probe on every representation, score the test split; a JSON-ready dict.

    events: the event log; aggregates see only events strictly before `cutoff`.
    embeddings: name -> (ids, matrix [n, dim]) of history before the cutoff.
    labels: one table or several (id column + label columns); binary 0/1 columns are probed,
        NaN = unlabelled for that label only.
    truth: optional id + `p_<label>` columns: the oracle row.
    Customers evaluated: those with history before the cutoff and a vector in every set of
    embeddings, split by `assign_splits(ids, split_seed, split_fractions)`; probes are fitted
    on train + validation and scored on test. Bootstrap resamples (`n_boot`, `seed`) are
    shared by every row of a label, so the deltas against aggregates are paired.
    threads: cap on the probes' OpenMP/BLAS threads (None: the libraries' default). On a busy
        shared CPU, 1 avoids threads spin-waiting for each other (a tiny tree fit can take 50 s).
    """
    started = time.perf_counter()
    kinds = list(kinds)
    if not kinds or set(kinds) - set(PROBES):
        raise ValueError(f"probe kinds must be a non-empty subset of {list(PROBES)}, got {kinds}")
    clash = {AGGREGATES, ORACLE} & set(embeddings)
    if clash or any("+" in name for name in embeddings):
        raise ValueError(f"embeddings names must not be {sorted({AGGREGATES, ORACLE})} nor contain '+'; got {list(embeddings)}")
    events = as_validated(events, schema)
    history = events if cutoff is None else events.loc[events[schema.time_col] < pd.Timestamp(cutoff)]
    ids = np.sort(history[schema.id_col].unique())
    if len(ids) == 0:
        raise ValueError(f"no events before the cutoff {cutoff}: nothing to evaluate")

    # customers in every set of embeddings; a set covering none of them is an error (align_to_ids)
    rows, coverage = {}, {"with_history": int(len(ids))}
    for name, (emb_ids, matrix) in embeddings.items():
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or len(matrix) != len(emb_ids):
            raise ValueError(f"embeddings '{name}' must be [customers, dim] with one row per id, got {matrix.shape} for {len(emb_ids)} ids")
        pos, _ = align_to_ids(ids, pd.DataFrame({"id": np.asarray(emb_ids), "row": np.arange(len(emb_ids))}), "id", f"embeddings '{name}'")
        rows[name] = pos["row"].to_numpy()
        coverage[f"without_{name}"] = int(np.isnan(rows[name]).sum())
    keep = np.all([~np.isnan(r) for r in rows.values()], axis=0) if rows else np.ones(len(ids), dtype=bool)
    ids = ids[keep]
    coverage["evaluated"] = int(len(ids))
    splits = assign_splits(ids, split_seed, split_fractions)
    fit, test = np.isin(splits, (TRAIN, VAL)), splits == TEST
    if not fit.any() or not test.any():
        raise ValueError(f"{len(ids)} customers give an empty fit or test split with fractions {list(split_fractions)}")

    builder = AggregateFeatureBuilder(schema, top_k_categories).fit(history.loc[history[schema.id_col].isin(ids[fit])], cutoff)
    A = builder.transform(history, cutoff).reindex(ids).to_numpy(np.float64)
    blocks = {AGGREGATES: (None, A)}
    for name, (_, matrix) in embeddings.items():
        E = np.asarray(matrix, dtype=np.float64)[rows[name][keep].astype(np.int64)]
        blocks[name] = (E, None)
        blocks[f"{name}+{AGGREGATES}"] = (E, A)
    X = {name: HybridRepresentation().fit(*(None if b is None else b[fit] for b in pair)).transform(*pair)
         for name, pair in blocks.items()}  # fmt: skip

    label_table, label_report = _probe_labels([labels] if isinstance(labels, pd.DataFrame) else list(labels), ids, schema.id_col)
    oracle = None
    if truth is not None:
        wanted = [probability_column(c) for c in label_table.columns if probability_column(c) in truth.columns]
        if wanted:
            oracle, _ = align_to_ids(ids, truth, id_key(truth.columns, schema.id_col), "truth", columns=wanted)

    results, skipped = {}, dict(label_report["skipped"])
    with threadpool_limits(limits=threads) if threads else contextlib.nullcontext():
        for label in label_table.columns:
            y = label_table[label].to_numpy()
            known = ~np.isnan(y)
            fit_rows, test_rows = fit & known, test & known
            reason = one_class_reason(y, fit_rows, "fit (train + val)") or one_class_reason(y, test_rows, "test")
            if reason:
                skipped[label] = reason
                continue
            y_fit, y_test = y[fit_rows], y[test_rows]
            rows_out, samples = [], {}
            for rep, matrix in X.items():
                for kind in kinds:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)
                        probe = make_probe(kind, seed, logistic, hgb).fit(matrix[fit_rows], y_fit)
                    p = probe.predict_proba(matrix[test_rows])[:, list(probe.classes_).index(1.0)]
                    samples[rep, kind] = bootstrap_aucs(y_test, p, n_boot, seed)
                    rows_out.append(_row(rep, kind, y_test, p, samples[rep, kind]))
            if oracle is not None and probability_column(label) in oracle.columns:
                o = oracle[probability_column(label)].to_numpy()
                has = test_rows & ~np.isnan(o)
                if one_class_reason(y, has, "test") is None:
                    rows_out.append(_row(ORACLE, None, y[has], o[has], bootstrap_aucs(y[has], o[has], n_boot, seed)))
            results[label] = {
                "n_fit": int(fit_rows.sum()),
                "n_test": int(test_rows.sum()),
                "positives": int(y_test.sum()),
                "base_rate": float(y_test.mean()),
                "rows": rows_out,
                "deltas": _deltas(rows_out, samples, list(embeddings), kinds),
            }
    if not results:
        raise ValueError(f"every label was skipped: {skipped}")
    return {
        "cutoff": None if cutoff is None else str(pd.Timestamp(cutoff)),
        "customers": coverage,
        "split": {"seed": int(split_seed), "fractions": [float(f) for f in split_fractions],
                  "counts": {s: int((splits == i).sum()) for i, s in enumerate(SPLITS)}},  # fmt: skip
        "labels": {**label_report, "skipped": skipped},
        "representations": list(X),
        "aggregate_columns": int(A.shape[1]),
        "probes": {"kinds": kinds, "n_boot": int(n_boot), "seed": int(seed), "logistic": dict(logistic or {}),
                   "hgb": dict(hgb or {}), "threads": threads},  # fmt: skip
        "targets": {"embedding_tolerance": EMBEDDING_TOLERANCE, "hybrid_gain": HYBRID_GAIN},
        "results": results,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _row(rep: str, kind: str | None, y: np.ndarray, p: np.ndarray, samples: np.ndarray) -> dict:
    m = classification_metrics(y, p)
    lo, hi = percentile_interval(samples)
    return {"representation": rep, "probe": kind, "roc_auc": m["roc_auc"], "roc_auc_ci": [lo, hi], "pr_auc": m["pr_auc"],
            "top_decile_lift": m["top_decile_lift"], "brier": m["brier"], "n_test": m["n"], "positives": m["positives"]}  # fmt: skip


def _deltas(rows: list[dict], samples: dict, names: list[str], kinds: list[str]) -> list[dict]:
    """Per embeddings set and probe: ROC-AUC minus the aggregates' (paired bootstrap interval)."""
    auc = {(r["representation"], r["probe"]): r["roc_auc"] for r in rows}
    out = []
    for name in names:
        for kind in kinds:
            base = (AGGREGATES, kind)
            entry = {"embeddings": name, "probe": kind}
            for key, rep, target in (("embeddings", name, -EMBEDDING_TOLERANCE), ("hybrid", f"{name}+{AGGREGATES}", HYBRID_GAIN)):
                delta = auc[rep, kind] - auc[base]
                lo, hi = percentile_interval(samples[rep, kind] - samples[base])
                entry[f"{key}_minus_aggregates"] = {"delta": delta, "ci": [lo, hi], "target": _target_status(delta, lo, target)}
            out.append(entry)
    return out


# --- report ----------------------------------------------------------------------------------


def _num(x, digits: int = 3, sign: bool = False) -> str:
    return "—" if x is None else f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _interval(value, ci, sign: bool = False) -> str:
    return f"{_num(value, sign=sign)} [{_num(ci[0], sign=sign)}, {_num(ci[1], sign=sign)}]"


def render_markdown(result: Mapping[str, Any], title: str = "Evaluation") -> str:
    """One table per label (every representation x probe, then the oracle) and its deltas."""
    split = result["split"]
    lines = [
        f"# {title}", "",
        f"Probes fitted on train + validation customers, scored on test customers (split seed {split['seed']}, "
        f"counts {split['counts']}); {'history before ' + result['cutoff'] if result['cutoff'] else 'all history'}. ROC-AUC with a 95% "
        f"percentile bootstrap interval ({result['probes']['n_boot']} resamples); PR-AUC is average precision; "
        "lift@10% is the positive rate in the top decile of scores over the base rate.",
    ]  # fmt: skip
    for label, r in result["results"].items():
        lines += ["", f"## {label}", "",
                  f"test customers {r['n_test']:,}, positives {r['positives']:,} ({r['base_rate']:.1%})", "",
                  "| representation | probe | ROC-AUC [95% CI] | PR-AUC | lift@10% |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
        for row in r["rows"]:
            lines.append(f"| {row['representation']} | {row['probe'] or '—'} | {_interval(row['roc_auc'], row['roc_auc_ci'])} "
                         f"| {_num(row['pr_auc'])} | {_num(row['top_decile_lift'], 2)} |")  # fmt: skip
        if not r["deltas"]:
            continue
        lines += ["", f"ROC-AUC minus aggregates' (same probe, paired bootstrap 95% CI; targets: embeddings ≥ "
                      f"{-EMBEDDING_TOLERANCE:+.3f}, embeddings+aggregates ≥ {HYBRID_GAIN:+.3f}):", "",
                  "| embeddings | probe | embeddings − aggregates | embeddings+aggregates − aggregates |",
                  "| --- | --- | --- | --- |"]  # fmt: skip
        for d in r["deltas"]:
            cells = [f"{_interval(v['delta'], v['ci'], sign=True)} {v['target']}"
                     for v in (d["embeddings_minus_aggregates"], d["hybrid_minus_aggregates"])]  # fmt: skip
            lines.append(f"| {d['embeddings']} | {d['probe']} | {cells[0]} | {cells[1]} |")
    skipped = result["labels"]["skipped"]
    if skipped:
        lines += ["", "## Skipped labels", ""] + [f"- `{label}`: {why}" for label, why in skipped.items()]
    return "\n".join(lines) + "\n"


# --- the evaluate job ------------------------------------------------------------------------


def _target_status(delta: float, low: float, target: float) -> str:
    """A target is met only when the whole interval clears it; a point estimate alone is noise."""
    if low >= target:
        return "met"
    return "within noise of the target" if delta >= target else "missed"


def objective_configs(names: Sequence[str]) -> dict[str, DictConfig]:
    """The running Hydra app's config composed once per objective: the user's overrides + objective=<name>.

    Composing (rather than editing one config) keeps each objective's own defaults, e.g.
    objective=contrastive_future inheriting from reconstruction. All are composed before any training, so an
    unknown objective fails at once.
    """
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    task = [o for o in hydra_cfg.overrides.task if o.split("=")[0].lstrip("+~") != "objective"]
    return {name: compose(config_name=hydra_cfg.job.config_name, overrides=[*task, f"objective={name}"]) for name in names}


def train_and_embed(cfg: DictConfig, configs: Mapping[str, DictConfig]) -> dict[str, Path]:
    """One model per objective on the same prepared data; returns name -> embeddings path.

    Each objective's train_metrics.json (naming its model in the model store) and
    embeddings.parquet live under `<out_dir>/<objective>/`; stages whose outputs are up to date
    are skipped.
    """
    from eventseg.data.prepare import PreparedData, prepare_from_config
    from eventseg.embedding.embed import embed_from_config
    from eventseg.pipeline import data_settings
    from eventseg.run.stages import Stage, StageRunner
    from eventseg.training.store import run_checkpoint
    from eventseg.training.train import model_identity, train

    out = Path(cfg.out_dir)
    runner = StageRunner(out, force=bool(cfg.get("force", False)))
    data_files = source_files(cfg.data)
    prepared = RunLayout(out).prepared
    runner.run(Stage("prepare", lambda: prepare_from_config(cfg.data, out), config=data_settings(cfg.data),
                     inputs=data_files, outputs=[prepared]))
    paths = {}
    for name, obj_cfg in configs.items():
        obj_cfg = copy.deepcopy(obj_cfg)
        obj_cfg.out_dir = str(out / name)  # the checkpoints of its training in progress follow
        runner.run(Stage(f"train_{name}", lambda c=obj_cfg: train(c, PreparedData.load(prepared), prepared_dir=prepared),
                         config=lambda c=obj_cfg: model_identity(c, prepared),
                         outputs=[RunLayout(out / name).train_metrics]))
        checkpoint = run_checkpoint(out / name)
        embed_cfg = OmegaConf.create({"ckpt": str(checkpoint), "out_dir": str(out / name), "data": plain(cfg.data), **plain(cfg.embed)})
        paths[name] = RunLayout(out / name).embeddings
        runner.run(Stage(f"embed_{name}", lambda c=embed_cfg: write_json(embed_from_config(c), RunLayout(out / name).embed_metrics),
                         config={"data": data_settings(cfg.data), "embed": plain(cfg.embed)},
                         inputs=[checkpoint, *data_files], outputs=[paths[name]]))
    return paths


def _check_cutoff(name: str, path: Path, cutoff) -> None:
    """Embeddings that saw events at or after the cutoff would see the labels' horizon: refuse them."""
    side = sidecar_path(path)
    if cutoff is None or not side.exists():
        if cutoff is not None:
            warnings.warn(f"embeddings '{name}' ({path}) have no sidecar: cannot check they stop before data.cutoff={cutoff}")
        return
    made = json.loads(side.read_text()).get("cutoff")
    if made is None or pd.Timestamp(made) > pd.Timestamp(cutoff):
        raise ValueError(f"embeddings '{name}' ({path}) were made from history up to {made or 'the last event'}, "
                         f"after data.cutoff={cutoff}: they would see the labels' horizon. Re-embed with that cutoff.")  # fmt: skip


def load_labels(cfg: DictConfig, events: pd.DataFrame, schema: EventSchema) -> list[pd.DataFrame]:
    """labels.path, else labels built from the events after data.cutoff; plus the demographics."""
    labels_cfg, cutoff = cfg.labels, cfg.data.get("cutoff")
    tables = []
    if labels_cfg.get("path"):
        tables.append(read_table(labels_cfg.path, "labels"))
    elif cutoff is not None:
        tables.append(build_labels(events, schema, cutoff, int(labels_cfg.horizon_days), amount_col=schema.amount_col))
    demographics = labels_cfg.get("demographics", "auto")
    if demographics == "auto":
        demographics = cfg.data.get("source") == "completejourney"
    if demographics:
        if cfg.data.get("source") != "completejourney":
            raise ValueError(f"labels.demographics needs data=completejourney, not data.source={cfg.data.get('source')!r}")
        tables.append(completejourney_demographic_labels(cfg.data.raw_dir))
    if not tables:
        raise ValueError("no labels: set labels.path, or data.cutoff to build them from the events after it")
    return tables


def evaluate_from_config(cfg: DictConfig, configs: Mapping[str, DictConfig] | None = None) -> dict:
    """The evaluate job: train and embed per objective, probe every representation, write the tables.

    configs: objective name -> its composed config (default: composed from the running Hydra
    app with `objective_configs`). Writes `<out_dir>/evaluation.md` and `evaluation.json`;
    returns the JSON-ready result with the paths.
    """
    from eventseg.embedding.embed import load_embeddings

    out = Path(cfg.out_dir)
    names = [str(n) for n in cfg.get("objectives") or []]
    given = {str(k): Path(v) for k, v in (cfg.get("embeddings") or {}).items()}
    clash = sorted(set(names) & set(given))
    if clash:
        raise ValueError(f"{clash} named both as an objective and in embeddings: rename the embeddings")
    for name, path in given.items():
        if not path.exists():
            raise FileNotFoundError(f"embeddings '{name}': file not found: {path}")
    schema = EventSchema.from_config(cfg.data)
    events = read_events(resolve_source(cfg.data), schema)
    labels = load_labels(cfg, events, schema)  # before any training: a missing label fails fast
    trained = {}
    if names:
        configs = configs if configs is not None else objective_configs(names)
        trained = train_and_embed(cfg, {n: configs[n] for n in names})
    paths = {**trained, **given}
    cutoff = cfg.data.get("cutoff")
    for name, path in paths.items():
        _check_cutoff(name, path, cutoff)
    probes = cfg.probes
    truth = read_table(cfg.labels.truth_path, "truth") if cfg.labels.get("truth_path") else None
    result = evaluate_probes(
        events, schema, {name: load_embeddings(path) for name, path in paths.items()}, labels, truth=truth, cutoff=cutoff,
        split_seed=int(cfg.data.split.seed), split_fractions=tuple(cfg.data.split.fractions), kinds=list(probes.kinds),
        n_boot=int(probes.n_boot), seed=int(probes.seed), logistic=plain(probes.get("logistic")), hgb=plain(probes.get("hgb")),
        top_k_categories=int(probes.get("top_k_categories", 10)), threads=probes.get("threads"),
    )  # fmt: skip
    result["embeddings"] = {name: str(path) for name, path in paths.items()}
    result["config"] = plain(cfg)
    md, js = out / "evaluation.md", out / "evaluation.json"
    with atomic_path(md) as tmp:
        tmp.write_text(render_markdown(result, f"Evaluation · {cfg.data.name}"), encoding="utf-8")
    write_json(result, js)
    return {**result, "outputs": {"markdown": str(md), "json": str(js)}}
