"""The end-to-end job: each stage is a pure function; this module only chains them and skips
the stages whose outputs are already up to date (see `eventseg.stages`).

prepare → train → embed → [represent] → cluster → propensity (when labels exist) → segments → report

With representation=hybrid, `represent` concatenates the embeddings with standardised
aggregates, and clustering, heads and the report's map all use that matrix instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from eventseg.artifacts import sidecar_path, write_json, write_parquet, write_sidecar
from eventseg.cluster import cluster_from_config
from eventseg.data.io import read_events, read_table
from eventseg.data.schema import EventSchema
from eventseg.data.sources import resolve_source, source_files
from eventseg.data.split import TEST, TRAIN, assign_splits
from eventseg.embed import embed_from_config, load_embeddings, write_embeddings
from eventseg.features import aggregate_features
from eventseg.hybrid import HYBRID_FILE, REPRESENTATIONS, HybridFeatures
from eventseg.prepare import PreparedData, prepare_from_config
from eventseg.propensity import evaluate_propensity
from eventseg.report import build_report
from eventseg.segments import attach_names, build_customers, profile_segments
from eventseg.stages import StageRunner
from eventseg.train import train

BASELINES = ("rfm_logistic", "aggregate_hgb")


def _plain(value):
    """Config subtree as plain Python, so it hashes and serialises."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _events(cfg: DictConfig) -> pd.DataFrame:
    return read_events(resolve_source(cfg.data), EventSchema.from_config(cfg.data))


def run_pipeline(cfg: DictConfig) -> dict[str, Path]:
    """Run every stage that is not up to date; returns the paths of the outputs."""
    out = Path(cfg.out_dir)
    runner = StageRunner(out, force=bool(cfg.get("force", False)))
    data_files = source_files(cfg.data)
    paths = {name: out / name for name in (
        "prepared", "train_metrics.json", "embeddings.parquet", "clusters.parquet", "cluster_metrics.json",
        "propensity_metrics.json", "propensity_scores.parquet", "customers.parquet", "segments.parquet", "report.html",
    )}  # fmt: skip

    runner.run("prepare", lambda: prepare_from_config(cfg.data, out),
               config=_plain(cfg.data), inputs=data_files, outputs=[paths["prepared"]])

    train_config = {k: _plain(cfg[k]) for k in ("model", "objective", "trainer", "loader", "callbacks", "seed", "run_name", "compile")}
    runner.run("train", lambda: train(cfg, PreparedData.load(paths["prepared"])),
               config=train_config, inputs=[paths["prepared"]], outputs=[paths["train_metrics.json"]])
    checkpoint = Path(json.loads(paths["train_metrics.json"].read_text())["best_checkpoint"])

    embed_cfg = OmegaConf.create({"ckpt": str(checkpoint), "out_dir": str(out), "data": _plain(cfg.data), **_plain(cfg.embed)})
    runner.run("embed", lambda: write_json(embed_from_config(embed_cfg), out / "embed_metrics.json"),
               config=_plain(embed_cfg), inputs=[checkpoint, *data_files], outputs=[paths["embeddings.parquet"]])

    paths["features"] = representation_step(cfg, runner, paths, data_files)

    cluster_cfg = {"embeddings": str(paths["features"]), "out_dir": str(out), "cluster": _plain(cfg.cluster)}
    runner.run("cluster", lambda: cluster_from_config(cluster_cfg), config=cluster_cfg,
               inputs=[paths["features"]], outputs=[paths["clusters.parquet"], paths["cluster_metrics.json"]])

    labels_cfg = _plain(cfg.labels)
    has_labels = bool(labels_cfg.get("path") or cfg.data.get("cutoff"))
    label_files = [Path(p) for p in (labels_cfg.get("path"), labels_cfg.get("truth_path")) if p]
    if has_labels:
        runner.run("propensity", lambda: propensity_stage(cfg, paths), config={**labels_cfg, "heads": _plain(cfg.heads)},
                   inputs=[paths["features"], *label_files, *data_files],
                   outputs=[paths["propensity_metrics.json"], paths["propensity_scores.parquet"]])
    else:
        print("[propensity] no labels (labels.path or data.cutoff): segments get no propensity scores")
    scored = [paths["propensity_scores.parquet"]] if has_labels else []
    runner.run("segments", lambda: segments_stage(cfg, paths, has_labels), config={"labels": has_labels},
               inputs=[paths["clusters.parquet"], *scored, *data_files],
               outputs=[paths["customers.parquet"], paths["segments.parquet"]])
    runner.run("report", lambda: report_stage(cfg, paths, has_labels),
               config={"labels": has_labels, "representation": str(cfg.get("representation", "embedding"))},
               inputs=[paths["features"], paths["customers.parquet"], paths["segments.parquet"], paths["cluster_metrics.json"], *scored],
               outputs=[paths["report.html"]])
    return {"checkpoint": checkpoint, **{k: v for k, v in paths.items() if v.exists()}}


def representation_step(cfg: DictConfig, runner: StageRunner, paths: dict, data_files: list) -> Path:
    """The matrix clustering and heads see: the embeddings, or (hybrid) the embeddings with
    standardised aggregates, fitted on the training split and saved for scoring."""
    out = Path(cfg.out_dir)
    kind = str(cfg.get("representation", "embedding"))
    if kind not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {list(REPRESENTATIONS)}, got {kind!r}")
    target, fitted = out / "representation.parquet", out / HYBRID_FILE
    if kind == "embedding":
        for stale in (fitted, target, sidecar_path(target)):  # scoring must not pick these up
            stale.unlink(missing_ok=True)
        return paths["embeddings.parquet"]
    config = {"hybrid": _plain(cfg.hybrid), "cutoff": _plain(cfg.data.get("cutoff")), "split": _plain(cfg.data.split)}
    runner.run("represent", lambda: represent_stage(cfg, paths["embeddings.parquet"], target, fitted), config=config,
               inputs=[paths["embeddings.parquet"], *data_files], outputs=[target, fitted])
    return target


