"""The evaluation code of main before issue 21 (commit f285df9), frozen: the baseline.

``benchmarks/bench_eval.py`` times it against today's :mod:`kdas_lite.metrics` and
:class:`~kdas_lite.data.PolypTestDataset`; ``tests/test_eval_speed.py`` checks that every
metric of the new code equals it to 1e-9 (real test sets and synthetic cases). Only the
per-image scoring is copied (verbatim); validation, averaging and the dataset-level results
are unchanged library code. Do not edit: this file is the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

THRESHOLDS: np.ndarray = np.linspace(1.0, 0.0, 256)
CURVE_NAMES: tuple[str, ...] = ("Dic", "IoU", "Sen", "Spe", "Em")

_EPS = float(np.finfo(np.float64).eps)  # MATLAB's eps
_ASCENDING = THRESHOLDS[::-1].copy()
_N_T = THRESHOLDS.size


# ---------------------------------------------------------------------------------------------
# Thresholded measures: Dice, IoU, Sen, Spe, E-measure at 256 thresholds
# ---------------------------------------------------------------------------------------------
def _n_thresholds_below(p: np.ndarray) -> np.ndarray:
    """For each value, the number of thresholds ``t`` with ``t ≤ p`` (0…256), flattened.

    Exactly ``np.searchsorted(ascending_thresholds, p, side="right")`` but ~10× faster: the
    thresholds are within one ulp of ``k/255``, so ``floor(255·p) + 1`` is right up to ±1 at
    ties, which two look-ups correct.
    """
    q = p.ravel()
    k = np.minimum((q * 255.0).astype(np.intp) + 1, _N_T)
    k += (k < _N_T) & (_ASCENDING[np.minimum(k, _N_T - 1)] <= q)
    k -= _ASCENDING[k - 1] > q
    return k


def _threshold_counts(p: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TP and FP at each threshold of :data:`THRESHOLDS` (pixels with ``S ≥ t``), int64 (256,).

    Pixel ``i`` is positive from threshold index ``j_i = 256 − #{t ≤ S_i}`` onwards (thresholds
    decrease with ``j``); histogramming ``j_i`` over foreground and background pixels and taking
    cumulative sums counts, for every ``j``, the positives among each.
    """
    first_on = _N_T - _n_thresholds_below(p)  # 0…255 (256 would mean "never", impossible)
    hist = np.bincount(first_on + (_N_T + 1) * g.ravel(), minlength=2 * (_N_T + 1))
    hist = hist.reshape(2, _N_T + 1)[:, :_N_T]
    fp, tp = np.cumsum(hist, axis=1)
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


# ---------------------------------------------------------------------------------------------
# S-measure (Fan et al., ICCV 2017)
# ---------------------------------------------------------------------------------------------
def _object_score(x: np.ndarray) -> float:
    """``O(x) = 2·x̄ / (x̄² + 1 + σ_x + eps)`` (σ with N−1, 0 for a single value)."""
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    return 2 * mean / (mean**2 + 1 + std + _EPS)


def _ssim(p: np.ndarray, g: np.ndarray) -> float:
    """The block score of S_r: SSIM without its stabilising constants."""
    n = p.size
    gf = g.astype(np.float64)
    x, y = p.mean(), gf.mean()
    dx, dy = p - x, gf - y
    var_x = np.sum(dx * dx) / (n - 1 + _EPS)
    var_y = np.sum(dy * dy) / (n - 1 + _EPS)
    cov = np.sum(dx * dy) / (n - 1 + _EPS)
    alpha = 4 * x * y * cov
    beta = (x**2 + y**2) * (var_x + var_y)
    if alpha != 0:
        return float(alpha / (beta + _EPS))
    return 1.0 if beta == 0 else 0.0


def _matlab_centroid(g: np.ndarray, n_fg: int) -> tuple[int, int]:
    """Foreground centroid as MATLAB's 1-based ``round`` (half away from zero): (rows, cols).

    The 1-based centroid is also the number of rows (columns) in the top (left) blocks.
    Integer sums keep the mean exact, so a half-pixel centroid is detected exactly.
    """
    h, w = g.shape
    row_sum = int(g.sum(axis=1) @ np.arange(1, h + 1))
    col_sum = int(g.sum(axis=0) @ np.arange(1, w + 1))
    return int(np.floor(row_sum / n_fg + 0.5)), int(np.floor(col_sum / n_fg + 0.5))


