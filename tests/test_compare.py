import numpy as np
import pytest

from ur4rec.eval.compare import ndcg_at, paired_difference, t_quantile


def test_ndcg_from_ranks() -> None:
    assert ndcg_at(np.array([0, 1, 9, 10])).tolist() == pytest.approx(
        [1.0, 1 / np.log2(3), 1 / np.log2(11), 0.0]
    )


def test_a_clear_difference_is_found_and_noise_is_not() -> None:
    rng = np.random.default_rng(1)
    base = rng.random((5, 2000))
    better = base + 0.05 + rng.normal(0, 0.01, base.shape)
    result = paired_difference(better, base)
    assert result.mean == pytest.approx(0.05, abs=0.002)
    assert 0.04 < result.users_low < result.mean < result.users_high < 0.06
    assert result.seeds_low < result.mean < result.seeds_high
    assert result.seeds_better == 5 and "better in 5/5 seeds" in str(result)
    noise = paired_difference(base + rng.normal(0, 0.2, base.shape), base)
    assert noise.users_low < 0 < noise.users_high


def test_one_seed_has_no_seed_interval_and_shapes_must_match() -> None:
    result = paired_difference(np.ones(10), np.zeros(10))
    assert result.seeds_low is None and result.mean == 1.0 and "seeds:" not in str(result)
    with pytest.raises(ValueError, match="equal"):
        paired_difference(np.ones((2, 3)), np.ones((3, 3)))
    assert t_quantile(9) == pytest.approx(2.262) and t_quantile(12) == pytest.approx(2.228)
