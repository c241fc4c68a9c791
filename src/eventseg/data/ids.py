"""Do two id columns speak the same language? Text ids against integer ids (or the reverse) is
refused everywhere a file is matched to a run (monitored events, seed lists, attribute files),
never coerced: '0123' is not 123, and a guess would pick the wrong customers or none."""

from __future__ import annotations

import pandas as pd

from eventseg.run.errors import UserError


def id_examples(ids, n: int = 3) -> list:
    """The first few ids as plain Python values, for messages."""
    return [v.item() if hasattr(v, "item") else v for v in pd.Series(ids).iloc[:n]]


def is_text_ids(ids: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(ids.dtype) or pd.api.types.is_bool_dtype(ids.dtype))


def check_id_kind(ids: pd.Series, run_ids: pd.Series, id_col: str, where: str) -> None:
    """Raise a UserError naming both kinds and the fix when `ids` and the run's ids differ in kind."""
    mine, theirs = is_text_ids(ids), is_text_ids(run_ids)
    if mine == theirs:
        return
    if mine:
        fix = f"convert it, e.g. df['{id_col}'] = df['{id_col}'].astype('int64'), the way the run's events spell them"
    else:
        fix = f"write it as text, e.g. df['{id_col}'] = df['{id_col}'].astype(str), the way the run's events spell them"
    raise UserError(f"{where}: id column '{id_col}' holds {'text' if mine else 'numbers'} ({ids.dtype}, e.g. "
                    f"{id_examples(ids)}) but the run's customer ids are {'text' if theirs else 'numbers'} "
                    f"({run_ids.dtype}, e.g. {id_examples(run_ids)}): {fix}")