def _s_region(p: np.ndarray, g: np.ndarray) -> float:
    h, w = g.shape
    y, x = _matlab_centroid(g, int(np.count_nonzero(g)))
    score = 0.0
    for rows in (slice(0, y), slice(y, h)):
        for cols in (slice(0, x), slice(x, w)):
            block = g[rows, cols]
            if block.size:  # a zero-area block has weight 0 (MATLAB would give NaN)
                score += _ssim(p[rows, cols], block) * block.size / g.size
    return score


def _s_measure(p: np.ndarray, g: np.ndarray, alpha: float = 0.5) -> float:
    mu = np.count_nonzero(g) / g.size
    if mu == 0:
        return float(1 - p.mean())
    if mu == 1:
        return float(p.mean())
    s_object = mu * _object_score(p[g]) + (1 - mu) * _object_score(1 - p[~g])
    return max(0.0, alpha * s_object + (1 - alpha) * _s_region(p, g))


# ---------------------------------------------------------------------------------------------
# Weighted F-measure (Margolin et al., CVPR 2014)
# ---------------------------------------------------------------------------------------------
def _weighted_f_measure(p: np.ndarray, g: np.ndarray, beta2: float = 1.0) -> float:
    n_fg = np.count_nonzero(g)
    if n_fg == 0:
        return 0.0
    h, w = g.shape
    error = np.abs(p - g)
    # Coordinates of the nearest foreground pixel of every pixel (MATLAB's bwdist index). A
    # foreground pixel is its own nearest, so gathering E there gives E_t everywhere.
    near_r, near_c = ndimage.distance_transform_edt(~g, return_distances=False,
                                                    return_indices=True)
    error_t = np.take(error, near_r * w + near_c)
    dr = near_r - np.arange(h, dtype=near_r.dtype)[:, None]
    dc = near_c - np.arange(w, dtype=near_c.dtype)
    dist = np.sqrt(dr * dr + dc * dc)  # Euclidean distance to G (0 inside G)
    # fspecial('gaussian', 7, 5) + imfilter (zero padding), as a separable filter.
    error_a = ndimage.gaussian_filter(error_t, sigma=5.0, radius=3, mode="constant", cval=0.0)
    min_error = np.where(g & (error_a < error), error_a, error)
    importance = 2.0 - np.exp(np.log(0.5) / 5.0 * dist)  # exactly 1 inside G (d = 0)
    error_w = min_error * importance
    error_fg = np.sum(error_w, where=g)
    tp_w = n_fg - error_fg
    fp_w = np.sum(error_w, where=~g)
    recall = 1 - error_fg / n_fg
    precision = tp_w / (_EPS + tp_w + fp_w)
    return float((1 + beta2) * recall * precision / (_EPS + recall + beta2 * precision))


# ---------------------------------------------------------------------------------------------
# Per image, per dataset
# ---------------------------------------------------------------------------------------------
def score(p: np.ndarray, g: np.ndarray) -> dict[str, Any]:
    """Every measure of one image as the old ``metrics._score``: ``p`` float64 (H, W) in
    [0, 1], ``g`` bool (H, W)."""
    curves = _curves(p, g)
    dic, iou, sen, spe, em = curves
    return {
        "meanDic": float(dic.mean()), "meanIoU": float(iou.mean()),
        "maxDic": float(dic.max()), "maxIoU": float(iou.max()),
        "wFm": _weighted_f_measure(p, g), "Sm": _s_measure(p, g),
        "meanEm": float(em.mean()), "maxEm": float(em.max()),
        "MAE": float(np.abs(p - g).mean()),
        "meanSen": float(sen.mean()), "meanSpe": float(spe.mean()),
        "curves": dict(zip(CURVE_NAMES, curves, strict=True)),
    }