def represent_stage(cfg: DictConfig, embeddings: Path, target: Path, fitted: Path) -> None:
    ids, matrix = load_embeddings(embeddings)
    split = cfg.data.split
    train_ids = ids[assign_splits(ids, int(split.seed), tuple(split.fractions)) == TRAIN]
    schema, cutoff = EventSchema.from_config(cfg.data), cfg.data.get("cutoff")
    events = _events(cfg)
    hybrid = HybridFeatures(schema, int(cfg.hybrid.top_k_categories)).fit(ids, matrix, events, cutoff, train_ids)
    features = hybrid.transform(ids, matrix, events, cutoff)
    hybrid.save(fitted)
    write_embeddings(ids, features, target, rows_per_part=None, representation="hybrid",
                     embedding_dim=int(matrix.shape[1]), aggregate_columns=int(features.shape[1] - matrix.shape[1]))


def propensity_stage(cfg: DictConfig, paths: dict) -> None:
    """Heads on the representation plus both baselines; scores for every customer."""
    labels_cfg = cfg.labels
    ids, matrix = load_embeddings(paths["features"])
    labels = read_table(labels_cfg.path, "labels") if labels_cfg.get("path") else None
    result = evaluate_propensity(
        ids, matrix, labels, _events(cfg),
        EventSchema.from_config(cfg.data), _plain(cfg.heads), seed=int(cfg.data.split.seed),
        truth=read_table(labels_cfg.truth_path, "truth") if labels_cfg.get("truth_path") else None,
        cutoff=cfg.data.get("cutoff"), horizon_days=int(labels_cfg.horizon_days),
        split_fractions=tuple(cfg.data.split.fractions),
    )
    id_col = cfg.data.id_col
    scores = result["scores"].rename(columns={id_col: "customer_id"})
    for name in BASELINES:  # kept beside the heads' scores for the report's gain and calibration charts
        base = result["baseline_scores"][name]
        for col in [c for c in base.columns if c.startswith(("p_", "pred_"))]:
            scores[f"{name}__{col}"] = base[col].to_numpy()
    if labels is not None:
        labels = labels.rename(columns={id_col: "customer_id"})
        binary = result["metrics"]["labels"]["binary"]
        aligned = labels.drop_duplicates("customer_id").set_index("customer_id")[binary]
        aligned.index = aligned.index.astype(str)
        for label in binary:
            scores[f"y__{label}"] = aligned[label].reindex(scores["customer_id"].astype(str)).to_numpy()
    result["heads"].save(paths["propensity_metrics.json"].parent / "heads")
    write_parquet(scores, paths["propensity_scores.parquet"])
    write_sidecar(paths["propensity_scores.parquet"], rows=len(scores), heads=_plain(cfg.heads))
    write_json(result["metrics"], paths["propensity_metrics.json"])


def segments_stage(cfg: DictConfig, paths: dict, has_labels: bool) -> None:
    clusters = pd.read_parquet(paths["clusters.parquet"])
    scores = None
    if has_labels:
        all_scores = pd.read_parquet(paths["propensity_scores.parquet"])
        scores = all_scores[["customer_id"] + [c for c in all_scores.columns if c.startswith(("p_", "pred_"))]]
    schema = EventSchema.from_config(cfg.data)
    features = aggregate_features(_events(cfg), schema, as_of=cfg.data.get("cutoff"))
    customers = build_customers(clusters, scores)
    monetary = f"{schema.numeric[0]}_sum" if schema.numeric else None
    segments = profile_segments(customers, features, monetary)
    customers = attach_names(customers, segments)
    write_parquet(customers, paths["customers.parquet"])
    write_sidecar(paths["customers.parquet"], rows=len(customers))
    write_parquet(segments, paths["segments.parquet"])
    write_sidecar(paths["segments.parquet"], rows=len(segments))
    segments.to_csv(paths["segments.parquet"].with_suffix(".csv"), index=False)


def report_stage(cfg: DictConfig, paths: dict, has_labels: bool) -> None:
    ids, matrix = load_embeddings(paths["features"])
    customers = pd.read_parquet(paths["customers.parquet"])
    segments = pd.read_parquet(paths["segments.parquet"])
    propensity = None
    if has_labels:
        scores = pd.read_parquet(paths["propensity_scores.parquet"])
        metrics = json.loads(paths["propensity_metrics.json"].read_text())
        labels = [lab for lab in metrics["labels"]["binary"] if f"y__{lab}" in scores.columns]
        test = scores[scores["split"] == "test"]
        predictions = {}
        for lab in labels:
            known = test[f"y__{lab}"].notna()
            predictions[lab] = {"y": test.loc[known, f"y__{lab}"].to_numpy(),
                                "scores": {"heads": test.loc[known, f"p_{lab}"].to_numpy(),
                                           **{b: test.loc[known, f"{b}__p_{lab}"].to_numpy() for b in BASELINES}}}
        rows = [{"label": lab, "model": model, **{k: v for k, v in m.items() if isinstance(v, (int, float)) or v is None}}
                for lab, per_model in metrics["test"].items() for model, m in per_model.items()]
        propensity = {"labels": labels, "metrics": pd.DataFrame(rows), "predictions": predictions}
    build_report(paths["report.html"], ids=np.asarray(ids), matrix=matrix, customers=customers, segments=segments,
                 cluster_metrics=json.loads(paths["cluster_metrics.json"].read_text()), propensity=propensity,
                 title=f"eventseg · {cfg.data.name}", representation=str(cfg.get("representation", "embedding")))
