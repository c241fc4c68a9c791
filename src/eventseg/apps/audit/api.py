"""`audit_run`: a fairness audit of a finished run's broad segments and propensity tiers against
protected attributes that the run never saw, written to `<run_dir>/audit.json`.

For each attribute and each grouping (broad segments, outliers included; each tier_<label>):
the overall chi-square test and Cramér's V, every cell's representation ratio against the
audited population, and for tiers the four-fifths ratio of reaching the high tier. All
p-values of the audit form one family for Holm (or Benjamini–Hochberg), so a flag means
"beyond chance" across everything that was tested, not per table. Cells under `min_cell`
customers, and the cells that would reveal them, are published as suppressed (disclosure.py).

The audit only reads the run: customers.parquet and segments.parquet are checked against the
manifest first, and audit.json is outside the manifest, so writing it leaves the run valid.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eventseg import __version__
from eventseg.apps.audit.attributes import Attribute, load_attributes
from eventseg.apps.audit.disclosure import COMPLEMENTARY, suppression, trim
from eventseg.apps.audit.stats import CORRECTIONS, adjust, association, four_fifths, representation
from eventseg.data.schema import OUTPUT_ID
from eventseg.report.audit_wording import flag_text
from eventseg.run.artifacts import write_json
from eventseg.run.columns import tier_label
from eventseg.run.errors import ConfigError
from eventseg.run.layout import RunLayout
from eventseg.run.manifest import read_manifest, verify_files

TIERS = ("low", "medium", "high")  # segments.build_customers' tier names, in order
HIGH_TIER = TIERS[-1]
_CELL_FIELDS = ("count", "share", "ratio", "ci_low", "ci_high", "p", "p_adjusted")


@dataclass(frozen=True)
class AuditSettings:
    """What counts as a flag. `min_ratio` keeps a tiny but significant difference on a large
    population from being flagged: a cell is flagged at `min_ratio`× or 1/`min_ratio`× and beyond."""

    min_cell: int = 10
    alpha: float = 0.05
    correction: str = "holm"
    min_ratio: float = 1.25
    four_fifths: float = 0.8
    bands: int = 4
    numeric_levels: int = 6
    noun: str = "customers"

    def __post_init__(self) -> None:
        problems = [msg for bad, msg in (
            (self.min_cell < 1, f"min_cell={self.min_cell} must be at least 1"),
            (not 0 < self.alpha < 1, f"alpha={self.alpha} must be between 0 and 1"),
            (self.correction not in CORRECTIONS, f"correction={self.correction!r} must be one of {list(CORRECTIONS)}"),
            (self.min_ratio < 1, f"min_ratio={self.min_ratio} must be at least 1"),
            (not 0 < self.four_fifths <= 1, f"four_fifths={self.four_fifths} must be in (0, 1]"),
            (self.bands < 2, f"bands={self.bands} must be at least 2"),
        ) if bad]
        if problems:
            raise ConfigError("audit settings: " + "; ".join(problems))


@dataclass
class _Analysis:
    """One attribute against one grouping: the trimmed table and its raw statistics."""

    attribute: str
    grouping: str
    table: pd.DataFrame
    left_out: dict
    overall: dict | None = None
    cells: pd.DataFrame | None = None
    fifths: pd.DataFrame | None = None
    skipped: str | None = None


def audit_run(run_dir: str | os.PathLike, attributes: str | os.PathLike | pd.DataFrame, columns=None, *,
              write: bool = True, report: bool = True, **settings) -> dict:
    """Audit the run in `run_dir` against the attribute table (a file or DataFrame keyed by the
    run's id column or customer_id); `settings` are `AuditSettings` fields. Returns audit.json;
    with `write`, also <run>/audit.json and (with `report`) the report's fairness section."""
    cfg = AuditSettings(**settings)
    run = Path(run_dir)
    manifest = read_manifest(run)
    verify_files(run, [RunLayout.customers, RunLayout.segments], manifest)
    customers = pd.read_parquet(RunLayout(run).customers)
    segments = pd.read_parquet(RunLayout(run).segments)
    id_col = ((manifest.get("config") or {}).get("data") or {}).get("id_col") or OUTPUT_ID
    attrs = load_attributes(attributes, customers[OUTPUT_ID], run_id_col=id_col, columns=columns,
                            min_cell=cfg.min_cell, bands=cfg.bands, numeric_levels=cfg.numeric_levels)
    groupings = {"segment": customers["segment"], **{c: customers[c] for c in customers.columns if tier_label(c)}}
    analyses = [_analyse(a, name, g, cfg.min_cell) for a in attrs.items for name, g in groupings.items()]
    n_tests = _adjust_all(analyses, cfg.correction)
    names = {int(s): str(n) for s, n in segments.loc[segments["level"] == "broad", ["segment", "name"]].itertuples(index=False)}
    results, flags = {}, []
    for a in analyses:
        published, found = _publish(a, cfg, names)
        results.setdefault(a.attribute, {})[a.grouping] = published
        flags += found
    for flag in flags:
        flag["text"] = flag_text(flag, cfg.correction, cfg.noun)
    audit = _json_ready({
        "format": "eventseg.audit", "eventseg_version": __version__, "run_dir": str(run),
        # what was audited: a reader compares these with run.json to tell a stale audit from a current one
        "run_completed_at": manifest.get("completed_at"),
        "run_files": {name: manifest["files"][name] for name in (RunLayout.customers, RunLayout.segments)},
        "attributes_source": attrs.source, "id_column": attrs.id_column,
        "settings": {k: getattr(cfg, k) for k in AuditSettings.__dataclass_fields__},
        "customers": {"run": len(customers), **attrs.join},
        "attributes": [{"name": a.name, **a.describe()} for a in attrs.items],  # a list: the file's order
        "groupings": list(groupings), "segments": [{"segment": s, "name": n} for s, n in names.items()],
        "n_tests": n_tests, "results": results, "flags": flags,
    })
    if write:
        write_json(audit, RunLayout(run).audit)
        if report:
            from eventseg.report import rebuild_run_report

            rebuild_run_report(run)
    return audit


def audit_from_config(cfg) -> dict:
    """eventseg audit: the audit, written to <run_dir>/audit.json; prints where and what it flags."""
    settings = {k: cfg[k] for k in AuditSettings.__dataclass_fields__ if cfg.get(k) is not None}
    columns = list(cfg.columns) if cfg.get("columns") is not None else None
    audit = audit_run(cfg.run_dir, cfg.attributes, columns, report=bool(cfg.get("report", True)), **settings)
    return {"audit": str(RunLayout(cfg.run_dir).audit), "matched_customers": audit["customers"]["matched_customers"],
            "tests": audit["n_tests"], "flags": [f["text"] for f in audit["flags"]]}


def _analyse(attr: Attribute, grouping: str, groups: pd.Series, min_cell: int) -> _Analysis:
    """The raw statistics of one table; none when trimming leaves under two values or groups."""
    known = attr.levels.notna().to_numpy() & groups.notna().to_numpy()
    full = pd.crosstab(attr.levels[known].to_numpy(), groups[known].to_numpy())
    if tier_label(grouping):
        full = full[sorted(full.columns, key=lambda t: TIERS.index(t) if t in TIERS else len(TIERS))]
    full = full.reindex([v for v in attr.levels.cat.categories if v in full.index])
    table, rows, cols = trim(full, min_cell)
    a = _Analysis(attr.name, grouping, table, {"values": rows, "groups": cols})
    if table.shape[0] < 2 or table.shape[1] < 2:
        a.skipped = (f"fewer than two {'values' if table.shape[0] < 2 else 'groups'} left once those with "
                     f"every cell under {min_cell} are left out")
        return a
    a.overall, a.cells = association(table), representation(table)
    if tier_label(grouping) and HIGH_TIER in table.columns:
        a.fifths = four_fifths(table, HIGH_TIER)
    return a


def _adjust_all(analyses: list[_Analysis], method: str) -> int:
    """Adjust every p-value of the audit as one family, in place; returns the number of tests
    (a four-fifths reference is compared with nothing, so it has no p-value and is not counted)."""
    tested = [a for a in analyses if not a.skipped]
    raw = np.concatenate([[a.overall["p"], *a.cells["p"], *([] if a.fifths is None else a.fifths["p"])]
                          for a in tested]) if tested else np.empty(0)
    adjusted = iter(adjust(raw, method))
    for a in tested:
        a.overall["p_adjusted"] = float(next(adjusted))
        a.cells["p_adjusted"] = [next(adjusted) for _ in range(len(a.cells))]
        if a.fifths is not None:
            a.fifths["p_adjusted"] = [next(adjusted) for _ in range(len(a.fifths))]
    return int(np.isfinite(raw).sum())


def _publish(a: _Analysis, cfg: AuditSettings, names: dict[int, str]) -> tuple[dict, list[dict]]:
    """What audit.json shows of one table (nothing recoverable about a suppressed cell), and its flags."""
    out = {"left_out": a.left_out}
    if a.skipped:
        return {**out, "skipped": a.skipped}, []
    where = {"attribute": a.attribute, "grouping": a.grouping}
    hidden = suppression(a.table, cfg.min_cell)
    flags = []
    overall = {**a.overall, "significant": a.overall["p_adjusted"] < cfg.alpha}
    if overall["significant"]:
        flags.append({"kind": "association", **where, **overall})
    groups = [{"group": g, "n": int(a.table[g].sum())} for g in a.table.columns]
    values = [{"value": v, "n": int(a.table.loc[v].sum())} for v in a.table.index]
    cells = []
    for c in a.cells.to_dict("records"):
        reason = hidden.at[c["value"], c["group"]]
        direction = "over" if c["ratio"] >= 1 else "under"
        flagged = bool(c["p_adjusted"] < cfg.alpha and max(c["ratio"], 1 / max(c["ratio"], 1e-12)) >= cfg.min_ratio)
        cell = {"value": c["value"], "group": c["group"], "group_n": c["group_n"],
                "population_share": c["population_share"], "suppressed": reason or None, "flag": direction if flagged else None}
        if not reason:
            cell.update({k: c[k] for k in _CELL_FIELDS})
        cells.append(cell)
        if flagged:
            flags.append({"kind": "representation", **where, **cell, "direction": direction, "min_cell": cfg.min_cell,
                          **({"group_name": names.get(int(c["group"]))} if a.grouping == "segment" else {})})
    published = {**out, "overall": overall, "groups": groups, "values": values, "cells": cells}
    if a.fifths is not None:
        published["four_fifths"], found = _publish_fifths(a, hidden, cfg, where)
        flags += found
    return published, flags


def _publish_fifths(a: _Analysis, hidden: pd.DataFrame, cfg: AuditSettings, where: dict) -> tuple[list, list]:
    """Rates and ratios only where both the value's and the reference's high-tier cells are
    published: a rate times the value's (published) size is the suppressed count."""
    reference = a.fifths["reference"].iloc[0]
    ref_row = a.fifths.set_index("value").loc[reference]
    rows, flags = [], []
    for f in a.fifths.to_dict("records"):
        # the value's own reason, else the reference's (its rate would follow from the ratio)
        reason = hidden.at[f["value"], HIGH_TIER] or (COMPLEMENTARY if hidden.at[reference, HIGH_TIER] else "")
        below = bool(f["ratio"] < cfg.four_fifths)
        flagged = below and bool(f["p_adjusted"] < cfg.alpha)
        row = {"value": f["value"], "n": int(f["n"]), "reference": reference, "is_reference": f["value"] == reference,
               "below_four_fifths": below, "flag": flagged, "suppressed": reason or None}
        if not reason:
            row.update({"selected": int(f["selected"]), "rate": f["rate"], "ratio": f["ratio"],
                        "reference_rate": float(ref_row["rate"]), "p": f["p"], "p_adjusted": f["p_adjusted"]})
        rows.append(row)
        if flagged:
            flags.append({"kind": "four_fifths", **where, **row, "threshold": cfg.four_fifths})
    return rows, flags


def _json_ready(obj):
    """NaN as null and numpy scalars as Python numbers: audit.json is read by tools other than pandas."""
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj
