"""The end-to-end job: each stage is a pure function; this module only declares the stages
(config, inputs, outputs) and chains them, skipping those already up to date (`eventseg.run.stages`).

prepare → aggregates → train → embed → [represent] → propensity (when labels exist) → cluster → segments
→ metrics → report

The run folder is locked for the whole job, checked before any work, and finished with a
manifest (`run.json`) that readers verify (`eventseg.run.manifest`). Events are read and validated
once per job, and only when a stage needs them.
"""

from __future__ import annotations

import shutil
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from eventseg.data.io import read_events, read_table
from eventseg.data.labels import build_labels, check_purchase_filter
from eventseg.data.prepare import PreparedData, prepare_from_config
from eventseg.data.schema import OUTPUT_ID, EventSchema, id_key
from eventseg.data.sources import resolve_source, source_files
from eventseg.data.split import TRAIN
from eventseg.data.store import STORE_FORMAT
from eventseg.data.validate import validate_events
from eventseg.embedding.embed import embed_from_config, load_embeddings, write_embeddings
from eventseg.features.aggregates import AggregateFeatureBuilder, read_aggregates, rfm_from_aggregates, write_aggregates
from eventseg.features.representation import REPRESENTATIONS, HybridFeatures
from eventseg.propensity import evaluate_propensity, verdict_lines
from eventseg.propensity.finetune import FineTunedEncoder
from eventseg.propensity.persistence import MODEL_FORMAT
from eventseg.report import ReportInputs, build_report, report_title
from eventseg.report.summary import run_summary
from eventseg.run.artifacts import atomic_path, sidecar_path, write_json, write_parquet, write_sidecar
from eventseg.run.columns import observed_column, observed_labels, score_names
from eventseg.run.config import check_cutoff, check_moved_settings, check_training_config, check_writable, plain
from eventseg.run.errors import ConfigError
from eventseg.run.layout import RunLayout
from eventseg.run.manifest import MANIFEST, RunLock, mark_running, write_manifest
from eventseg.run.stages import Stage, StageRunner
from eventseg.segmentation.clusterer import SegmentClusterer, cluster_from_config
from eventseg.segmentation.insights import segment_insights
from eventseg.segmentation.predictiveness import segment_predictiveness
from eventseg.segmentation.profiles import attach_names, build_customers, profile_segments
from eventseg.training.checkpoint import load_checkpoint
from eventseg.training.store import ModelStore, run_checkpoint
from eventseg.training.train import model_identity, train

# where the data lives is not what the data is: the inputs' content stands for these in fingerprints
_LOCATION_KEYS = ("path", "raw_dir", "labels_path", "truth_path", "name")
# blocks that left the heads group, which holds only the heads candidate's parameters
MOVED_SETTINGS = {"heads.selection": "propensity.selection", "heads.finetune": "propensity.finetune"}


def data_settings(data_cfg) -> dict:
    """The data config minus file locations, for fingerprints (a moved or copied input is the same input)."""
    return {k: v for k, v in plain(data_cfg).items() if k not in _LOCATION_KEYS}


def check_pipeline_config(cfg: DictConfig) -> None:
    """Everything that can be checked before reading a single event."""
    check_moved_settings([f"heads.{key}" for key in cfg.get("heads") or {}], MOVED_SETTINGS)
    check_writable(cfg.out_dir)
    check_training_config(cfg)
    check_cutoff(cfg.data.get("cutoff"))
    if str((cfg.get("cluster") or {}).get("reducer", "pca")) == "umap":
        raise ConfigError("cluster.reducer=umap cannot be saved without pickle, so score.py could not place new "
                          "customers: use cluster.reducer=pca (default) or none in the pipeline")
    SegmentClusterer.from_config(cfg.get("cluster"))  # a bad cluster setting fails before training
    kind = str(cfg.get("representation", "embedding"))
    if kind not in REPRESENTATIONS:
        raise ConfigError(f"representation={kind!r} is not one of {list(REPRESENTATIONS)}")
    resolve_path = cfg.data.get("source", "file") == "file"
    if resolve_path and not cfg.data.get("path"):
        raise ConfigError("data.path is not set: point it at a Parquet file/directory or a CSV file of events")
    generated = cfg.data.get("source") == "synthetic"  # the generator writes labels and truth with the events
    for key in ("path", "truth_path"):
        path = cfg.labels.get(key)
        if path and not generated and not Path(path).exists():
            raise ConfigError(f"labels.{key}={path} does not exist: point it at a Parquet/CSV table of customer_id + outcomes")


