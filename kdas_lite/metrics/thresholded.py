"""Thresholded measures: Dice, IoU, sensitivity, specificity and E-measure at 256 thresholds.

The map is binarised at each of the :data:`THRESHOLDS` (``M_t = [S ≥ t]``), as PraNet's MATLAB
toolbox does (``Fmeasure_calu``, Fan et al., MICCAI 2020); the E-measure is Fan et al.'s
(IJCAI 2018). One histogram of each pixel's *level* split by the mask, summed from the top,
gives TP and FP at all 256 thresholds at once, and every curve is a closed-form function of
``(TP, FP, |G|, N)`` (:func:`_curves_from_counts`). The formulas and the protocol's convention
(every count-based score is 0 without a true positive) are in the :mod:`kdas_lite.metrics`
docstring.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from kdas_lite.metrics._common import _EPS, CURVE_NAMES, THRESHOLDS, _check_pair

_ASCENDING = THRESHOLDS[::-1].copy()
_N_T = THRESHOLDS.size

_BUCKET_SHIFT = 43  # a float64's sign, exponent and 9 top mantissa bits
_BUCKET_LOW = 0x3F7 << 9  # the bucket of 2^-8, just below the first threshold above 0 (1/255)


def _threshold_table() -> tuple[np.ndarray, np.ndarray]:
    """Look-up tables from the top bits of a float64 in [0, 1] to its level (float64 maps).

    The bit pattern of a non-negative float64 grows with its value, so ``bits >> 43`` splits
    [2^-8, 1] into buckets each narrower than the gap between two thresholds (relative width
    2^-9 < 1/255): a bucket holds at most one threshold, and every value below 2^-8 passes
    only ``t = 0``, as the first bucket's values do. Per bucket the tables keep
    ``#{t ≤ bucket start} − 1`` and the bit pattern of the threshold inside the bucket (the
    largest int64 if none), so one comparison finishes the exact count.
    """
    ascending = _ASCENDING.view(np.int64)
    n_buckets = (int(np.float64(1.0).view(np.int64)) >> _BUCKET_SHIFT) - _BUCKET_LOW + 1
    starts = (np.arange(n_buckets, dtype=np.int64) + _BUCKET_LOW) << _BUCKET_SHIFT
    ends = starts + (1 << _BUCKET_SHIFT)
    below = np.searchsorted(ascending, starts, side="right")  # thresholds ≤ the bucket start
    following = ascending[np.minimum(below, _N_T - 1)]
    inside = (below < _N_T) & (following < ends)
    after = ascending[np.minimum(below + 1, _N_T - 1)]
    assert below[0] == 1 and not np.any(inside & (below + 1 < _N_T) & (after < ends))
    return (below - 1).astype(np.uint8), np.where(inside, following, np.iinfo(np.int64).max)


_LEVEL, _TAU = _threshold_table()


def _levels(p: np.ndarray) -> np.ndarray:
    """The *level* of each value of ``p`` (in [0, 1]): ``#{t ∈ THRESHOLDS : t ≤ p} − 1``, an
    integer 0…255, as a C-ordered uint8 array of the shape of ``p``.

    - float32 ``p``: ``floor(255·p)``, exactly. The product is exact in float64 (24 × 8 bits),
      and a float32 is never within 10^-12 of a ``k/255`` other than 0 and 1 (for ``p ≥ 2^-8``
      ``255·p − k`` is a multiple of 2^-31; below 2^-8 < 1/255 the level is 0), while each
      threshold is within 10^-16 of its ``k/255``: the floor counts the thresholds ``≤ p``.
    - float64 ``p`` (any value, ties at a threshold included): two table look-ups and one
      comparison on the bit pattern (:func:`_threshold_table`); −0.0 has a negative pattern
      and lands in the first bucket, as +0.0 does.
    """
    if p.dtype == np.float32:
        return np.multiply(p, 255.0, dtype=np.float64, order="C").astype(np.uint8)
    bits = np.ascontiguousarray(p, dtype=np.float64).view(np.int64)
    bucket = bits >> _BUCKET_SHIFT
    bucket -= _BUCKET_LOW
    np.clip(bucket, 0, _LEVEL.size - 1, out=bucket)
    levels = _LEVEL[bucket]
    levels += bits >= _TAU[bucket]
    return levels


def _n_thresholds_below(p: np.ndarray) -> np.ndarray:
    """For each value, the number of thresholds ``t`` with ``t ≤ p`` (1…256), flattened."""
    return _levels(np.asarray(p)).ravel().astype(np.intp) + 1


def _threshold_counts(p: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TP and FP at each threshold of :data:`THRESHOLDS` (pixels with ``S ≥ t``), int64 (256,).

    Pixel ``i`` is positive at ``THRESHOLDS[j] = t`` iff at least ``256 − j`` thresholds are
    ``≤ S_i``, i.e. iff its level (:func:`_levels`) is ``≥ 255 − j``: histogramming the levels
    over the background and over the foreground (one 256 × 2 histogram) and summing them from
    the top level down counts, for every ``j``, the positives among each. The levels fit in a
    byte, so OpenCV's ``calcHist`` counts them (exact: float32 holds integers below 2^24).
    """
    fg = np.ascontiguousarray(g).view(np.uint8)
    hist = cv2.calcHist([_levels(p), fg], [0, 1], None, [_N_T, 2], [0, _N_T, 0, 2])
    fp, tp = np.cumsum(hist[::-1].astype(np.int64), axis=0).T  # columns: background, G
    return tp, fp


