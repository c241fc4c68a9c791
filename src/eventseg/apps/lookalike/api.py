"""find_lookalikes: rank a finished run's customers by similarity to a seed set and write the
audience to <run>/lookalikes/<name>.parquet, with a sidecar that records how it was made.

Order of work: settings, then the seed definition, then the run's manifest and the hashes of
every file about to be read, then the seeds resolved against the run's customers; only then
are vectors loaded and scored. A mistake anywhere in that list is one clear error before any
similarity is computed. lookalikes/ is not part of the run's manifest, so writing there leaves
the run verifiable.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from eventseg.apps.lookalike.evidence import heldout_recall, outcome_vs_random
from eventseg.apps.lookalike.scoring import LookalikeScorer, ranks_of
from eventseg.apps.lookalike.seeds import COLUMN_SOURCES, parse_seed_spec, resolve_seeds
from eventseg.apps.lookalike.space import DEFAULT_SHRINKAGE, load_space, space_file
from eventseg.data.io import read_table
from eventseg.data.labels import align_to_ids
from eventseg.data.schema import OUTPUT_ID, id_key
from eventseg.run.artifacts import file_hash, write_parquet, write_sidecar
from eventseg.run.columns import score_names
from eventseg.run.errors import ConfigError
from eventseg.run.layout import RunLayout
from eventseg.run.manifest import read_manifest, verify_files

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def find_lookalikes(run_dir: str | os.PathLike, seeds, *, k: int | None = 1000, name: str | None = None,
                    space: str = "auto", shrinkage: float = DEFAULT_SHRINKAGE, include_seeds: bool = False,
                    holdout: float = 0.2, top_share: float = 0.10, min_seeds: int = 10, on_missing: str = "fail",
                    scorer: LookalikeScorer | None = None, seed: int = 0) -> dict:
    """Write the `k` customers most like `seeds` (None: every customer, ranked) and return a summary.

    seeds: a file of ids (one a line, or a Parquet/CSV table with a customer_id column), a query
    `top:<column>:<share>` on a numeric column of customers.parquet or aggregates.parquet, or a
    list of ids. Seeds are left out of the audience unless include_seeds. `holdout` of the seeds
    is set aside to measure recall (evidence.py); the audience itself is scored against all seeds.
    """
    scorer = scorer if scorer is not None else LookalikeScorer()
    _check_settings(k, holdout, top_share, min_seeds, shrinkage)
    spec = parse_seed_spec(seeds)
    name = _output_name(name if name is not None else spec.default_name)
    scorer.check_params()
    run = Path(run_dir)
    manifest = read_manifest(run)  # refuses a missing, foreign or incomplete run
    space_name, space_rel = space_file(run, manifest, space)
    tables = [RunLayout.customers] + ([COLUMN_SOURCES[1]] if spec.kind == "top" and (run / COLUMN_SOURCES[1]).exists() else [])
    verify_files(run, [space_rel, *tables], manifest)  # every byte checked before anything is opened
    customers = pd.read_parquet(RunLayout(run).customers)
    run_id_col = str((manifest.get("config", {}).get("data") or {}).get("id_col") or OUTPUT_ID)
    chosen = resolve_seeds(spec, run, customers, run_id_col=run_id_col, min_seeds=min_seeds, on_missing=on_missing)

    matrix, seed_rows = load_space(run, space_rel, customers[OUTPUT_ID], shrinkage), chosen.positions
    fitted = scorer.fit(matrix[seed_rows])
    is_seed = np.zeros(len(matrix), dtype=bool)
    is_seed[seed_rows] = True
    pool = np.arange(len(matrix)) if include_seeds else np.flatnonzero(~is_seed)
    out, audience = _audience(customers, fitted.score(matrix), is_seed, pool, k)
    evidence = {"held_out_seeds": heldout_recall(matrix, seed_rows, scorer, holdout=holdout, k=len(out),
                                                 top_share=top_share, seed=seed),
                "observed_outcomes": _observed(manifest, customers[OUTPUT_ID], run_id_col, audience, pool)}
    path = RunLayout(run).lookalikes / f"{name}.parquet"
    write_parquet(out, path)
    settings = {"k": k, "include_seeds": include_seeds, "holdout": holdout, "top_share": top_share,
                "min_seeds": min_seeds, "on_missing": on_missing, "seed": seed}
    write_sidecar(path, rows=len(out), run_dir=str(run.resolve()), seeds=chosen.definition,
                  space={"name": space_name, "file": space_rel, "shrinkage": shrinkage,
                         "whitened_dims": int(matrix.shape[1])},
                  scorer={**fitted.get_params(), "index_used": fitted.index_kind_,
                          "n_neighbors_used": fitted.n_neighbors_},
                  settings=settings, evidence=evidence, columns=list(out.columns))
    return {"lookalikes": str(path), "rows": len(out), "seeds": int(len(seed_rows)), "customers": int(len(matrix)),
            "space": space_name, "index": fitted.index_kind_, "evidence": evidence}


def _audience(customers: pd.DataFrame, similarity: np.ndarray, is_seed: np.ndarray, pool: np.ndarray,
              k: int | None) -> tuple[pd.DataFrame, np.ndarray]:
    """The output table (best first) and its rows of customers: the top k of `pool` by similarity,
    with each customer's segment and published scores (p_<label>, pred_<label>) beside them."""
    rank = ranks_of(similarity[pool])
    order = np.argsort(rank, kind="stable")[:len(pool) if k is None else min(int(k), len(pool))]
    rows = pool[order]
    described = ["segment", "segment_name", *score_names(customers.columns)]
    out = pd.DataFrame({OUTPUT_ID: customers[OUTPUT_ID].to_numpy()[rows], "similarity": similarity[rows],
                        "rank": rank[order], **{c: customers[c].to_numpy()[rows] for c in described},
                        "is_seed": is_seed[rows]})
    return out, rows


