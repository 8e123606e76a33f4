"""Property-based tests of kdas_lite.metrics on small random maps (≤ 32×32)."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kdas_lite.metrics import (
    CURVE_NAMES,
    THRESHOLDS,
    evaluate_maps,
    score_map,
)
from kdas_lite.metrics.thresholded import _n_thresholds_below

SETTINGS = settings(max_examples=40, deadline=None)
shapes = st.tuples(st.integers(2, 32), st.integers(2, 32))


@st.composite
def pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A soft map in [0, 1] (often 8-bit valued, to hit threshold ties) and a binary mask."""
    shape = draw(shapes)
    values = st.floats(0, 1, allow_nan=False, allow_subnormal=False)
    pred = draw(arrays(np.float64, shape, elements=values))
    if draw(st.booleans()):
        pred = np.round(pred * 255) / 255
    gt = draw(arrays(np.bool_, shape))
    return pred, gt


@SETTINGS
@given(pairs())
def test_every_measure_in_range(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, gt = pair
    s = score_map(pred, gt)
    for name in ("Dic", "IoU", "Sen", "Spe"):
        curve = s["curves"][name]
        assert np.all((curve >= 0) & (curve <= 1)), name
    n = gt.size
    assert np.all((s["curves"]["Em"] >= 0) & (s["curves"]["Em"] <= n / (n - 1) + 1e-12))
    for name in ("Sm", "wFm", "MAE", "meanDic", "maxDic", "meanIoU", "maxIoU", "meanSen",
                 "meanSpe"):
        assert 0 <= s[name] <= 1, name
    assert s["meanIoU"] <= s["meanDic"] + 1e-12  # IoU = Dice / (2 − Dice) ≤ Dice


@SETTINGS
@given(pairs())
def test_perfect_prediction(pair: tuple[np.ndarray, np.ndarray]) -> None:
    _, gt = pair
    assume(gt.any())
    s = score_map(gt.astype(np.float64), gt)
    assert s["maxDic"] == 1 and s["maxIoU"] == 1
    assert s["MAE"] == 0
    # Sm = 1 up to the formula's eps terms: a block holding a single foreground pixel has a
    # tiny SSIM denominator β, and Q = α / (β + eps) = 1 − O(eps / β)
    assert abs(s["Sm"] - 1) < 1e-6
    assert abs(s["wFm"] - 1) < 1e-9
    n, n_fg = gt.size, gt.sum()
    assert np.isclose(s["meanDic"], (255 + 2 * n_fg / (n_fg + n)) / 256)


@SETTINGS
@given(pairs())
def test_empty_mask_convention(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, gt = pair
    s = score_map(pred, np.zeros_like(gt))
    for name in ("Dic", "IoU", "Sen", "Spe"):
        assert np.all(s["curves"][name] == 0), name
    assert s["wFm"] == 0
    assert np.isclose(s["Sm"], 1 - pred.mean())
    assert np.isclose(s["MAE"], pred.mean())


@SETTINGS
@given(pairs())
def test_sensitivity_grows_as_the_threshold_falls(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, gt = pair
    assume(gt.any())
    sen = score_map(pred, gt)["curves"]["Sen"]
    assert np.all(np.diff(sen) >= 0)  # THRESHOLDS decrease along the curve
    assert sen[-1] == 1  # t = 0 switches every pixel on


@SETTINGS
@given(pairs())
def test_transpose_invariance(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, gt = pair
    a, b = score_map(pred, gt), score_map(pred.T, gt.T)
    for name in CURVE_NAMES:
        np.testing.assert_allclose(a["curves"][name], b["curves"][name], atol=1e-12)
    assert np.isclose(a["Sm"], b["Sm"], atol=1e-12)
    assert np.isclose(a["MAE"], b["MAE"], atol=1e-12)


@SETTINGS
@given(st.lists(pairs(), min_size=1, max_size=4))
def test_dataset_mean_is_mean_of_images(batch: list[tuple[np.ndarray, np.ndarray]]) -> None:
    preds, gts = (list(x) for x in zip(*batch, strict=True))
    result = evaluate_maps(preds, gts, per_image=True)
    for name in ("meanDic", "meanIoU", "meanEm", "meanSen", "meanSpe", "Sm", "wFm", "MAE"):
        assert np.isclose(result[name], np.mean([r[name] for r in result["per_image"]])), name
    for name in ("maxDic", "maxIoU", "maxEm"):
        assert result[name] <= np.mean([r[name] for r in result["per_image"]]) + 1e-12


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(1, 64), elements=st.floats(0, 1, allow_nan=False)))
def test_threshold_index_equals_searchsorted(values: np.ndarray) -> None:
    ascending = THRESHOLDS[::-1]
    tied = np.concatenate([values, np.round(values * 255) / 255])
    np.testing.assert_array_equal(_n_thresholds_below(tied),
                                  np.searchsorted(ascending, tied, side="right"))
