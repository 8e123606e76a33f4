"""kdas_lite.metrics against pysodmetrics 1.6.2, a literal per-threshold loop, and hand values.

Tolerance: 1e-10 absolute for every measure on float maps. Known convention differences that
the comparisons account for explicitly:

- specificity is 0 wherever TP = 0 (PraNet ``Fmeasure_calu``); pysodmetrics gives TN/(TN+FP);
- pysodmetrics histograms ``floor(255·S)``; identical binary maps except within rounding of
  k/255, which random float maps never hit (8-bit maps are checked against the loop instead);
- the S-measure block split rounds a half-pixel centroid away from zero (MATLAB), pysodmetrics
  to even: fixtures below assert they are not at a tie, and the tie is tested on its own.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from kdas_lite.metrics import (
    CURVE_NAMES,
    METRIC_NAMES,
    THRESHOLDS,
    MetricAccumulator,
    batch_dice,
    evaluate_maps,
    s_measure,
    score_map,
    threshold_curves,
    weighted_f_measure,
)
from kdas_lite.metrics.structure import _matlab_centroid
from kdas_lite.metrics.thresholded import _n_thresholds_below

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import py_sod_metrics as sod

TOL = 1e-10


# ---------------------------------------------------------------------------------------------
# Fixtures: structured and random maps
# ---------------------------------------------------------------------------------------------
def _blob_pair(seed: int, h: int = 48, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """An elliptic polyp mask and a noisy, shifted soft prediction of it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.1, 0.3) * h, rng.uniform(0.1, 0.3) * w
    gt = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    dy, dx = rng.normal(0, 3, size=2)
    soft = np.exp(-(((yy - cy - dy) / ry) ** 2 + ((xx - cx - dx) / rx) ** 2) ** 2)
    pred = np.clip(0.85 * soft + 0.25 * rng.random((h, w)), 0, 1)
    return pred, gt


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    blob_p, blob_g = _blob_pair(0)
    h, w = blob_g.shape
    return {
        "blob": (blob_p, blob_g),
        "blob2": _blob_pair(1),
        "random": (rng.random((40, 30)), rng.random((40, 30)) > 0.6),
        "empty_gt": (blob_p, np.zeros((h, w), bool)),
        "full_gt": (blob_p, np.ones((h, w), bool)),
        "zero_pred": (np.zeros((h, w)), blob_g),
        "one_pred": (np.ones((h, w)), blob_g),
        "perfect": (blob_g.astype(float), blob_g),
        "low_pred": (0.4 * blob_p, blob_g),  # no pixel reaches the top thresholds: TP = 0 there
    }


CASES = _cases()


def _is_centroid_tie(gt: np.ndarray) -> bool:
    if not gt.any() or gt.all():
        return False
    rows, cols = np.nonzero(gt)
    return any((2 * np.sum(v)) % (2 * v.size) == v.size for v in (rows, cols))


def _sod_reference(pred: np.ndarray, gt: np.ndarray) -> dict:
    """The same measures from pysodmetrics (normalize=False: pred float in [0, 1], gt bool)."""
    sm, em, wfm, mae = sod.Smeasure(), sod.Emeasure(), sod.WeightedFmeasure(), sod.MAE()
    fm = sod.FmeasureV2({
        "Dic": sod.DICEHandler(with_dynamic=True, with_adaptive=False),
        "IoU": sod.IOUHandler(with_dynamic=True, with_adaptive=False),
        "Sen": sod.SensitivityHandler(with_dynamic=True, with_adaptive=False),
        "Spe": sod.SpecificityHandler(with_dynamic=True, with_adaptive=False),
    })
    for metric in (sm, em, wfm, mae, fm):
        metric.step(pred, gt, normalize=False)
    curves = {k: v["dynamic"] for k, v in fm.get_results().items()}
    curves["Em"] = em.get_results()["em"]["curve"]
    return {"Sm": sm.get_results()["sm"], "wFm": wfm.get_results()["wfm"],
            "MAE": mae.get_results()["mae"], "curves": curves}


