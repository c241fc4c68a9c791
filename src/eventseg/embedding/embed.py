"""The embed stage: a checkpoint plus events in, one float32 vector per customer out.

The embedding is a product other jobs load, so it is written as plain Parquet:

- one row per customer: `customer_id` (whatever the id column is called in the events;
  int64 or string, as in the events) and `embedding`, an Arrow
  `fixed_size_list<float32>[dim]` (pyarrow reads it back as such; Parquet itself stores a
  list, so DuckDB sees FLOAT[] (cast `embedding::FLOAT[dim]`), Spark array<float>, pandas
  one numpy array per row);
- rows in id order (the store's order), or in the order of the `customer_ids` asked for;
- written under a temporary name and renamed, so a reader never sees half a file; more
  than `rows_per_part` rows become a directory of `part-00000.parquet`, ... files;
- a JSON sidecar `<name>.json` says what produced it (checkpoint sha256, model config,
  eventseg version, row count) and which requested customers had no events.

Inference is deterministic and padding-invariant: eval mode, `torch.inference_mode`,
customers batched by history length (little padding), results put back in order. A
customer's vector does not depend on the batch it was computed in (within 1e-5 on CPU).
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from eventseg.data.datamodule import CustomerSequences, keep_batch
from eventseg.data.encoders import EventEncoders
from eventseg.data.io import read_table
from eventseg.data.schema import OUTPUT_ID
from eventseg.data.store import SequenceStore
from eventseg.data.validate import EventDataError
from eventseg.run.artifacts import atomic_path, file_hash, sidecar_path, write_sidecar
from eventseg.run.errors import UserError
from eventseg.run.layout import RunLayout
from eventseg.training.checkpoint import TrainedModel, load_checkpoint
from eventseg.training.store import run_checkpoint, verified_checkpoint

EMBEDDING_COLUMN = "embedding"
ID_METADATA_KEY = b"eventseg.id_col"
# Customers per batch when none is given. On CPU the GRU's per-step gate tensors [B, 3*d_model]
# stay in cache at a few hundred rows, which measured faster than 1024+; GPUs want big batches.
DEFAULT_BATCH_SIZE = {"cpu": 256, "cuda": 4096}
DEFAULT_MAX_BATCH_EVENTS = 262_144  # and at most this many padded events per batch (memory bound)
DEFAULT_ROWS_PER_PART = 1_000_000
SIDECAR_MAX_IDS = 10_000  # customers without events listed in the sidecar (the count is always exact)
PRECISIONS = ("32-true", "bf16-mixed")


class EmbeddingsFileError(UserError):
    """The file or directory is not an embeddings file (missing column, ragged vectors...)."""


# ---- batching ---------------------------------------------------------------------------


def model_columns_hint(schema, what: str) -> str:
    """The line that ends a bad-events error wherever a trained model reads events."""
    return (f"the model was trained on events with id column '{schema.id_col}', time column '{schema.time_col}', "
            f"categorical {list(schema.categorical)} and numeric {list(schema.numeric)}; {what} need the same columns")


def length_batches(
    lengths: np.ndarray, indices: np.ndarray | None = None, batch_size: int = 256,
    max_batch_events: int | None = DEFAULT_MAX_BATCH_EVENTS,
) -> list[np.ndarray]:
    """Customers sorted by history length (stable), cut into batches of at most `batch_size`
    customers and `max_batch_events` padded events: little compute goes to padding, and
    long histories come in smaller batches so memory stays bounded."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    indices = np.arange(len(lengths), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
    order = indices[np.argsort(np.asarray(lengths)[indices], kind="stable")]
    sorted_lengths = np.asarray(lengths)[order]
    batches, start, n = [], 0, len(order)
    while start < n:
        stop = min(start + batch_size, n)
        if max_batch_events:
            # sorted ascending: the batch's width is the length of its last customer
            while stop - start > 1 and (stop - start) * int(sorted_lengths[stop - 1]) > max_batch_events:
                stop = start + max(1, max_batch_events // int(sorted_lengths[stop - 1]))
        batches.append(order[start:stop])
        start = stop
    return batches


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but CUDA is not available; use device=cpu or device=auto")
    return device


# ---- the embedder -----------------------------------------------------------------------


class Embedder:
    """Turns events into customer embeddings with a trained model and its fitted encoders.

    >>> emb = Embedder.from_checkpoint(run_checkpoint("runs/synthetic"))  # the run's stored model
    >>> df = emb.embed("new_events.parquet")           # id column + `embedding`
    >>> ids, matrix = emb.embed_store(store)             # numpy, float32 [n, dim]
    """

    def __init__(
        self,
        model: torch.nn.Module,
        encoders: EventEncoders,
        max_len: int,
        *,
        device: str | torch.device = "auto",
        batch_size: int | None = None,
        max_batch_events: int | None = DEFAULT_MAX_BATCH_EVENTS,
        precision: str = "32-true",
        checkpoint_path: str | os.PathLike | None = None,
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.device = resolve_device(device)
        if batch_size is None:
            batch_size = DEFAULT_BATCH_SIZE.get(self.device.type, 1024)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.to(self.device).eval()
        self.encoders = encoders
        self.max_len = int(max_len)
        self.batch_size = int(batch_size)
        self.max_batch_events = max_batch_events
        self.precision = precision
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self._checkpoint_sha256: str | None = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "auto",
                        batch_size: int | None = None, **kwargs) -> "Embedder":
        """Everything comes from the checkpoint: weights, schema, encoders, max_len.

        Raises CheckpointError when the file is missing, corrupt or not an eventseg checkpoint, or
        is a model store checkpoint whose bytes are not those its entry recorded.
        """
        trained: TrainedModel = load_checkpoint(verified_checkpoint(path), map_location="cpu")
        return cls(trained.model, trained.encoders, trained.max_len, device=device, batch_size=batch_size,
                   checkpoint_path=trained.path, **kwargs)

    # ---- facts about the model --------------------------------------------------------

    @property
    def id_col(self) -> str:
        return self.encoders.schema.id_col

    @property
    def embedding_dim(self) -> int:
        return int(self.model.bottleneck.out_features)

    @property
    def checkpoint_sha256(self) -> str | None:
        if self._checkpoint_sha256 is None and self.checkpoint_path is not None:
            self._checkpoint_sha256 = file_hash(self.checkpoint_path)
        return self._checkpoint_sha256

    def model_config(self) -> dict:
        """The model's hyperparameters, without the (large) fitted encoders."""
        hparams = getattr(self.model, "hparams", {}) or {}
        return {k: v for k, v in dict(hparams).items() if k != "data_state"}

    def provenance(self) -> dict:
        """Sidecar fields describing the model that produced a set of embeddings."""
        return {
            "checkpoint": None if self.checkpoint_path is None else str(self.checkpoint_path.resolve()),
            "checkpoint_sha256": self.checkpoint_sha256,
            "model_config": self.model_config(),
            "schema": self.encoders.schema.to_dict(),
            "max_len": self.max_len,
            "embedding_dim": self.embedding_dim,
            "precision": self.precision,
        }

    # ---- events -> store ---------------------------------------------------------------

    def encode(self, events: str | os.PathLike | pd.DataFrame, *, cutoff=None, on_invalid: str = "fail") -> SequenceStore:
        """Validate and encode events with the checkpoint's encoders (unseen values are fine)."""
        from eventseg.data.prepare import encode_events

        if isinstance(events, (str, os.PathLike)) and not Path(events).exists():
            raise FileNotFoundError(f"events file not found: {events}")
        try:
            with warnings.catch_warnings():
                # "categorical column has 1 distinct value" is advice about training data, not scoring
                warnings.filterwarnings("ignore", message="categorical column '.*' has .* distinct value")
                return encode_events(events, self.encoders, max_len=self.max_len, on_invalid=on_invalid, cutoff=cutoff)
        except EventDataError as err:
            schema = self.encoders.schema
            hint = model_columns_hint(schema, "the events to embed")
            raise EventDataError(err.problems + [hint]) from None

    # ---- inference ---------------------------------------------------------------------

    def batches(self, store: SequenceStore, indices: np.ndarray | None = None) -> list[np.ndarray]:
        return length_batches(store.lengths, indices, self.batch_size, self.max_batch_events)

    def _autocast(self):
        if self.precision == "bf16-mixed":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def embed_store(self, store: SequenceStore, indices: Sequence[int] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 matrix [n, dim]) for the store's customers (or rows `indices`), in that order."""
        rows = np.arange(store.n_customers, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
        matrix = np.empty((len(rows), self.embedding_dim), dtype=np.float32)
        if len(rows) == 0:
            return store.customer_ids[rows], matrix
        position = np.empty(store.n_customers, dtype=np.int64)  # store row -> output row
        position[rows] = np.arange(len(rows))
        self.model.eval()
        non_blocking = self.device.type == "cuda"
        with torch.inference_mode(), self._autocast():
            for idx in self.batches(store, rows):
                batch = store.batch(idx)
                if self.device.type != "cpu":
                    batch = _to_device(batch, self.device, non_blocking)
                z = self.model.encode(batch).float()
                matrix[position[idx]] = z.cpu().numpy()
        return np.asarray(store.customer_ids)[rows], matrix

    def embed(
        self,
        events: str | os.PathLike | pd.DataFrame,
        *,
        customer_ids: Sequence | np.ndarray | pd.Series | None = None,
        cutoff=None,
        on_invalid: str = "fail",
    ) -> pd.DataFrame:
        """A DataFrame: `customer_id` + `embedding` (float32 numpy vectors).

        Rows are in id order, or in the order of `customer_ids` when given: then only those
        customers are embedded, and the ones with no events (none before `cutoff`) are
        reported in a warning and in `df.attrs["customers_without_events"]`, not silently lost.
        """
        store = self.encode(events, cutoff=cutoff, on_invalid=on_invalid)
        rows, missing = select_customers(store, customer_ids)
        ids, matrix = self.embed_store(store, rows)
        report_missing(missing)
        df = embeddings_frame(ids, matrix)
        df.attrs["customers_without_events"] = list(missing.tolist())
        df.attrs["embedding_dim"] = self.embedding_dim
        return df

    def embed_to_file(
        self,
        events: str | os.PathLike | pd.DataFrame,
        path: str | os.PathLike,
        *,
        customer_ids=None,
        cutoff=None,
        on_invalid: str = "fail",
        rows_per_part: int = DEFAULT_ROWS_PER_PART,
        **sidecar_fields: Any,
    ) -> Path:
        """embed() straight to an embeddings file plus its sidecar."""
        store = self.encode(events, cutoff=cutoff, on_invalid=on_invalid)
        rows, missing = select_customers(store, customer_ids)
        ids, matrix = self.embed_store(store, rows)
        report_missing(missing)
        fields = {**self.provenance(), "cutoff": None if cutoff is None else str(pd.Timestamp(cutoff)),
                  **missing_fields(missing), **sidecar_fields}
        return write_embeddings(ids, matrix, path, rows_per_part=rows_per_part, **fields)


def _to_device(batch, device: torch.device, non_blocking: bool):
    return batch.apply(lambda t: t.to(device, non_blocking=non_blocking))


# ---- requested customers ----------------------------------------------------------------


def select_customers(store: SequenceStore, customer_ids=None) -> tuple[np.ndarray | None, np.ndarray]:
    """Store rows of the requested customers that have events (request order), and the ids without.

    Without a request: (None, empty) - every customer in the store, in store order.
    """
    if customer_ids is None:
        return None, np.array([], dtype=store.customer_ids.dtype)
    wanted = pd.Index(pd.unique(np.asarray(customer_ids)))
    have = pd.Index(np.asarray(store.customer_ids))
    if pd.api.types.is_integer_dtype(wanted.dtype) != pd.api.types.is_integer_dtype(have.dtype):
        wanted, have = wanted.astype(str), have.astype(str)  # as text: '0123' stays apart from 123
    pos = have.get_indexer(wanted)
    return pos[pos >= 0].astype(np.int64), np.asarray(wanted[pos < 0])


def report_missing(missing: np.ndarray) -> None:
    if len(missing):
        examples = ", ".join(map(repr, missing[:5].tolist()))
        warnings.warn(
            f"{len(missing)} requested customer(s) have no events to embed (none in the input, or none "
            f"before the cutoff), e.g. {examples}; they are listed as customers_without_events",
            UserWarning, stacklevel=3,
        )


def missing_fields(missing: np.ndarray) -> dict:
    ids = missing.tolist()
    return {
        "customers_without_events": ids[:SIDECAR_MAX_IDS],
        "n_customers_without_events": len(ids),
        "customers_without_events_truncated": len(ids) > SIDECAR_MAX_IDS,
    }


# ---- files ------------------------------------------------------------------------------


def embeddings_frame(ids: np.ndarray, matrix: np.ndarray, id_col: str = OUTPUT_ID) -> pd.DataFrame:
    """ids + one float32 vector per row (views into `matrix`, no copy)."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    vectors = np.empty(len(matrix), dtype=object)
    for i in range(len(matrix)):  # element-wise: a list of rows could be broadcast as 2-D
        vectors[i] = matrix[i]
    return pd.DataFrame({id_col: ids, EMBEDDING_COLUMN: vectors})


def embeddings_table(ids: np.ndarray, matrix: np.ndarray, id_col: str = OUTPUT_ID) -> pa.Table:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"embedding matrix must be 2-D [n, dim], got shape {matrix.shape}")
    if len(ids) != len(matrix):
        raise ValueError(f"{len(ids)} ids but {len(matrix)} embedding rows")
    dim = matrix.shape[1]
    ids = np.asarray(ids)
    id_array = pa.array(ids.astype(np.int64) if np.issubdtype(ids.dtype, np.integer) else ids.astype(str),
                        type=pa.int64() if np.issubdtype(ids.dtype, np.integer) else pa.string())
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), type=pa.float32()), dim)
    schema = pa.schema(
        [pa.field(id_col, id_array.type, nullable=False),
         pa.field(EMBEDDING_COLUMN, pa.list_(pa.float32(), dim), nullable=False)],
        metadata={ID_METADATA_KEY: id_col.encode(), b"eventseg.embedding_dim": str(dim).encode()},
    )
    return pa.Table.from_arrays([id_array, vectors], schema=schema)


def write_embeddings(
    ids: np.ndarray,
    matrix: np.ndarray,
    path: str | os.PathLike,
    *,
    id_col: str = OUTPUT_ID,
    rows_per_part: int | None = DEFAULT_ROWS_PER_PART,
    row_group_size: int = 100_000,
    **sidecar_fields: Any,
) -> Path:
    """Write ids + float32 vectors as Parquet, atomically, with a `<path>.json` sidecar.

    Up to `rows_per_part` rows: one file at `path`. More: `path` is a directory of
    `part-00000.parquet`, ... in row order. Either way the output appears complete (rename
    of a temporary sibling) or not at all. Returns `path`.
    """
    path = Path(path)
    table = embeddings_table(ids, matrix, id_col)
    n = table.num_rows
    if rows_per_part is not None and rows_per_part < 1:
        raise ValueError(f"rows_per_part must be >= 1, got {rows_per_part}")
    parts = 1 if not rows_per_part or n <= rows_per_part else -(-n // rows_per_part)
    stale = sidecar_path(path)
    with atomic_path(path) as tmp:
        if parts == 1:
            pq.write_table(table, tmp, row_group_size=row_group_size)
        else:
            tmp.mkdir()
            for i in range(parts):
                chunk = table.slice(i * rows_per_part, rows_per_part)
                pq.write_table(chunk, tmp / f"part-{i:05d}.parquet", row_group_size=row_group_size)
        if stale.exists():  # the old sidecar must never describe the new data
            stale.unlink()
    facts = {"rows": n, "embedding_dim": int(table.schema.field(EMBEDDING_COLUMN).type.list_size),
             "id_col": id_col, "id_dtype": str(table.schema.field(id_col).type),
             "parts": parts, "rows_per_part": rows_per_part}
    write_sidecar(path, **{**sidecar_fields, **facts})  # facts about the file win over caller fields
    return path


def embeddings_files(path: str | os.PathLike) -> list[Path]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"embeddings not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".parquet" and not p.name.startswith((".", "_")))
        if not files:
            raise EmbeddingsFileError(f"{path} is a directory without .parquet part files: not an embeddings output")
        return files
    return [path]


def load_embeddings(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 matrix [n, dim]) from an embeddings file or directory of part files.

    Also reads files written by other tools, as long as they hold one id column and an
    `embedding` column of equal-length float lists.
    """
    ids, blocks, dim = [], [], None
    for f in embeddings_files(path):
        try:
            table = pq.read_table(f)
        except (pa.ArrowInvalid, OSError) as err:
            raise EmbeddingsFileError(f"{f} is not a readable Parquet file: {err}") from None
        id_col = _id_column(table.schema, f)
        part_ids, matrix = _vectors(table, f, id_col)
        if dim is not None and matrix.shape[1] != dim:
            raise EmbeddingsFileError(f"{f} holds {matrix.shape[1]}-dimensional embeddings, earlier parts {dim}")
        dim = matrix.shape[1]
        ids.append(part_ids)
        blocks.append(matrix)
    return np.concatenate(ids), np.concatenate(blocks)


def embeddings_id_col(path: str | os.PathLike) -> str:
    """The id column of an embeddings file or directory: OUTPUT_ID in eventseg's own, as named in others."""
    f = embeddings_files(path)[0]
    return _id_column(pq.read_schema(f), f)


def _id_column(schema: pa.Schema, f: Path) -> str:
    names = schema.names
    if EMBEDDING_COLUMN not in names:
        raise EmbeddingsFileError(f"{f} is not an embeddings file: no '{EMBEDDING_COLUMN}' column (columns: {names})")
    meta = schema.metadata or {}
    if ID_METADATA_KEY in meta and meta[ID_METADATA_KEY].decode() in names:
        return meta[ID_METADATA_KEY].decode()
    others = [c for c in names if c != EMBEDDING_COLUMN]
    if OUTPUT_ID in others:
        return OUTPUT_ID
    if len(others) != 1:
        raise EmbeddingsFileError(f"{f}: cannot tell which column holds the customer ids among {others}")
    return others[0]


def _vectors(table: pa.Table, f: Path, id_col: str) -> tuple[np.ndarray, np.ndarray]:
    col = table.column(EMBEDDING_COLUMN).combine_chunks()
    typ = col.type
    if not (pa.types.is_fixed_size_list(typ) or pa.types.is_list(typ) or pa.types.is_large_list(typ)) or not (
        pa.types.is_floating(typ.value_type)
    ):
        raise EmbeddingsFileError(f"{f}: column '{EMBEDDING_COLUMN}' has type {typ}, expected a list of floats")
    if col.null_count:
        raise EmbeddingsFileError(f"{f}: {col.null_count} row(s) have a null embedding")
    n = len(col)
    if pa.types.is_fixed_size_list(typ):
        dim = typ.list_size
    else:
        lengths = np.asarray(col.value_lengths())
        dim = int(lengths[0]) if n else 0
        if n and (lengths != dim).any():
            bad = int(np.flatnonzero(lengths != dim)[0])
            raise EmbeddingsFileError(
                f"{f}: ragged embeddings: row 0 has {dim} values but row {bad} has {int(lengths[bad])}"
            )
    values = col.flatten()  # respects slicing offsets
    if values.null_count:
        raise EmbeddingsFileError(f"{f}: {values.null_count} embedding value(s) are null")
    matrix = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(n, dim)
    id_values = table.column(id_col).combine_chunks()
    if pa.types.is_integer(id_values.type):
        part_ids = np.asarray(id_values.to_numpy(zero_copy_only=False), dtype=np.int64)
    else:
        part_ids = np.asarray(id_values.to_pylist(), dtype=str)
    return part_ids, matrix


# ---- Lightning: predict_step + a prediction writer ----------------------------------------


class EmbeddingWriter(BasePredictionWriter):
    """Collects each predicted batch's vectors by customer, then writes the embeddings file.

    The module's `predict_step` returns {"customer_index", "embedding"}; the index is the
    customer's row in the store, so batches may come in any (length-sorted) order and the
    output is still in the requested order. The file appears only when prediction finished.
    """

    def __init__(self, store: SequenceStore, path: str | os.PathLike, embedding_dim: int, *,
                 rows: np.ndarray | None = None, id_col: str = OUTPUT_ID,
                 rows_per_part: int | None = DEFAULT_ROWS_PER_PART, sidecar_fields: dict | None = None):
        super().__init__(write_interval="batch")
        self.store, self.path, self.id_col = store, Path(path), id_col
        self.rows = np.arange(store.n_customers, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        self.position = np.full(store.n_customers, -1, dtype=np.int64)
        self.position[self.rows] = np.arange(len(self.rows))
        self.matrix = np.empty((len(self.rows), embedding_dim), dtype=np.float32)
        self.filled = np.zeros(len(self.rows), dtype=bool)
        self.rows_per_part = rows_per_part
        self.sidecar_fields = dict(sidecar_fields or {})
        self.written: Path | None = None

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        pos = self.position[prediction["customer_index"].cpu().numpy()]
        self.matrix[pos] = prediction["embedding"].float().cpu().numpy()
        self.filled[pos] = True

    def on_predict_start(self, trainer, pl_module) -> None:
        if trainer.world_size > 1:
            raise RuntimeError("EmbeddingWriter runs on one device; use devices=1 for embedding")

    def on_predict_end(self, trainer, pl_module) -> None:
        if not self.filled.all():
            raise RuntimeError(f"{int((~self.filled).sum())} customer(s) got no embedding: prediction stopped early")
        self.written = write_embeddings(
            np.asarray(self.store.customer_ids)[self.rows], self.matrix, self.path, id_col=self.id_col,
            rows_per_part=self.rows_per_part, **self.sidecar_fields,
        )


class FixedBatches(torch.utils.data.Sampler):
    """A batch sampler over precomputed batches (e.g. from `length_batches`), in order."""

    def __init__(self, batches: list[np.ndarray]):
        self.batches = batches

    def __iter__(self):
        for b in self.batches:
            yield b.tolist()

    def __len__(self) -> int:
        return len(self.batches)


def predict_loader(store: SequenceStore, batches: list[np.ndarray], num_workers: int = 0,
                   pin_memory: bool = False) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        CustomerSequences(store), batch_sampler=FixedBatches(batches), collate_fn=keep_batch,
        num_workers=num_workers, pin_memory=pin_memory,
    )


def _read_customer_ids(path: str | os.PathLike, id_col: str) -> np.ndarray:
    df = read_table(path, "customers")
    for col in (OUTPUT_ID, id_col):
        if col in df.columns:
            return df[col].to_numpy()
    raise EventDataError([f"column '{OUTPUT_ID}' (or '{id_col}') is missing from the customers file {path}; available: {sorted(map(str, df.columns))}"])


def embed_from_config(cfg, source=None) -> dict:
    """The embed stage as scripts call it: checkpoint + data config in, embeddings file out.

    Keys: ckpt, out_dir, data (a data group), device, precision, batch_size, max_batch_events,
    rows_per_part, customers (optional file of expected ids), progress_bar. `source` (events already
    read, e.g. by the pipeline) replaces reading the data config's source.
    Returns metrics and paths (JSON-friendly).
    """
    import lightning as L

    from eventseg.data.sources import resolve_source

    started = time.perf_counter()
    if not cfg.get("ckpt"):
        raise ValueError("ckpt is not set: pass ckpt=<a run folder> (its stored model) or ckpt=path/to/checkpoint.ckpt")
    ckpt = run_checkpoint(cfg.ckpt) if Path(cfg.ckpt).is_dir() else cfg.ckpt
    embedder = Embedder.from_checkpoint(
        ckpt, device=str(cfg.get("device", "auto")), batch_size=cfg.get("batch_size"),
        max_batch_events=cfg.get("max_batch_events", DEFAULT_MAX_BATCH_EVENTS),
        precision=str(cfg.get("precision", "32-true")),
    )
    data_cfg = cfg.data
    cutoff = data_cfg.get("cutoff")
    t0 = time.perf_counter()
    store = embedder.encode(resolve_source(data_cfg) if source is None else source, cutoff=cutoff, on_invalid=str(data_cfg.get("on_invalid", "fail")))
    encode_seconds = time.perf_counter() - t0
    expected = _read_customer_ids(cfg.customers, embedder.id_col) if cfg.get("customers") else None
    rows, missing = select_customers(store, expected)
    report_missing(missing)
    rows = np.arange(store.n_customers, dtype=np.int64) if rows is None else rows

    out = RunLayout(cfg.out_dir).embeddings
    writer = EmbeddingWriter(
        store, out, embedder.embedding_dim, rows=rows,
        rows_per_part=cfg.get("rows_per_part", DEFAULT_ROWS_PER_PART),
        sidecar_fields={**embedder.provenance(), **missing_fields(missing),
                        "cutoff": None if cutoff is None else str(pd.Timestamp(cutoff)),
                        "source": str(data_cfg.get("path") or data_cfg.get("source"))},
    )
    cuda = embedder.device.type == "cuda"
    trainer = L.Trainer(
        accelerator="gpu" if cuda else "cpu", devices=1, precision=embedder.precision,
        logger=False, enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=bool(cfg.get("progress_bar", False)), callbacks=[writer], inference_mode=True,
    )
    loader = predict_loader(store, embedder.batches(store, rows), pin_memory=cuda)
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        # one vectorised gather per batch: loader workers would only add process start-up
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*custom batch sampler `FixedBatches`.*")  # it yields every index
        trainer.predict(embedder.model, dataloaders=loader, return_predictions=False)
    predict_seconds = time.perf_counter() - t1
    return {
        "embeddings": str(writer.written),
        "sidecar": str(sidecar_path(out)),
        "rows": int(len(rows)),
        "embedding_dim": embedder.embedding_dim,
        "customers_without_events": int(len(missing)),
        "encode_seconds": round(encode_seconds, 3),
        "predict_seconds": round(predict_seconds, 3),
        "customers_per_second": round(len(rows) / predict_seconds) if predict_seconds > 0 else None,
        "seconds": round(time.perf_counter() - started, 3),
        "device": str(embedder.device),
    }


__all__ = [
    "Embedder", "EmbeddingWriter", "EmbeddingsFileError", "embed_from_config", "embeddings_frame",
    "embeddings_table", "length_batches", "load_embeddings", "write_embeddings",
]
