"""recbole_ext.stats: the paired test, relative change and its bootstrap interval."""

import numpy as np
import pytest

from recbole_ext import stats


def _users(n=600, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 0.3, size=n) * (rng.uniform(size=n) < 0.6)  # many zero users, like NDCG


def test_identical_arrays_have_p_one_and_no_change():
    base = _users()
    for test in stats.TESTS:
        assert stats.paired_p_value(base, base.copy(), test) == 1.0
    assert stats.relative_change(base, base) == 0.0
    assert stats.bootstrap_change_ci(base, base) == [0.0, 0.0]


def test_a_planted_shift_is_significant_and_a_null_one_is_not():
    rng = np.random.default_rng(1)
    base = _users()
    shifted = base + rng.uniform(0.0, 0.04, size=len(base))  # every user better: +~15%
    noise = base + rng.normal(0.0, 0.02, size=len(base))  # no shift, only noise
    for test in stats.TESTS:
        assert stats.paired_p_value(shifted, base, test) < 1e-6
        assert stats.paired_p_value(noise, base, test) > 0.01
    # the direction does not matter for a two-sided test
    assert stats.paired_p_value(base, shifted) == pytest.approx(stats.paired_p_value(shifted, base))


def test_bootstrap_interval_covers_the_true_change_and_is_seeded():
    rng = np.random.default_rng(2)
    true_change = 0.2
    hits = 0
    for trial in range(20):
        base = rng.uniform(0.0, 1.0, size=400)
        values = base * (1 + true_change) + rng.normal(0.0, 0.1, size=400)  # E[values]/E[base] - 1 = 0.2
        low, high = stats.bootstrap_change_ci(values, base, resamples=500, seed=trial)
        assert low < stats.relative_change(values, base) < high
        hits += low <= true_change <= high
    assert hits >= 16  # a 95% interval: about 19 of 20
    base = _users()
    values = base * 1.1
    assert stats.bootstrap_change_ci(values, base, seed=3) == stats.bootstrap_change_ci(values, base, seed=3)
    assert stats.bootstrap_change_ci(values, base, seed=3) != stats.bootstrap_change_ci(values + 0.01, base, seed=3)
    # chunking changes the memory bound, not the draws' distribution: same interval width scale
    small_chunks = stats.bootstrap_change_ci(values + rng.normal(0, 0.01, len(base)), base, seed=4, chunk_elements=1000)
    assert small_chunks[0] < 0.1 < small_chunks[1]


def test_users_are_paired_by_token_not_position():
    values, base = stats.align_users(["b", "a", "c"], [2.0, 1.0, 3.0], ["a", "b", "c"], [10.0, 20.0, 30.0])
    assert values.tolist() == [1.0, 2.0, 3.0] and base.tolist() == [10.0, 20.0, 30.0]
    assert stats.align_users(["a", "b"], [1, 2], ["a", "c"], [1, 2]) is None
    with pytest.raises(ValueError, match="one length"):
        stats.relative_change([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="--test=sign"):
        stats.paired_p_value([1.0, 2.0], [2.0, 1.0], "sign")