def _safe_ratio(num: np.ndarray, den: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(num, den, valid).shape)
    np.divide(num, den, out=out, where=valid & (den != 0))
    return out


def _enhanced_alignment(phi_m: np.ndarray, phi_g: np.ndarray) -> np.ndarray:
    """``(ξ + 1)² / 4`` with the alignment ``ξ = 2·φ_G·φ_M / (φ_G² + φ_M² + eps)``."""
    xi = 2 * phi_m * phi_g / (phi_m**2 + phi_g**2 + _EPS)
    return (xi + 1) ** 2 / 4


def _curves_from_counts(tp: np.ndarray, fp: np.ndarray, n_fg: np.ndarray,
                        n: np.ndarray) -> np.ndarray:
    """All five curves from the confusion counts; shapes broadcast, result ``(..., 5, 256)``.

    Args:
        tp, fp: ``(..., 256)`` true/false positives per threshold.
        n_fg, n: ``(..., 1)`` foreground and total pixel counts of each image.
    """
    tp = tp.astype(np.float64)
    fp = fp.astype(np.float64)
    fn = n_fg - tp
    tn = n - n_fg - fp
    hit = tp > 0  # protocol: every count-based score is 0 without a true positive
    dic = _safe_ratio(2 * tp, 2 * tp + fp + fn, hit)
    iou = _safe_ratio(tp, tp + fp + fn, hit)
    sen = _safe_ratio(tp, tp + fn, hit)
    spe = _safe_ratio(tn, tn + fp, hit)

    # E-measure: the centred binary map takes 1 − μ_M on predicted pixels and −μ_M elsewhere,
    # the centred mask 1 − μ_G and −μ_G, so each confusion cell has a single alignment value.
    n_pred = tp + fp
    mu_m, mu_g = n_pred / n, n_fg / n
    on_m, off_m, on_g, off_g = 1 - mu_m, -mu_m, 1 - mu_g, -mu_g
    enhanced_sum = (tp * _enhanced_alignment(on_m, on_g) + fp * _enhanced_alignment(on_m, off_g)
                    + fn * _enhanced_alignment(off_m, on_g)
                    + tn * _enhanced_alignment(off_m, off_g))
    enhanced_sum = np.where(n_fg == 0, n - n_pred, np.where(n_fg == n, n_pred, enhanced_sum))
    em = enhanced_sum / (n - 1 + _EPS)
    return np.stack([dic, iou, sen, spe, em], axis=-2)


def _curves(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    tp, fp = _threshold_counts(p, g)
    n_fg = np.array([np.count_nonzero(g)], dtype=np.float64)
    n = np.array([g.size], dtype=np.float64)
    return _curves_from_counts(tp, fp, n_fg, n)


def threshold_curves(pred: Any, gt: Any) -> dict[str, np.ndarray]:
    """The Dic, IoU, Sen, Spe and Em curves of one map over :data:`THRESHOLDS`.

    Args:
        pred: ``(H, W)`` soft map in [0, 1] (numpy array or tensor).
        gt: ``(H, W)`` boolean (or 0/1) mask.

    Returns:
        ``{name: float64 array (256,)}`` for each name of :data:`CURVE_NAMES`; entry ``j`` is the
        score of the binary map ``pred ≥ THRESHOLDS[j]``.
    """
    curves = _curves(*_check_pair(pred, gt, keep_float32=True))
    return dict(zip(CURVE_NAMES, curves, strict=True))
