"""Small-cell protection: an audit of protected attributes must not itself disclose them.

A cell (attribute value × segment or tier) with fewer than `min_cell` customers is never
published: not its count, nor anything its count can be recovered from (share, ratio,
p-value). Two rules make the rest of the table safe to publish as well:

- trimming: a value or group whose every cell is under `min_cell` (a total under `min_cell`
  among them) leaves that attribute's table, and so does what that leaves empty in turn. It
  would show nothing but "<10", and its published total would force a whole other line to be
  hidden with it. The published totals are those of the trimmed table, each at least `min_cell`;
- complementary suppression: a row or column with exactly one hidden cell would give it away
  by subtraction from the published total, so its next-smallest cell is hidden too, repeated
  until no line has a single hidden cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from eventseg.report.audit_wording import COMPLEMENTARY, PRIMARY


def trim(table: pd.DataFrame, min_cell: int) -> tuple[pd.DataFrame, list, list]:
    """`table` (values × groups, counts) without the rows and columns whose every cell is under
    `min_cell`; also the dropped values and groups, so the output can say what was left out."""
    dropped_rows, dropped_cols = [], []
    while True:
        small = table < min_cell
        rows, cols = small.all(axis=1), small.all(axis=0)
        if not rows.any() and not cols.any():
            return table, dropped_rows, dropped_cols
        dropped_rows += list(table.index[rows.to_numpy()])
        dropped_cols += list(table.columns[cols.to_numpy()])
        table = table.loc[~rows.to_numpy(), ~cols.to_numpy()]


def suppression(table: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """Per cell: "" (published), PRIMARY (under `min_cell`, zero included: "nobody in segment 3
    is X" discloses as much as a count of 3) or COMPLEMENTARY."""
    counts = table.to_numpy()
    reason = np.where(counts < min_cell, PRIMARY, "").astype(object)
    changed = True
    while changed:
        changed = False
        for line_counts, line_reason in _lines(counts, reason):
            hidden = line_reason != ""
            if hidden.sum() == 1 and (~hidden).any():
                open_cells = np.flatnonzero(~hidden)
                line_reason[open_cells[np.argmin(line_counts[open_cells])]] = COMPLEMENTARY
                changed = True
    return pd.DataFrame(reason, index=table.index, columns=table.columns)


def _lines(counts: np.ndarray, reason: np.ndarray):
    """Every row and column of the table, as views, so marking a cell in a line marks the table."""
    for i in range(counts.shape[0]):
        yield counts[i, :], reason[i, :]
    for j in range(counts.shape[1]):
        yield counts[:, j], reason[:, j]
