"""Paired statistics of a comparison: per-user metric values of a model against a baseline.

A comparison pairs test user ``u`` under seed ``s`` of a model with the same user and seed of the
baseline (pooled over seeds), so the test sees the per-user variance, not only the handful of
per-seed means. Everything here is pure numpy/scipy on arrays; nothing trains.
"""

import numpy as np

#: The paired tests on offer, by their ``--test`` name, with the name the table prints.
TESTS = {"wilcoxon": "Wilcoxon signed-rank test", "ttest": "paired t-test"}


def paired_p_value(values, baseline, test="wilcoxon"):
    """Two-sided p-value of the paired ``test`` of ``values`` against ``baseline`` (same length,
    pair i with pair i). No non-zero difference at all means no evidence: p = 1."""
    from scipy import stats

    values, baseline = _paired(values, baseline)
    differences = values - baseline
    if not np.any(differences != 0):
        return 1.0
    if test == "wilcoxon":
        return float(stats.wilcoxon(values, baseline, zero_method="wilcox", alternative="two-sided").pvalue)
    if test == "ttest":
        if np.all(differences == differences[0]):  # a constant shift: zero variance, certain
            return 0.0
        return float(stats.ttest_rel(values, baseline).pvalue)
    raise ValueError(f"--test={test}: the paired tests are {', '.join(TESTS)}")


def relative_change(values, baseline):
    """(mean(values) - mean(baseline)) / mean(baseline); None when the baseline's mean is 0."""
    values, baseline = _paired(values, baseline)
    base = float(baseline.mean())
    return None if base == 0 else (float(values.mean()) - base) / base


def bootstrap_change_ci(values, baseline, resamples=2000, level=0.95, seed=0, chunk_elements=4_000_000):
    """Percentile bootstrap interval of :func:`relative_change`, resampling the pairs (a user and
    seed keeps its two values together). Vectorised over resamples, in chunks that bound memory."""
    values, baseline = _paired(values, baseline)
    n = len(values)
    rng = np.random.default_rng(seed)
    changes = np.empty(resamples)
    per_chunk = max(1, chunk_elements // max(n, 1))
    for start in range(0, resamples, per_chunk):
        stop = min(resamples, start + per_chunk)
        index = rng.integers(0, n, size=(stop - start, n))
        base = baseline[index].mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            changes[start:stop] = (values[index].mean(axis=1) - base) / base
    changes = changes[np.isfinite(changes)]
    if len(changes) == 0:
        return None
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(changes, [tail, 1.0 - tail])
    return [float(low), float(high)]


def compare_paired(values, baseline, test="wilcoxon", resamples=2000, seed=0):
    """p-value, relative change and its bootstrap interval in one dict (the json's fields)."""
    return {
        "p_value": paired_p_value(values, baseline, test),
        "change": relative_change(values, baseline),
        "change_ci": bootstrap_change_ci(values, baseline, resamples=resamples, seed=seed),
    }


def align_users(users, values, base_users, base_values):
    """Pair two runs' per-user arrays by user token (the evaluation order may differ between
    models). Returns the two value arrays in one order, or None when the users differ."""
    users, base_users = np.asarray(users), np.asarray(base_users)
    if len(users) != len(base_users):
        return None
    order, base_order = np.argsort(users, kind="stable"), np.argsort(base_users, kind="stable")
    if not np.array_equal(users[order], base_users[base_order]):
        return None
    return np.asarray(values)[order], np.asarray(base_values)[base_order]


def mean_std(values):
    """Mean and sample standard deviation (None for fewer than two values)."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    array = np.asarray(values, dtype=float)
    return float(array.mean()), (float(array.std(ddof=1)) if len(array) > 1 else None)


def _paired(values, baseline):
    values, baseline = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if values.shape != baseline.shape or values.ndim != 1 or len(values) == 0:
        raise ValueError(f"paired values need two non-empty 1-d arrays of one length, got {values.shape} and {baseline.shape}")
    return values, baseline