def _loop_reference(pred: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
    """A literal transcription of the reference loop: binarise at each threshold, then count
    (``Fmeasure_calu``) and build the per-pixel enhanced-alignment matrix (``EnhancedMeasure``)."""
    eps = np.finfo(np.float64).eps
    g = gt.astype(np.float64)
    out = {name: np.zeros(256) for name in CURVE_NAMES}
    for j, t in enumerate(THRESHOLDS):
        m = (pred >= t).astype(np.float64)
        tp = np.sum(m * g)
        fn, fp = g.sum() - tp, m.sum() - tp
        tn = m.size - tp - fn - fp
        if tp > 0:
            out["Dic"][j] = 2 * tp / (g.sum() + m.sum())
            out["IoU"][j] = tp / (fn + m.sum())
            out["Sen"][j] = tp / g.sum()
            out["Spe"][j] = tn / (tn + fp) if tn + fp else 0.0  # MATLAB: NaN (no negatives)
        if g.sum() == 0:
            enhanced = 1 - m
        elif g.sum() == g.size:
            enhanced = m
        else:
            phi_m, phi_g = m - m.mean(), g - g.mean()
            align = 2 * phi_g * phi_m / (phi_g**2 + phi_m**2 + eps)
            enhanced = (align + 1) ** 2 / 4
        out["Em"][j] = enhanced.sum() / (g.size - 1 + eps)
    return out


# ---------------------------------------------------------------------------------------------
# Cross-checks
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(CASES))
def test_per_image_measures_match_pysodmetrics(case: str) -> None:
    pred, gt = CASES[case]
    assert not _is_centroid_tie(gt), "fixture must not sit on the S-measure rounding tie"
    ours, ref = score_map(pred, gt), _sod_reference(pred, gt)
    for name in ("Sm", "wFm", "MAE"):
        assert ours[name] == pytest.approx(ref[name], abs=TOL), name
    for name in ("Dic", "IoU", "Sen", "Em"):
        np.testing.assert_allclose(ours["curves"][name], ref["curves"][name], rtol=0, atol=TOL,
                                   err_msg=name)
    # Specificity: equal where there is a true positive, 0 (protocol) where there is none.
    tp = np.array([np.count_nonzero((pred >= t) & gt) for t in THRESHOLDS])
    np.testing.assert_allclose(ours["curves"]["Spe"][tp > 0], ref["curves"]["Spe"][tp > 0],
                               rtol=0, atol=TOL)
    assert np.all(ours["curves"]["Spe"][tp == 0] == 0)


def test_protocol_specificity_differs_from_pysodmetrics_where_tp_is_zero() -> None:
    pred, gt = CASES["low_pred"]
    ours, ref = score_map(pred, gt), _sod_reference(pred, gt)
    # thresholds above max(pred): nothing predicted, TN/(TN+FP) = 1, but the protocol says 0
    top = pred.max() < THRESHOLDS
    assert top.sum() > 100
    assert np.all(ref["curves"]["Spe"][top] == 1)
    assert np.all(ours["curves"]["Spe"][top] == 0)
    assert ours["meanSpe"] < ref["curves"]["Spe"].mean() - 0.3


def test_dataset_means_match_pysodmetrics() -> None:
    pairs = [_blob_pair(seed) for seed in (0, 1, 2, 3, 5, 6)]
    pairs += [CASES["random"], CASES["zero_pred"]]
    assert not any(_is_centroid_tie(g) for _, g in pairs)
    preds, gts = zip(*pairs, strict=True)
    ours = evaluate_maps(list(preds), list(gts))
    refs = [_sod_reference(p, g) for p, g in pairs]
    for name in ("Sm", "wFm", "MAE"):
        assert ours[name] == pytest.approx(np.mean([r[name] for r in refs]), abs=TOL)
    for curve, mean_key, max_key in (("Dic", "meanDic", "maxDic"), ("IoU", "meanIoU", "maxIoU"),
                                     ("Em", "meanEm", "maxEm")):
        column = np.mean([r["curves"][curve] for r in refs], axis=0)
        assert ours[mean_key] == pytest.approx(column.mean(), abs=TOL)
        assert ours[max_key] == pytest.approx(column.max(), abs=TOL)
    assert ours["meanSen"] == pytest.approx(
        np.mean([r["curves"]["Sen"] for r in refs]), abs=TOL)


@pytest.mark.parametrize("case", ["blob", "random", "empty_gt", "full_gt", "perfect"])
def test_curves_match_literal_loop_on_8bit_maps(case: str) -> None:
    """8-bit maps sit exactly on the thresholds k/255: the ``>=`` tie rule must match."""
    pred, gt = CASES[case]
    pred8 = np.round(pred * 255) / 255
    ours = threshold_curves(pred8, gt)
    ref = _loop_reference(pred8, gt)
    for name in CURVE_NAMES:
        np.testing.assert_allclose(ours[name], ref[name], rtol=0, atol=TOL, err_msg=name)


def test_threshold_index_is_exact_at_ties() -> None:
    ascending = THRESHOLDS[::-1]
    values = np.concatenate([
        ascending, np.nextafter(ascending, 2.0), np.nextafter(ascending, -1.0),
        np.arange(256) / 255, np.linspace(0, 1, 9973), [0.0, 1.0],
    ]).clip(0, 1)
    expected = np.searchsorted(ascending, values, side="right")
    np.testing.assert_array_equal(_n_thresholds_below(values), expected)


