"""The end-to-end job: each stage is a pure function; this module only chains them and skips
the stages whose outputs are already up to date (see `eventseg.stages`)."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from eventseg.artifacts import write_json
from eventseg.data.sources import source_files
from eventseg.embed import embed_from_config
from eventseg.prepare import PreparedData, prepare_from_config
from eventseg.stages import StageRunner
from eventseg.train import train


def _plain(value):
    """Config subtree as plain Python, so it hashes and serialises."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def run_pipeline(cfg: DictConfig) -> dict[str, Path]:
    """prepare → train → embed; returns the paths of what it wrote."""
    out = Path(cfg.out_dir)
    runner = StageRunner(out, force=bool(cfg.get("force", False)))
    prepared_dir = out / "prepared"
    data_source = source_files(cfg.data)
    runner.run("prepare", lambda: prepare_from_config(cfg.data, out),
               config=_plain(cfg.data), inputs=data_source, outputs=[prepared_dir])

    metrics_file = out / "train_metrics.json"
    train_config = {k: _plain(cfg[k]) for k in ("model", "trainer", "loader", "callbacks", "seed", "run_name", "compile")}
    runner.run("train", lambda: train(cfg, PreparedData.load(prepared_dir)),
               config=train_config, inputs=[prepared_dir], outputs=[metrics_file])
    checkpoint = Path(json.loads(metrics_file.read_text())["best_checkpoint"])

    embeddings = out / "embeddings.parquet"
    embed_cfg = OmegaConf.create({"ckpt": str(checkpoint), "out_dir": str(out), "data": cfg.data, **_plain(cfg.embed)})
    runner.run("embed", lambda: write_json(embed_from_config(embed_cfg), out / "embed_metrics.json"),
               config=_plain(embed_cfg), inputs=[checkpoint, *data_source], outputs=[embeddings])
    return {"prepared": prepared_dir, "checkpoint": checkpoint, "train_metrics": metrics_file, "embeddings": embeddings}