class PipelineRun:
    """One job over one out_dir: the paths, the lazily read events, and each stage's declaration."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.out = Path(cfg.out_dir)
        self.schema = EventSchema.from_config(cfg.data)
        self.labels_cfg = plain(cfg.labels)
        self.has_labels = bool(self.labels_cfg.get("path") or cfg.data.get("cutoff"))
        self.representation = str(cfg.get("representation", "embedding"))
        self.layout = RunLayout(self.out)
        propensity = plain(cfg.get("propensity") or {})  # beside the heads: the choice per label, the fine-tuned encoder
        self.selection_cfg, self.finetune_cfg = propensity.get("selection") or {}, propensity.get("finetune") or {}
        self.finetunes = self.has_labels and bool(self.finetune_cfg.get("enabled"))  # fine-tune the encoder
        # what the heads and the clusterer read: the hybrid, or the embedding alone
        self.features = self.layout.representation if self.representation == "hybrid" else self.layout.embeddings

    @cached_property
    def data_files(self) -> list[Path]:
        return source_files(self.cfg.data)

    @cached_property
    def validated(self):
        """(events, validation report): read and validated once for every stage that needs them."""
        return validate_events(read_events(resolve_source(self.cfg.data), self.schema), self.schema,
                               str(self.cfg.data.get("on_invalid", "fail")))

    @property
    def events(self) -> pd.DataFrame:
        return self.validated[0]

    @cached_property
    def labels_table(self) -> pd.DataFrame | None:
        """The labels file, read once (checked after prepare, used by the propensity stage)."""
        path = self.labels_cfg.get("path")
        return read_table(path, "labels") if path else None

    @cached_property
    def prepared(self) -> PreparedData:
        return PreparedData.load(self.layout.prepared)

    @property
    def checkpoint(self) -> Path:
        return run_checkpoint(self.out)

    def label_files(self) -> list[Path]:
        return [Path(p) for p in (self.labels_cfg.get("path"), self.labels_cfg.get("truth_path")) if p]

    def split_codes(self, ids: np.ndarray) -> np.ndarray:
        """Split code of each id, from the split prepare saved (never recomputed by hand)."""
        store = self.prepared.store
        split = pd.Series(self.prepared.splits, index=pd.Index(np.asarray(store.customer_ids)))
        codes = split.reindex(pd.Index(ids))
        if codes.isna().any():
            raise ValueError(f"{int(codes.isna().sum())} customer(s) are not in the prepared data; re-run with force=true")
        return codes.to_numpy().astype(np.int8)

    def train_ids(self, ids: np.ndarray) -> np.ndarray:
        return ids[self.split_codes(ids) == TRAIN]

    # ---- stage declarations: what each reads, writes and depends on, in one place ----------

    def stages(self) -> list[Stage]:
        p, cfg = self.layout, self.cfg
        scored = [p.propensity_scores] if self.has_labels else []
        stages = [
            Stage("prepare", lambda: prepare_from_config(cfg.data, self.out, source=self.events, validation=self.validated[1]),
                  config={"data": data_settings(cfg.data), "store_format": STORE_FORMAT},
                  inputs=self.data_files, outputs=[p.prepared]),
            Stage("aggregates", self.aggregates_stage,
                  config={"aggregates": plain(cfg.aggregates), "data": data_settings(cfg.data)},
                  inputs=[p.prepared_splits, *self.data_files],
                  outputs=[p.aggregates, p.aggregates_builder]),
            Stage("train", self.train_stage, config=lambda: self.training_identity(),
                  inputs=[], outputs=[p.train_metrics]),
            Stage("embed", lambda: write_json(embed_from_config(self.embed_config(), source=self.events),
                                              p.embed_metrics),
                  config={"data": data_settings(cfg.data), "embed": plain(cfg.embed)},
                  inputs=lambda: [self.checkpoint, *self.data_files], outputs=[p.embeddings]),
        ]
        if self.representation == "hybrid":
            stages.append(Stage("represent", self.represent_stage, config={},
                                inputs=[p.embeddings, p.prepared_splits, p.aggregates,
                                        p.aggregates_builder],
                                outputs=[self.features, self.layout.hybrid]))
        if self.has_labels:
            labels = {k: v for k, v in self.labels_cfg.items() if k not in ("path", "truth_path")}
            check_purchase_filter(labels.get("purchase_filter"), self.schema)  # a bad filter fails before any work
            stages.append(Stage("propensity", self.propensity_stage,
                                config={"labels": labels, "heads": plain(cfg.heads), "selection": self.selection_cfg,
                                        "finetune": self.finetune_cfg, "data": data_settings(cfg.data),
                                        "format": MODEL_FORMAT},
                                inputs=lambda: [self.features, p.aggregates, p.prepared_splits,
                                                *self.label_files(), *self.data_files,
                                                *([self.checkpoint] if self.finetunes else [])],
                                outputs=[p.propensity_metrics, p.propensity_scores,
                                         *([p.finetune] if self.finetunes else [])]))
        # after the heads: with labels, broad segments are formed in the space of their scores
        stages.append(Stage("cluster", lambda: cluster_from_config(self.cluster_config()), config=plain(cfg.cluster),
                            inputs=[self.features, *scored], outputs=[p.clusters, p.cluster_metrics]))
        stages.append(Stage("segments", self.segments_stage,
                            config={"labels": self.has_labels, "data": data_settings(cfg.data)},
                            inputs=[p.clusters, *scored, p.aggregates],
                            outputs=[p.customers, p.segments, p.segments_csv,
                                     *([p.segment_metrics] if self.has_labels else [])]))
        stages.append(Stage("metrics", self.metrics_stage,
                            config={"labels": self.has_labels, "representation": self.representation},
                            inputs=[p.train_metrics, p.cluster_metrics, p.prepare_report,
                                    *([p.propensity_metrics, p.segment_metrics] if self.has_labels else [])],
                            outputs=[p.metrics]))
        stages.append(Stage("report", self.report_stage,
                            config={"labels": self.has_labels, "representation": self.representation},
                            inputs=[self.features, p.customers, p.segments, p.cluster_metrics,
                                    p.metrics, *scored],
                            outputs=[p.report]))
        return stages

    def training_identity(self) -> dict:
        return model_identity(self.cfg, self.layout.prepared)

    def embed_config(self) -> DictConfig:
        return OmegaConf.create({"ckpt": str(self.checkpoint), "out_dir": str(self.out), "data": plain(self.cfg.data),
                                 **plain(self.cfg.embed)})

    def cluster_config(self) -> dict:
        outcomes = str(self.layout.propensity_scores) if self.has_labels else None
        return {"embeddings": str(self.features), "out_dir": str(self.out), "outcomes": outcomes,
                "cluster": plain(self.cfg.cluster)}

    # ---- stages -------------------------------------------------------------------------------

    def train_stage(self) -> None:
        """Use the stored model trained on the same prepared data with the same settings (by any
        run), else train (always with force=true); labels that cannot work fail first, not after training."""
        check_labels(self)
        store = ModelStore(self.cfg.paths.checkpoints_dir)
        if self.cfg.get("force", False) or not store.adopt(self.training_identity(), self.out):
            train(self.cfg, self.prepared)

    def aggregates_stage(self) -> None:
        """The run's one aggregate table: category columns chosen on training customers, every
        customer described from events strictly before the cutoff."""
        store = self.prepared.store
        ids = np.asarray(store.customer_ids)
        cutoff = self.cfg.data.get("cutoff")
        train_events = self.events.loc[pd.Index(self.events[self.schema.id_col]).isin(self.train_ids(ids))]
        builder = AggregateFeatureBuilder(self.schema, int(self.cfg.aggregates.top_k_categories)).fit(train_events, cutoff)
        write_aggregates(builder, builder.transform(self.events, cutoff), self.out)

    @cached_property
    def aggregates(self) -> tuple[AggregateFeatureBuilder, pd.DataFrame]:
        return read_aggregates(self.out, self.schema)

    def represent_stage(self) -> None:
        """Embeddings ++ standardised aggregates, fitted on the training split and saved for scoring."""
        ids, matrix = load_embeddings(self.layout.embeddings)
        builder, table = self.aggregates
        hybrid = HybridFeatures.from_builder(builder).fit(ids, matrix, fit_ids=self.train_ids(np.asarray(ids)), aggregates=table)
        features = hybrid.transform(ids, matrix, aggregates=table)
        hybrid.save(self.layout.hybrid)
        write_embeddings(ids, features, self.features, rows_per_part=None, representation="hybrid",
                         embedding_dim=int(matrix.shape[1]), aggregate_columns=int(features.shape[1] - matrix.shape[1]))

    def propensity_stage(self) -> None:
        """Every candidate per label (representation heads, baselines, a stack), chosen on validation;
        the chosen one's scores for every customer, every candidate's beside them for the report."""
        p, labels_cfg = self.layout, self.cfg.labels
        ids, matrix = load_embeddings(self.features)
        labels = self.labels_table
        tuner = self.finetuner(ids, matrix) if self.finetunes else None
        result = evaluate_propensity(
            ids, matrix, labels, self.events, self.schema, plain(self.cfg.heads), seed=int(self.cfg.data.split.seed),
            selection_cfg=self.selection_cfg,
            truth=read_table(labels_cfg.truth_path, "truth") if labels_cfg.get("truth_path") else None,
            cutoff=self.cfg.data.get("cutoff"), horizon_days=int(labels_cfg.horizon_days),
            purchase_filter=self.labels_cfg.get("purchase_filter"),
            aggregates=self.aggregates[1], splits=self.split_codes(np.asarray(ids)),
            finetune=None if tuner is None else tuner[0],
        )
        if tuner is not None and hasattr(tuner[1], "network_"):  # not fitted when no label is binary
            tuner[1].save(p.finetune)
            result["metrics"]["finetune"] = {"params": tuner[1].get_params(), **tuner[1].fit_info_}
        observed = result["labels"].drop(columns=[OUTPUT_ID]).rename(columns=observed_column)  # for the report's test charts
        scores = pd.concat([result["scores"], result["candidate_scores"].drop(columns=[OUTPUT_ID]), observed], axis=1)
        result["model"].save(self.layout.propensity_model)
        write_parquet(scores, p.propensity_scores)
        write_sidecar(p.propensity_scores, rows=len(scores), heads=plain(self.cfg.heads), selection=self.selection_cfg,
                      finetune=self.finetune_cfg, published=score_names(scores.columns))
        write_json(result["metrics"], p.propensity_metrics)
        for line in verdict_lines(result["metrics"]):
            print(f"[propensity] {line}")

    def finetuner(self, ids: np.ndarray, matrix: np.ndarray):
        """(finetune callable for evaluate_propensity, the FineTunedEncoder it fits): the run's
        encoder fine-tuned on the training customers' binary labels, its head also reading the
        representation's other columns (the hybrid's aggregates)."""
        store, trained = self.prepared.store, load_checkpoint(self.checkpoint).model
        if not np.array_equal(np.asarray(ids), np.asarray(store.customer_ids)):
            raise RuntimeError("the representation's customers are not in the prepared store's order")
        side = matrix[:, int(trained.bottleneck.out_features):]
        tuner = FineTunedEncoder.from_config(self.finetune_cfg, seed=int(self.cfg.heads.get("seed", 0)))

        def finetune(labels: pd.DataFrame, train_rows: np.ndarray) -> np.ndarray:
            rows = np.flatnonzero(train_rows)
            tuner.fit(trained, store, rows, labels.to_numpy(np.float32)[rows], side=side, labels=labels.columns)
            print(f"[propensity] fine-tuned the encoder: {tuner.fit_info_['epochs_run']} epochs, early-stopping loss "
                  f"{tuner.fit_info_['start_stop_loss']:.4f} -> {tuner.fit_info_['best_stop_loss']:.4f}")
            return tuner.decision_function(store, side)

        return finetune, tuner

    def segments_stage(self) -> None:
        p = self.layout
        clusters = pd.read_parquet(p.clusters)
        observed = None
        if self.has_labels:  # one read: published scores, observed outcomes (y__*) and split per customer
            observed = pd.read_parquet(p.propensity_scores).set_index(OUTPUT_ID)
        published = None if observed is None else observed[score_names(observed.columns)].reset_index()
        _, features = self.aggregates
        customers = build_customers(clusters, published)
        monetary = f"{self.schema.amount_col}_sum" if self.schema.amount_col else None
        segments = profile_segments(customers, features, monetary)
        customers = attach_names(customers, segments)
        outcomes = None if observed is None else observed[list(observed_labels(observed.columns))].rename(columns=observed_labels(observed.columns))
        test_ids = None if observed is None else observed.index[observed["split"] == "test"]
        segments = segment_insights(customers, segments, features, outcomes=outcomes, eval_ids=test_ids,
                                    seed=int(self.cfg.data.split.seed), monetary=monetary)
        write_parquet(customers, p.customers)
        write_sidecar(p.customers, rows=len(customers))
        write_parquet(segments, p.segments)
        write_sidecar(p.segments, rows=len(segments))
        with atomic_path(p.segments_csv) as tmp:
            segments.to_csv(tmp, index=False)
        if observed is not None:
            self.write_segment_predictiveness(customers, outcomes, published.set_index(OUTPUT_ID),
                                              fit_ids=observed.index[observed["split"] == "train"], eval_ids=test_ids)

    def write_segment_predictiveness(self, customers: pd.DataFrame, outcomes: pd.DataFrame, propensity: pd.DataFrame,
                                     *, fit_ids, eval_ids) -> None:
        """η² of each observed outcome by broad segment on test customers, against RFM k-means with
        as many groups and against tiers of the published propensity (segment_metrics.json)."""
        _, features = self.aggregates
        result = segment_predictiveness(
            customers.set_index(OUTPUT_ID)["segment"], outcomes, rfm_from_aggregates(features, self.schema),
            fit_ids=fit_ids, eval_ids=eval_ids, propensity=propensity, seed=int(self.cfg.data.split.seed))
        write_json({"measured_on": "test customers", "outcomes": result}, self.layout.segment_metrics)
        for label, r in result.items():
            eta = r["eta2"]
            print(f"[segments] {label}: eta^2 by broad segment {_fmt(eta['eventseg'])} vs RFM k-means "
                  f"{_fmt(eta['rfm_kmeans'])} (limit, propensity tiers: {_fmt(eta['limit'])}); {r['verdict']}")

    def metrics_stage(self) -> None:
        """metrics.json: the run in one summary (data, training, heads vs RFM, segments)."""
        horizon = int(self.labels_cfg["horizon_days"]) if self.has_labels else None
        write_json(run_summary(self.out, data_name=str(self.cfg.data.name), objective=str(self.cfg.objective.name),
                               representation=self.representation, horizon_days=horizon), self.layout.metrics)

    def report_stage(self) -> None:
        """report.html from this run folder's files (eventseg.report)."""
        inputs = ReportInputs.from_run(self.out, title=report_title(self.cfg.data.name), representation=self.representation)
        build_report(self.layout.report, inputs)

    def remove_stale(self) -> None:
        """Files of a representation this run no longer uses: scoring must not pick them up."""
        if self.representation == "embedding":
            rep = self.layout.representation
            for stale in (self.layout.hybrid, rep, sidecar_path(rep)):
                stale.unlink(missing_ok=True)
        if not self.has_labels:
            for stale in (self.layout.propensity_metrics, self.layout.propensity_scores,
                          self.layout.segment_metrics):
                stale.unlink(missing_ok=True)
            shutil.rmtree(self.layout.propensity_model, ignore_errors=True)
        if not self.finetunes:
            shutil.rmtree(self.layout.finetune, ignore_errors=True)


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def check_labels(run: PipelineRun) -> None:
    """Labels that match no customer, or a label window with no events, would only fail after
    training: check them against the prepared ids (or the events after the cutoff) now."""
    path = run.labels_cfg.get("path")
    if not path:
        cutoff = run.cfg.data.get("cutoff")
        if cutoff is not None:  # labels from the events after the cutoff: an empty window fails now
            build_labels(run.events, run.schema, cutoff, int(run.labels_cfg["horizon_days"]))
        return
    labels = run.labels_table
    id_col = run.schema.id_col
    key = id_key(labels.columns, id_col)
    if key not in labels.columns:
        raise ConfigError(f"labels file {path} has no id column '{id_col}' (or '{OUTPUT_ID}'); "
                          f"its columns: {sorted(map(str, labels.columns))}")
    known = set(pd.Index(np.asarray(run.prepared.store.customer_ids)).astype(str))
    ids = pd.Index(labels[key].dropna().unique()).astype(str)
    matched = int(ids.isin(known).sum())
    if matched == 0:
        raise ConfigError(f"none of the {len(ids):,} ids in labels file {path} (column '{key}', e.g. {ids[0]!r}) "
                          f"matches a customer in the events (e.g. {next(iter(known))!r}): "
                          "check that both files use the same id column and spelling")


def run_pipeline(cfg: DictConfig) -> dict[str, Path]:
    """Run every stage that is not up to date; returns the paths of the outputs."""
    check_pipeline_config(cfg)
    run = PipelineRun(cfg)
    with RunLock(run.out):
        runner = StageRunner(run.out, force=bool(cfg.get("force", False)),
                             on_start=lambda name: mark_running(run.out, name))
        mark_running(run.out, "start")
        run.remove_stale()
        if not run.has_labels:
            print("[propensity] no labels (labels.path or data.cutoff): segments get no propensity scores")
        for stage in run.stages():
            runner.run(stage)
        write_manifest(run.out, runner.fingerprints, config=plain(cfg),
                       holds={"representation": run.representation, "propensity": run.has_labels,
                              "finetune": run.finetunes and run.layout.finetune.exists()})  # no binary label: none fitted
    return {"manifest": run.out / MANIFEST, "checkpoint": run.checkpoint, **run.layout.results()}