# ---------------------------------------------------------------------------------------------
# Hand-computed values and documented conventions
# ---------------------------------------------------------------------------------------------
def test_hand_computed_counts() -> None:
    pred = np.array([[0.9, 0.6], [0.3, 0.0]])
    gt = np.array([[True, False], [True, False]])
    curves = threshold_curves(pred, gt)
    j = int(np.argmin(np.abs(THRESHOLDS - 0.5)))  # t = 127/255 < 0.5: 0.9 and 0.6 on
    # TP = 1, FP = 1, FN = 1, TN = 1
    assert curves["Dic"][j] == pytest.approx(0.5)
    assert curves["IoU"][j] == pytest.approx(1 / 3)
    assert curves["Sen"][j] == pytest.approx(0.5)
    assert curves["Spe"][j] == pytest.approx(0.5)
    assert curves["Dic"][0] == 0  # t = 1: nothing on
    assert curves["Dic"][-1] == pytest.approx(2 * 2 / (2 + 4))  # t = 0: everything on
    assert score_map(pred, gt)["MAE"] == pytest.approx((0.1 + 0.6 + 0.7 + 0.0) / 4)


def test_perfect_binary_map() -> None:
    _, gt = CASES["blob"]
    scores = score_map(gt.astype(np.float32), gt)
    n, n_fg = gt.size, gt.sum()
    assert scores["maxDic"] == 1 and scores["maxIoU"] == 1
    # every threshold but t = 0 reproduces G; at t = 0 everything is foreground
    assert scores["meanDic"] == pytest.approx((255 + 2 * n_fg / (n_fg + n)) / 256)
    assert scores["Sm"] == pytest.approx(1, abs=1e-12)
    assert scores["wFm"] == pytest.approx(1, abs=1e-12)
    assert scores["MAE"] == 0
    assert scores["maxEm"] == pytest.approx(n / (n - 1))  # the N−1 denominator: just above 1
    assert scores["maxEm"] > 1


def test_empty_mask_conventions() -> None:
    pred, gt = CASES["empty_gt"]
    scores = score_map(pred, gt)
    for name in ("Dic", "IoU", "Sen", "Spe"):
        assert np.all(scores["curves"][name] == 0), name  # no TP ever: 0, also for empty pred
    assert scores["wFm"] == 0
    assert scores["Sm"] == pytest.approx(1 - pred.mean())
    assert scores["MAE"] == pytest.approx(pred.mean())
    n_pred = np.array([np.count_nonzero(pred >= t) for t in THRESHOLDS])
    np.testing.assert_allclose(scores["curves"]["Em"], (pred.size - n_pred) / (pred.size - 1))
    empty = score_map(np.zeros((4, 4)), np.zeros((4, 4), bool))
    assert empty["meanDic"] == 0 and empty["Sm"] == 1 and empty["MAE"] == 0


def test_matlab_centroid_rounds_half_away_from_zero() -> None:
    gt = np.zeros((8, 8), bool)
    gt[2:4, 5] = True  # 0-based rows 2, 3: 1-based mean 3.5 -> MATLAB round 4; column 6
    assert _matlab_centroid(gt, 2) == (4, 6)
    assert np.round(2.5) + 1 == 3  # pysodmetrics would split after row 3
    gt[2:5, 5] = True  # rows 2, 3, 4: 1-based mean 4, no tie
    assert _matlab_centroid(gt, 3) == (4, 6)


def test_s_measure_at_a_centroid_tie_uses_matlab_rounding() -> None:
    pred, gt = _blob_pair(4)  # this blob's centroid row is exactly k + 0.5 with k even
    assert _is_centroid_tie(gt)
    ref = sod.Smeasure()
    h, w = gt.shape
    y, x = _matlab_centroid(gt, int(gt.sum()))
    region = sum(
        ref.ssim(pred[r, c], gt[r, c]) * pred[r, c].size / gt.size
        for r in (slice(0, y), slice(y, h)) for c in (slice(0, x), slice(x, w))
    )
    matlab_split = 0.5 * ref.object(pred, gt) + 0.5 * region
    assert s_measure(pred, gt) == pytest.approx(matlab_split, abs=TOL)
    assert abs(s_measure(pred, gt) - ref.cal_sm(pred, gt)) > 1e-4  # pysodmetrics rounds to even


def test_zero_area_block_is_skipped() -> None:
    gt = np.zeros((6, 6), bool)
    gt[:, -1] = True  # centroid on the last column: the right blocks have no pixel
    pred = np.linspace(0, 1, 36).reshape(6, 6)
    value = s_measure(pred, gt)
    assert np.isfinite(value) and 0 <= value <= 1


