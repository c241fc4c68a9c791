"""An installed eventseg works from any folder: a wheel built from a copy of the project, installed
into a fresh virtual environment, runs `eventseg` from a folder that is not the clone, finding its
configs inside the package, writing where it is told and nothing into the repo."""

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from eventseg.cli import COMMANDS
from test_train import ROOT, tiny_overrides


def repo_listing() -> set[str]:
    """What the clone holds at its top and in src/ (pip and setuptools write build/ and *.egg-info there)."""
    return {p.name for p in ROOT.iterdir()} | {f"src/{p.name}" for p in (ROOT / "src").iterdir()}


def build_wheel(tmp: Path) -> Path:
    """A wheel of a copy of the project: building writes next to the sources, so never in the clone."""
    project = tmp / "project"
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "--wheel-dir", str(tmp / "wheels"), str(project)], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (tmp / "wheels").glob("eventseg-*.whl")
    return wheel


def fresh_venv(tmp: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed and this environment's third-party packages
    visible through a .pth line: .pth files in a directory added that way are not processed, so the
    clone's editable eventseg (its own .pth finder) stays out."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # installed before the .pth exists, so pip never sees (nor touches) the editable install
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                                "--disable-pip-version-check", str(wheel)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_third_party.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


@pytest.mark.slow
def test_installed_eventseg_runs_from_another_folder(tmp_path):
    before = repo_listing()
    wheel = build_wheel(tmp_path)
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    configs = ROOT / "src" / "eventseg" / "configs"
    assert {f"eventseg/configs/{p.relative_to(configs).as_posix()}" for p in configs.rglob("*.yaml")} <= in_wheel

    venv = fresh_venv(tmp_path, wheel)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=work, env=env)

    found = run(venv / "bin" / "python", "-c", "import eventseg; print(eventseg.__file__)")
    assert found.returncode == 0 and found.stdout.strip().startswith(str(venv)), found.stdout + found.stderr

    eventseg = venv / "bin" / "eventseg"
    listed = run(eventseg, "--help")
    assert listed.returncode == 0 and all(f"  {name} " in listed.stdout for name in COMMANDS), listed.stdout
    unknown = run(eventseg, "bogus")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown command 'bogus'"), unknown.stderr

    made = run(eventseg, "synthetic", "n_customers=300", "seed=0", "out_dir=synthetic")  # relative: no chdir
    assert made.returncode == 0, made.stderr[-3000:]
    events = work / "synthetic" / "events.parquet"
    assert events.exists()

    pipeline = run(eventseg, "run", *tiny_overrides(work, events), "trainer.max_epochs=1",
                   f"labels.path={work / 'synthetic' / 'labels.parquet'}", "heads=logistic",
                   "cluster.stability.n_resamples=0")
    assert pipeline.returncode == 0, pipeline.stderr[-3000:]
    out = work / "run"
    assert (out / "run.json").exists()
    assert len(pd.read_parquet(out / "customers.parquet")) == pd.read_parquet(events).customer_id.nunique()

    scored = run(venv / "bin" / "python", "-m", "eventseg", "score", f"run_dir={out}", "data=events",
                 f"data.path={events}", f"paths.root_dir={work}")
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert (out / "scored" / "customers.parquet").exists()

    assert not (work / "outputs").exists()  # Hydra leaves no run folders behind
    assert repo_listing() == before