def _check_settings(k, holdout: float, top_share: float, min_seeds: int, shrinkage: float) -> None:
    if k is not None and int(k) < 1:
        raise ConfigError(f"k={k} must be a positive number of lookalikes (or null for every customer, ranked)")
    if not 0.0 <= float(holdout) < 1.0:
        raise ConfigError(f"holdout={holdout} must be a share in [0, 1) of the seeds set aside to measure recall")
    if not 0.0 < float(top_share) <= 1.0:
        raise ConfigError(f"top_share={top_share} must be a share in (0, 1] of the customers")
    if float(shrinkage) < 0:
        raise ConfigError(f"shrinkage={shrinkage} must be >= 0 (0: full whitening; larger: closer to plain cosine)")
    if int(min_seeds) < 2:
        raise ConfigError(f"min_seeds={min_seeds} must be at least 2 (one to fit, one held out)")


def _output_name(name: str) -> str:
    name = str(name)
    if not _NAME.fullmatch(name):
        raise ConfigError(f"name={name!r}: use letters, digits, '_', '-' and '.', starting with a letter or digit "
                          f"(it becomes {RunLayout.lookalikes}/<name>.parquet)")
    return name


def _observed(manifest: dict, customer_ids: pd.Series, run_id_col: str, audience: np.ndarray, pool: np.ndarray) -> dict:
    """The audience's observed outcomes vs random, from the run's labels file (config labels.path)."""
    path = (manifest.get("config", {}).get("labels") or {}).get("path")
    if not path:
        return {"note": "the run has no labels file (labels.path): no observed outcomes to compare"}
    if not Path(path).exists():
        return {"note": f"the run's labels file {path} is not reachable from here: no observed outcomes compared",
                "labels_file": str(path)}
    table = read_table(path, "labels")
    outcomes, join = align_to_ids(customer_ids.to_numpy(), table, id_key(table.columns, run_id_col), "labels")
    numeric = [c for c in outcomes.columns if pd.api.types.is_numeric_dtype(outcomes[c].dtype)]
    return {"labels_file": str(Path(path).resolve()), "labels_sha256": file_hash(path), "join": join,
            "per_label": outcome_vs_random(outcomes[numeric], audience, pool)}


def lookalike_from_config(cfg) -> dict:
    """eventseg lookalike: configs/lookalike.yaml + command-line overrides → find_lookalikes."""
    s = cfg.scorer
    scorer = LookalikeScorer(n_neighbors=int(s.n_neighbors), centroid_weight=float(s.centroid_weight),
                             index=str(s.index), nprobe=int(s.nprobe), seed=int(cfg.seed))
    return find_lookalikes(cfg.run_dir, cfg.seeds, k=_audience_size(cfg.k), name=cfg.name,
                           space=str(cfg.space), shrinkage=float(cfg.shrinkage), include_seeds=bool(cfg.include_seeds),
                           holdout=float(cfg.holdout), top_share=float(cfg.top_share), min_seeds=int(cfg.min_seeds),
                           on_missing=str(cfg.on_missing), scorer=scorer, seed=int(cfg.seed))


def _audience_size(value) -> int | None:
    """k from the command line: a positive count, or all / null for every customer, ranked."""
    if value is None or str(value).lower() == "all":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"k={value!r} is not a number of lookalikes: pass k=1000, or k=all to rank all") from None