def test_tensor_and_numpy_inputs_agree() -> None:
    pred, gt = CASES["blob"]
    from_numpy = score_map(pred, gt)
    from_torch = score_map(torch.from_numpy(pred).float()[None], torch.from_numpy(gt)[None, None])
    for name in METRIC_NAMES:
        assert from_torch[name] == pytest.approx(from_numpy[name], abs=1e-6), name
    assert weighted_f_measure(pred, gt.astype(np.uint8)) == pytest.approx(from_numpy["wFm"])


def test_evaluate_maps_keys_and_per_image() -> None:
    pairs = [_blob_pair(seed) for seed in range(3)]
    preds, gts = (list(x) for x in zip(*pairs, strict=True))
    summary = evaluate_maps(preds, gts)
    assert tuple(summary) == METRIC_NAMES
    assert all(isinstance(v, float) for v in summary.values())
    detailed = evaluate_maps(preds, gts, per_image=True)
    rows = detailed.pop("per_image")
    assert detailed == summary
    assert len(rows) == 3
    assert set(rows[0]) == {*METRIC_NAMES, "curves"}
    assert {k: v.shape for k, v in rows[0]["curves"].items()} == dict.fromkeys(CURVE_NAMES,
                                                                              (256,))
    assert summary["meanDic"] == pytest.approx(np.mean([r["meanDic"] for r in rows]))
    mean_curve = np.mean([r["curves"]["Dic"] for r in rows], axis=0)
    assert summary["maxDic"] == pytest.approx(mean_curve.max())
    assert summary["maxDic"] <= np.mean([r["maxDic"] for r in rows]) + 1e-12


def test_accumulator_streams_like_evaluate_maps() -> None:
    pairs = [_blob_pair(seed) for seed in range(3)]
    acc = MetricAccumulator()
    for pred, gt in pairs:
        acc.add(pred, gt)
    assert len(acc) == 3
    assert acc.result() == evaluate_maps(*(list(x) for x in zip(*pairs, strict=True)))


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
def test_size_mismatch_names_the_index() -> None:
    pred, gt = CASES["blob"]
    with pytest.raises(ValueError, match=r"preds\[1\] / gts\[1\].*\(48, 64\).*\(47, 64\)"):
        evaluate_maps([pred, pred], [gt, gt[1:]])


@pytest.mark.parametrize("bad", [1.5, -0.1, np.nan])
def test_prediction_outside_unit_interval(bad: float) -> None:
    pred, gt = CASES["blob"]
    pred = pred.copy()
    pred[3, 3] = bad
    with pytest.raises(ValueError, match=r"preds\[0\].*\[0, 1\]"):
        evaluate_maps([pred], [gt])


def test_other_bad_inputs() -> None:
    pred, gt = CASES["blob"]
    with pytest.raises(ValueError, match="2 predictions but 1 masks"):
        evaluate_maps([pred, pred], [gt])
    with pytest.raises(ValueError, match="no maps"):
        evaluate_maps([], [])
    with pytest.raises(ValueError, match="mask > 128"):
        score_map(pred, gt.astype(np.uint8) * 255)
    with pytest.raises(ValueError, match="divide 8-bit maps by 255"):
        score_map((pred * 255).astype(np.uint8), gt)
    with pytest.raises(ValueError, match="2-D"):
        score_map(np.stack([pred, pred]), np.stack([gt, gt]))


# ---------------------------------------------------------------------------------------------
# batch_dice (training validation)
# ---------------------------------------------------------------------------------------------
def test_batch_dice_values() -> None:
    masks = torch.zeros(3, 1, 4, 4)
    masks[0, 0, :2] = 1
    masks[1, 0, :2] = 1
    probs = torch.zeros(3, 1, 4, 4)
    probs[0, 0, :2] = 0.9  # perfect
    probs[1, 0, :1] = 0.5  # half the polyp, threshold inclusive: 2·4 / (4 + 8)
    # image 2: empty mask and empty prediction: 0 by the protocol convention
    dice = batch_dice(probs, masks)
    assert dice.shape == (3,) and dice.dtype == torch.float32
    torch.testing.assert_close(dice, torch.tensor([1.0, 2 * 4 / 12, 0.0]))


def test_batch_dice_matches_threshold_curve() -> None:
    pred, gt = CASES["blob"]
    t = THRESHOLDS[100]
    dice = batch_dice(torch.from_numpy(pred)[None, None], torch.from_numpy(gt).float()[None, None],
                      threshold=float(t))
    assert dice.item() == pytest.approx(threshold_curves(pred, gt)["Dic"][100], abs=1e-6)
    with pytest.raises(ValueError, match="differ"):
        batch_dice(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5))
