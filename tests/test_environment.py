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
