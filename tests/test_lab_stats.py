"""kdas_lite.lab_stats: Holm by hand, the paired and equivalence tests against t-table values,
the smallest detectable effect, the block bootstrap's shape and coverage, distinct pooling,
and the sweep trend test of kdas_lite.lab_results."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kdas_lite.lab_results import trend_per_seed, trend_tests
from kdas_lite.lab_stats import (
    block_bootstrap,
    distinct_mean,
    distinct_sets,
    family,
    frame_order,
    holm,
    paired_test,
    smallest_detectable_effect,
)


def test_holm_by_hand() -> None:
    # p sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → running
    # max 0.02, 0.03, 0.06, 0.06; returned in the input order.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # Holm (1979)-style textbook case: five p-values, m = 5.
    assert holm([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([0.02]) == [0.02] and holm([]) == []


def test_paired_t_test_against_the_t_table() -> None:
    # 1, 2, 3: mean 2, sd 1, t = 2/(1/√3) = 3.464 on 2 df: two-sided p = 0.0742 (table);
    # half width t_{0.975,2}·1/√3 = 4.303/√3.
    t = paired_test([1.0, 2.0, 3.0])
    assert t.p == pytest.approx(0.07418, abs=1e-4) and t.n == 3 and t.sd == pytest.approx(1)
    assert t.lo == pytest.approx(2 - 4.3027 / math.sqrt(3), abs=1e-3)
    assert t.verdict.startswith("no measurable difference (smallest detectable effect")
    assert paired_test([0.5]).p is None and paired_test([0.5]).verdict == "not tested (1 seed)"
    with pytest.raises(ValueError, match="at least one"):
        paired_test([])


def test_equivalence_test_by_hand() -> None:
    # 0.01, 0, −0.01: mean 0, se 0.01/√3; against ±0.02 each one-sided t = 0.02/se = 3.464 on
    # 2 df: p = 0.0371 (half the two-sided 0.0742): equivalent within ±0.020.
    t = paired_test([0.01, 0.0, -0.01])
    assert t.p_tost == pytest.approx(0.0371, abs=1e-4)
    assert t.verdict == "equivalent within ±0.020"
    # the (1 − α) control of 2026-12-01 (×0.5): +0.006 ± 0.022 over 3 seeds is not
    wide = paired_test([0.02, -0.02, 0.018])
    assert wide.p_tost > 0.05 and wide.verdict.startswith("no measurable difference")


def test_smallest_detectable_effect_by_hand() -> None:
    # n = 3, sd = 1, α = 0.05, 80 % power: (t_{0.975,2} + t_{0.8,2})/√3 = (4.303 + 1.061)/√3
    assert smallest_detectable_effect(1.0, 3) == pytest.approx(5.3638 / math.sqrt(3), abs=1e-3)
    # it scales with sd and shrinks with n; a stricter level asks for more
    assert smallest_detectable_effect(2.0, 3) == pytest.approx(2 * smallest_detectable_effect(1, 3))
    assert smallest_detectable_effect(1.0, 10) < smallest_detectable_effect(1.0, 3)
    assert smallest_detectable_effect(1.0, 5, alpha=0.005) > smallest_detectable_effect(1.0, 5)
    assert smallest_detectable_effect(1.0, 1) == math.inf


def test_family_adjusts_and_the_verdict_follows_the_adjusted_p() -> None:
    # 0.03, 0.04, 0.05: p = 0.0132, below 0.05 alone, but not after Holm in a family of ten
    strong = paired_test([0.03, 0.04, 0.05])
    assert strong.p < 0.05 and strong.verdict == "above"
    tests = {k: paired_test([0.03, 0.04, 0.05]) for k in range(10)}
    adjusted = family("lab", tests)
    assert all(t.p_holm == pytest.approx(min(1.0, 10 * strong.p)) for t in adjusted.values())
    assert all(t.sign == 0 and t.verdict.startswith("no measurable") for t in adjusted.values())
    assert adjusted[0].family == "lab" and adjusted[0].family_size == 10
    # the smallest detectable effect is then the one at α/10
    assert adjusted[0].sde == pytest.approx(smallest_detectable_effect(0.01, 3, 0.005))
    assert adjusted[0].to_json()["verdict"] == adjusted[0].verdict
    one_seed = family("x", {"a": paired_test([0.1]), "b": paired_test([0.1, 0.2, 0.3])})
    assert one_seed["a"].family is None and one_seed["b"].family_size == 1


def test_frame_order_is_numeric_then_by_name() -> None:
    assert [["1", "10", "2", "b", "a"][k] for k in frame_order(["1", "10", "2", "b", "a"])] \
        == ["1", "2", "10", "a", "b"]


def test_block_bootstrap_shape_and_degenerate_cases() -> None:
    mean, lo, hi = block_bootstrap([np.full(30, 0.2), np.full(5, -0.1)], block=25, n_boot=50)
    assert mean == pytest.approx((30 * 0.2 - 0.5) / 35) and lo == pytest.approx(mean)
    assert hi == pytest.approx(mean)  # constant within each set: no spread
    x = np.arange(10.0)
    mean, lo, hi = block_bootstrap([x], block=10, n_boot=200)  # whole-set rotations
    assert lo == pytest.approx(4.5) and hi == pytest.approx(4.5)
    _, lo1, hi1 = block_bootstrap([x], block=1, n_boot=2000, seed=3)
    assert lo1 < 4.5 < hi1


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    e = rng.normal(0, 1, n)
    x = np.empty(n)
    x[0] = e[0] / math.sqrt(1 - phi**2)
    for k in range(1, n):
        x[k] = phi * x[k - 1] + e[k]
    return x


def test_block_bootstrap_covers_the_mean_of_correlated_frames_where_images_do_not() -> None:
    # 380 "frames" with lag-1 autocorrelation 0.6 and mean 0 (like CVC-ColonDB's per-frame Δ,
    # more strongly correlated): the image-by-image bootstrap is too narrow and misses 0 far
    # more often than 5 %; blocks of 25 frames come close to the nominal 95 %.
    rng = np.random.default_rng(0)
    covered = {1: 0, 25: 0}
    widths: dict[int, list[float]] = {1: [], 25: []}
    trials = 150
    for k in range(trials):
        x = _ar1(rng, 380, 0.6)
        for block in covered:
            _, lo, hi = block_bootstrap([x], block=block, n_boot=400, seed=k)
            covered[block] += lo <= 0.0 <= hi
            widths[block].append(hi - lo)
    assert covered[1] / trials < 0.80
    assert covered[25] / trials > 0.85
    assert np.mean(widths[25]) > 1.5 * np.mean(widths[1])


def test_distinct_pooling_counts_cvc300_once() -> None:
    sets = ["Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "CVC-300", "ETIS-LaribPolypDB"]
    assert distinct_sets(sets) == ["Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB"]
    assert distinct_sets(["Kvasir", "CVC-300"]) == ["Kvasir", "CVC-300"]  # no ColonDB: kept
    sizes = {"Kvasir": 100, "CVC-ClinicDB": 62, "CVC-ColonDB": 380, "CVC-300": 60,
             "ETIS-LaribPolypDB": 20}
    assert sum(sizes[s] for s in distinct_sets(sets)) == 562
    mdice = {"Kvasir": 0.6, "CVC-ClinicDB": 0.5, "CVC-ColonDB": 0.4, "CVC-300": 0.9,
             "ETIS-LaribPolypDB": 0.1, "avg": 123.0}
    expected = (100 * 0.6 + 62 * 0.5 + 380 * 0.4 + 20 * 0.1) / 562  # CVC-300 not again
    assert distinct_mean(mdice, sizes) == pytest.approx(expected)


def test_trend_is_a_paired_test_of_the_largest_minus_the_smallest_budget() -> None:
    def delta(values: list[float]) -> dict:
        return {"delta_vs_alone": {"Kvasir": {"per_seed": {str(s): v
                                                           for s, v in enumerate(values)}}}}
    sweep = {"budgets": {"6": {"cwd": delta([0.04, 0.05, 0.045])},
                         "12": {"cwd": delta([0.0, 0.02, -0.02])},
                         "24": {"cwd": delta([-0.03, -0.035, -0.04])}}}
    assert trend_per_seed(sweep, "cwd", "Kvasir") == pytest.approx(
        {"0": -0.07, "1": -0.085, "2": -0.085})
    tests = trend_tests(sweep)
    t = tests[("cwd", "Kvasir")]
    assert t.mean == pytest.approx(-0.08) and t.family == "sweep trends"
    assert t.p == pytest.approx(paired_test([-0.07, -0.085, -0.085]).p)
    assert t.verdict == "below"
    # the signs at the two ends need not both be significant for the trend to be
    flat = {"budgets": {"6": {"cwd": delta([0.01, 0.0, 0.005])},
                        "24": {"cwd": delta([0.012, -0.001, 0.004])}}}
    assert trend_tests(flat)[("cwd", "Kvasir")].sign == 0
