"""The standard polyp-segmentation evaluation protocol (PraNet / UACANet / Polyp-PVT / KDAS).

Every number in the polyp papers' tables comes from the same recipe, first published with
PraNet's MATLAB toolbox (``eval/main.m``, Fan et al., MICCAI 2020) and ported to Python by
UACANet (``utils/eval_functions.py``). This module re-implements it, vectorised.

Use :func:`evaluate_maps` for a list of maps (or :class:`MetricAccumulator` to stream them),
:func:`score_map` / :func:`threshold_curves` / :func:`s_measure` / :func:`weighted_f_measure`
for one image, and :func:`batch_dice` for the quick Dice that training validates with.
:mod:`kdas_lite.evaluate` runs a model over the test sets and calls this module.

Inputs
------
For each test image, a **soft prediction map** ``S`` ∈ [0, 1]^{H×W} (the model's probability
map, already resized to the mask's original size H×W) and the **ground-truth mask**
``G`` ∈ {0, 1}^{H×W}. ``N = H·W`` pixels, ``|G|`` foreground pixels.

Thresholded measures (256 thresholds)
-------------------------------------
The map is binarised at each of the 256 thresholds ``t ∈ THRESHOLDS = linspace(1, 0, 256)``
(1, 254/255, …, 1/255, 0) as ``M_t = [S ≥ t]``. With the confusion counts
``TP = |M_t ∩ G|``, ``FP = |M_t \\ G|``, ``FN = |G \\ M_t|``, ``TN = N − TP − FP − FN``:

- Dice          ``Dic(t) = 2·TP / (2·TP + FP + FN)``
- IoU           ``IoU(t) = TP / (TP + FP + FN)``
- sensitivity   ``Sen(t) = TP / (TP + FN)``
- specificity   ``Spe(t) = TN / (TN + FP)``
- E-measure (Fan et al., IJCAI 2018). Centre the binary map and the mask on their means,
  ``φ_M = M_t − mean(M_t)``, ``φ_G = G − mean(G)``; per pixel the *alignment*
  ``ξ = 2·φ_G·φ_M / (φ_G² + φ_M² + eps)`` and the *enhanced alignment*
  ``(ξ + 1)² / 4``; then ``Em(t) = Σ_pixels (ξ + 1)²/4 / (N − 1 + eps)``.
  (``|G| = 0``: the enhanced matrix is ``1 − M_t``; ``|G| = N``: it is ``M_t``.)

**Protocol convention** (``Fmeasure_calu``): when ``TP = 0`` *all four* of Dic, IoU, Sen and
**Spe** are 0 — specificity included, although ``TN / (TN + FP)`` may be close to 1 there.

No loop over thresholds is needed: a pixel is positive at threshold ``t_j`` iff ``S ≥ t_j``,
so one histogram of "first threshold at which each pixel turns on" split by ``G``, followed by
a cumulative sum, gives TP and FP at all 256 thresholds at once; every curve above is then a
closed-form function of ``(TP, FP, |G|, N)`` — E-measure included, because a binary map and a
binary mask take only four value pairs (one per confusion cell).

Per dataset the curves are averaged over the images (one curve per measure), and

    meanDic = mean_t(mean_images Dic(t)),   maxDic = max_t(mean_images Dic(t))

and likewise meanIoU/maxIoU, meanEm/maxEm, meanSen, meanSpe. Note that the dataset *max* is the
maximum of the averaged curve (one threshold for the whole dataset), not the average of
per-image maxima. The thresholds include ``t = 0`` where every pixel is positive, so even a
perfect binary map has ``meanDic = (255 + 2|G|/(|G| + N)) / 256 < 1`` (its ``maxDic`` is 1).

Threshold-free measures
-----------------------
- **MAE** ``= (1/N) Σ |S − G|``.
- **S-measure** (Fan et al., ICCV 2017), ``Sm = α·S_o + (1 − α)·S_r`` with ``α = 0.5``,
  clipped at 0; ``Sm = 1 − mean(S)`` if ``|G| = 0`` and ``mean(S)`` if ``|G| = N``.

  * object score: for a set of values ``x``, ``O(x) = 2·x̄ / (x̄² + 1 + σ_x + eps)``
    (``σ`` the sample standard deviation, N−1 normalised as MATLAB's ``std``);
    ``S_o = μ·O(S[G]) + (1 − μ)·O(1 − S[¬G])`` with ``μ = |G|/N``.
  * region score: split the image at the foreground centroid ``(X, Y)`` (1-based, MATLAB
    ``round``) into four blocks; per block an SSIM-like score
    ``Q = 4·x̄·ȳ·σ_xy / ((x̄² + ȳ²)(σ_x² + σ_y²) + eps)`` (1 if numerator and denominator are
    both 0, 0 if only the numerator is), weighted by the block's share of the area.
- **weighted F-measure** wFm (Margolin et al., CVPR 2014), β² = 1:

  * ``E = |S − G|``; background pixels take the error of their nearest foreground pixel
    (Euclidean distance transform), giving ``E_t``;
  * ``E_A = E_t ⊛ K`` with ``K`` the 7×7 Gaussian of σ = 5 (MATLAB ``fspecial``), zero
    padding; inside ``G`` the error becomes ``min(E, E_A)`` (pixel *dependency*);
  * background errors are weighted by ``B = 2 − exp(ln(0.5)/5 · d)`` with ``d`` the distance to
    ``G`` (pixel *importance*): ``E_w = min(E, E_A)·B``;
  * ``TP_w = |G| − Σ_G E_w``, ``FP_w = Σ_{¬G} E_w``, ``R_w = 1 − mean_G(E_w)``,
    ``P_w = TP_w / (eps + TP_w + FP_w)``, ``wFm = (1 + β²)·R_w·P_w / (eps + R_w + β²·P_w)``.

``eps`` is MATLAB's ``eps`` = 2.2204e-16 everywhere, as in the reference code.

Conventions and known differences
---------------------------------
- **Ties.** ``≥`` is used at every threshold, for E-measure too, as in UACANet's port and in
  pysodmetrics. PraNet's original ``main.m`` binarises the E-measure map with ``>`` (only there);
  the two differ only for pixels *exactly* equal to a threshold — common for 8-bit PNG maps
  (values k/255), essentially absent for the float maps :mod:`kdas_lite.evaluate` scores.
- **Float vs 8-bit maps.** The reference pipelines save maps as 8-bit PNGs and re-read them;
  we score float maps directly. pysodmetrics quantises ``floor(255·S)`` before histogramming,
  which gives the same binary maps except for values within rounding error of ``k/255``.
- **S-measure.** The block split uses MATLAB's rounding (half away from zero); pysodmetrics'
  ``np.round`` rounds halves to even, so the two differ when the foreground centroid lies
  exactly on a half pixel. UACANet's port uses the population std (``ddof=0``) in the object
  score and splits without MATLAB's +1 offset; we follow the MATLAB original. A block of zero
  area (centroid on the last row/column) contributes 0 instead of MATLAB's NaN.
- **wFm.** The separable Gaussian filter equals MATLAB's 7×7 ``imfilter`` up to rounding; when
  several foreground pixels are equally near a background pixel, we take the one SciPy's
  feature transform takes (smallest column, then smallest row), and MATLAB's ``bwdist`` may
  pick another. ``B`` counts as 2 from ``d = 200`` on (``2 − B ≤ 2^-40`` there; wFm moves by
  less than 10^-12 of itself). UACANet's port pads with ``nearest`` instead of zeros; we
  follow MATLAB. ``wFm = 0`` for an empty mask (pysodmetrics' convention; MATLAB gives NaN).
- **Empty mask, empty prediction.** With ``|G| = 0`` there is never a true positive, so Dice,
  IoU, Sen and Spe are 0 at every threshold (no "1 for empty vs empty"); Sm = 1 − mean(S),
  Em(t) = (pixels predicted background) / (N − 1), MAE = mean(S), wFm = 0. The five public
  test sets have no empty masks. With ``|G| = N`` (no negatives) Spe is 0 (MATLAB: NaN).
- **Em range.** Because of the ``N − 1`` denominator a perfect map scores up to
  ``N / (N − 1)``, slightly above 1; all other measures lie in [0, 1].

Cross-check: ``tests/test_metrics.py`` compares every measure with pysodmetrics 1.6.2 (and the
threshold curves with a literal per-threshold loop); they agree to 1e-10 on float maps once the
conventions above are accounted for. See ``docs/bench/metrics.md`` for speed, and
``docs/bench/eval.md`` for the faster wFm, the threads and the test-set cache (issue 21; every
score equals the earlier code's to 1e-9, ``tests/test_eval_speed.py``).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "CURVE_NAMES",
    "METRIC_NAMES",
    "THRESHOLDS",
    "MetricAccumulator",
    "batch_dice",
    "default_workers",
    "evaluate_maps",
    "s_measure",
    "score_map",
    "threshold_curves",
    "weighted_f_measure",
]

#: The 256 binarisation thresholds, in the reference order (1 → 0).
THRESHOLDS: np.ndarray = np.linspace(1.0, 0.0, 256)
THRESHOLDS.setflags(write=False)
#: Dataset-level metrics, in table order.
METRIC_NAMES: tuple[str, ...] = (
    "meanDic", "meanIoU", "maxDic", "maxIoU", "wFm", "Sm",
    "meanEm", "maxEm", "MAE", "meanSen", "meanSpe",
)
#: The per-threshold curves, each of length 256 and aligned with :data:`THRESHOLDS`.
CURVE_NAMES: tuple[str, ...] = ("Dic", "IoU", "Sen", "Spe", "Em")

_EPS = float(np.finfo(np.float64).eps)  # MATLAB's eps
_ASCENDING = THRESHOLDS[::-1].copy()
_N_T = THRESHOLDS.size


# ---------------------------------------------------------------------------------------------
# Input checking
# ---------------------------------------------------------------------------------------------
def _to_2d(x: Any, what: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor (torch is not imported here)
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    while x.ndim > 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D map (H, W), got shape {x.shape}")
    return x


def _check_pair(pred: Any, gt: Any, label: str = "",
                keep_float32: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Validate one (prediction, mask) pair; return ``S`` and bool ``G``, both (H, W).

    ``S`` is float64, or the float32 input itself with ``keep_float32`` (what the scoring code
    asks for: it reads float32 maps directly and converts only what needs float64; every
    float32 is exactly a float64, so the scores do not depend on it). The default, float64, is
    what the frozen code of ``benchmarks/eval_baseline.py`` reads.
    """
    where = f"{label}: " if label else ""
    p = _to_2d(pred, f"{where}prediction")
    g = _to_2d(gt, f"{where}mask")
    if p.shape != g.shape:
        raise ValueError(
            f"{where}prediction has shape {p.shape} but the mask has shape {g.shape}; resize "
            "the prediction to the mask's original size (bilinear) before scoring"
        )
    if p.size < 2:
        raise ValueError(f"{where}maps need at least 2 pixels, got shape {p.shape}")
    if g.dtype != np.bool_:
        if not np.isin(g, (0, 1)).all():
            raise ValueError(
                f"{where}the mask must be boolean (or 0/1), got values in "
                f"[{g.min()}, {g.max()}]; binarise it first, e.g. mask > 128 for 8-bit masks"
            )
        g = g.astype(bool)
    lo, hi = float(p.min()), float(p.max())  # on the input: float32 maps read half the bytes
    if not (keep_float32 and p.dtype == np.float32):
        p = p.astype(np.float64, copy=False)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0):
        raise ValueError(
            f"{where}prediction values must lie in [0, 1] (probabilities), got [{lo}, {hi}]; "
            "apply sigmoid to logits, or divide 8-bit maps by 255"
        )
    return p, g


def _sum(p: np.ndarray) -> float:
    """``Σ p`` in float64 (pairwise), for float32 and float64 maps alike."""
    return float(np.sum(p, dtype=np.float64))


# ---------------------------------------------------------------------------------------------
# Thresholded measures: Dice, IoU, Sen, Spe, E-measure at 256 thresholds
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# S-measure (Fan et al., ICCV 2017)
# ---------------------------------------------------------------------------------------------
def _object_score(mean: float, std: float) -> float:
    """``O(x) = 2·x̄ / (x̄² + 1 + σ_x + eps)`` from the mean and (N−1) std of the values."""
    return 2 * mean / (mean**2 + 1 + std + _EPS)


def _row_col_counts(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground pixels in each row ``(H,)`` and each column ``(W,)`` of ``g``, int64."""
    u8 = g.view(np.uint8)
    return (cv2.reduce(u8, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[:, 0].astype(np.int64),
            cv2.reduce(u8, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[0].astype(np.int64))


def _matlab_centroid(g: np.ndarray, n_fg: int) -> tuple[int, int]:
    """Foreground centroid as MATLAB's 1-based ``round`` (half away from zero): (rows, cols).

    The 1-based centroid is also the number of rows (columns) in the top (left) blocks.
    Integer sums keep the mean exact, so a half-pixel centroid is detected exactly.
    """
    h, w = g.shape
    per_row, per_col = _row_col_counts(g)
    row_sum = int(per_row @ np.arange(1, h + 1))
    col_sum = int(per_col @ np.arange(1, w + 1))
    return int(np.floor(row_sum / n_fg + 0.5)), int(np.floor(col_sum / n_fg + 0.5))


#: A cell's one-pass variance is recomputed in two passes below this share of its mean square.
_ILL_CONDITIONED = 1e-3


class _Moments:
    """Count ``n``, mean and ``m2 = Σ(S − mean)²`` of the map in each of the four blocks of the
    S-measure's split (top-left, top-right, bottom-left, bottom-right) and each class
    (0: background, 1: foreground): three ``(4, 2)`` float64 arrays, plus ``blocks``.

    The map is split into ``S·G`` and ``S·(1 − G)`` (exact), and OpenCV sums each block of
    each in one vectorised pass, ``Σ S`` (``sumElems``) and ``Σ S²`` (``norm``, NORM_L2SQR),
    both in float64, float32 maps included; then ``m2 = Σ S² − mean·Σ S``. That one-pass
    variance loses digits when σ is tiny next to the mean (a nearly constant cell): below
    :data:`_ILL_CONDITIONED` of ``Σ S²`` the cell is recomputed in two passes (mean, then
    ``Σ(S − mean)²``).

    Every other statistic of the S-measure and MAE follows from these cells, without another
    pass over the pixels (merging cells is Chan et al.'s pairwise update: the spread of the
    cells' means around the pooled mean is added, all terms non-negative).
    """

    def __init__(self, p: np.ndarray, g: np.ndarray, y: int, x: int) -> None:
        h, w = g.shape
        self.blocks = [(rows, cols) for rows in (slice(0, y), slice(y, h))
                       for cols in (slice(0, x), slice(x, w))]
        on_fg = p * g  # S on G, 0 elsewhere (same dtype as S)
        split = (p - on_fg, on_fg)
        self.n, self.mean, self.m2 = np.zeros((4, 2)), np.zeros((4, 2)), np.zeros((4, 2))
        for b, block in enumerate(self.blocks):
            n_fg = np.count_nonzero(g[block])
            for c, count in enumerate((g[block].size - n_fg, n_fg)):
                if count == 0:
                    continue
                total = cv2.sumElems(split[c][block])[0]
                squares = cv2.norm(split[c][block], cv2.NORM_L2SQR)
                mean = total / count
                m2 = squares - mean * total
                if m2 < _ILL_CONDITIONED * squares:
                    values = p[block][g[block] == c].astype(np.float64)
                    mean = float(values.mean())
                    values -= mean
                    m2 = float(np.einsum("i,i->", values, values))
                self.n[b, c], self.mean[b, c], self.m2[b, c] = count, mean, m2

    def pooled(self, c: int) -> tuple[float, float]:
        """Mean and sample σ (N−1; 0 for one pixel) of class ``c`` over the whole image."""
        n, mean, m2 = self.n[:, c], self.mean[:, c], self.m2[:, c]
        total = n.sum()
        pooled_mean = float(np.dot(n, mean) / total)
        if total < 2:
            return pooled_mean, 0.0
        spread = float(np.sum(m2) + np.dot(n, (mean - pooled_mean) ** 2))
        return pooled_mean, float(np.sqrt(spread / (total - 1)))


def _ssim_direct(p: np.ndarray, g: np.ndarray) -> float:
    """The block score of S_r computed directly from the pixels (float64 ``p``): SSIM without
    its stabilising constants, ``Q = 4·x̄·ȳ·σ_xy / ((x̄² + ȳ²)(σ_x² + σ_y²) + eps)``; 1 if
    numerator and denominator are both 0, 0 if only the numerator is."""
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


def _s_region(p: np.ndarray, g: np.ndarray, cells: _Moments) -> float:
    """Region score: each block's ``Q`` from its two cells, weighted by its share of the area.

    With ``n_0, n_1`` background/foreground pixels of a block, ``m_0, m_1`` their means and
    ``n = n_0 + n_1``: ``x̄ = (n_0·m_0 + n_1·m_1)/n``, ``ȳ = n_1/n``,
    ``Σ(x − x̄)² = m2_0 + m2_1 + n_0·n_1·(m_1 − m_0)²/n``,
    ``Σ(y − ȳ)² = n_1·(1 − ȳ)² + n_0·ȳ²`` and ``Σ(x − x̄)(y − ȳ) = n_0·n_1·(m_1 − m_0)/n``.
    A block with a single class (``σ_xy`` is exactly 0, so ``Q`` is 0 or 1 depending on
    whether ``σ_x²`` is exactly 0) is scored directly (:func:`_ssim_direct`), as before.
    """
    score = 0.0
    p64 = None
    for b, block in enumerate(cells.blocks):
        (n0, n1), (m0, m1), (v0, v1) = cells.n[b], cells.mean[b], cells.m2[b]
        n = n0 + n1
        if n == 0:  # a zero-area block has weight 0 (MATLAB would give NaN)
            continue
        if n0 == 0 or n1 == 0:
            if p64 is None:
                p64 = p.astype(np.float64, copy=False)
            q = _ssim_direct(p64[block], g[block])
        else:
            x, y = (n0 * m0 + n1 * m1) / n, n1 / n
            var_x = (v0 + v1 + n0 * n1 * (m1 - m0) ** 2 / n) / (n - 1 + _EPS)
            var_y = (n1 * (1 - y) ** 2 + n0 * y**2) / (n - 1 + _EPS)
            cov = n0 * n1 * (m1 - m0) / n / (n - 1 + _EPS)
            q = 4 * x * y * cov / ((x**2 + y**2) * (var_x + var_y) + _EPS)
        score += q * n / g.size
    return score


def _s_measure(p: np.ndarray, g: np.ndarray, alpha: float = 0.5,
               cells: _Moments | None = None) -> float:
    """Sm of a checked pair; ``cells`` are its :class:`_Moments` when the caller has them."""
    n_fg = np.count_nonzero(g)
    if n_fg == 0:
        return 1 - _sum(p) / p.size
    if n_fg == g.size:
        return _sum(p) / p.size
    if cells is None:
        cells = _Moments(p, g, *_matlab_centroid(g, n_fg))
    mu = n_fg / g.size
    mean_fg, std_fg = cells.pooled(1)
    mean_bg, std_bg = cells.pooled(0)  # the object score of 1 − S: mean 1 − x̄, same σ
    s_object = (mu * _object_score(mean_fg, std_fg)
                + (1 - mu) * _object_score(1 - mean_bg, std_bg))
    return max(0.0, alpha * s_object + (1 - alpha) * _s_region(p, g, cells))


def s_measure(pred: Any, gt: Any, alpha: float = 0.5) -> float:
    """Structure measure ``Sm = α·S_o + (1 − α)·S_r`` of one map (Fan et al., ICCV 2017).

    Args:
        pred: ``(H, W)`` soft map in [0, 1].
        gt: ``(H, W)`` boolean (or 0/1) mask.
        alpha: weight of the object score (0.5 in every polyp paper).

    Returns:
        Sm in [0, 1]; see the module docstring for the formulas and the empty-mask cases.
    """
    return _s_measure(*_check_pair(pred, gt, keep_float32=True), alpha=alpha)


# ---------------------------------------------------------------------------------------------
# Weighted F-measure (Margolin et al., CVPR 2014)
# ---------------------------------------------------------------------------------------------
#: Pixel importance ``B = 2 − exp(ln(0.5)/5 · d)`` by squared distance ``n = d²`` (an integer
#: on the pixel grid), up to ``d = 200``. From there on ``2 − B ≤ 2^-40`` and ``B`` counts as 2
#: (the last entry; the earlier code's ``B`` rounds to 2.0 only from ``d = 266``): as every
#: background pixel weighs ``B(1) > 1.1``, this moves ``FP_w`` by at most 2^-40 of itself, and
#: wFm by less than 10^-12 of itself. Entry 0 (``d = 0``: the pixel is in G) is 0 instead of 1,
#: so that ``Σ S·B[n]`` sums the background.
_IMPORTANCE_RADIUS = 200
_IMPORTANCE = 2.0 - np.exp(np.log(0.5) / 5.0 * np.sqrt(np.arange(_IMPORTANCE_RADIUS**2 + 1.0)))
_IMPORTANCE[0] = 0.0
assert 2.0 - _IMPORTANCE[-1] < 1e-12
_IMPORTANCE[-1] = 2.0
_IMPORTANCE.setflags(write=False)
#: ``fspecial('gaussian', 7, 5)`` as the separable 1-D kernel (scipy's ``gaussian_filter``).
_GAUSS = np.exp(-0.5 * np.arange(-3.0, 4.0) ** 2 / 25.0)
_GAUSS /= _GAUSS.sum()


#: Offsets ``(dr, dc)`` to the 60 pixels at most √18 away, nearest first; at equal distance
#: by column offset, then row offset (the tie order of SciPy's feature transform). A
#: background pixel within 3 (Chebyshev) of G has a foreground pixel at most 3·√2 away, so the
#: first of these offsets that lands in G gives its nearest foreground pixel.
_NEAR_DR, _NEAR_DC = np.array(sorted(
    ((dr, dc) for dr in range(-4, 5) for dc in range(-4, 5) if 0 < dr * dr + dc * dc <= 18),
    key=lambda o: (o[0] ** 2 + o[1] ** 2, o[1], o[0]))).T
_BAND_KERNEL = np.ones((7, 7), np.uint8)
_PAD = 4  # margin that keeps every offset inside the array


def _propagate_error(error: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``E_t``, the error of the nearest foreground pixel, where the 7×7 kernel reads it.

    At a foreground pixel ``E_t = E``; at a background pixel within 3 (Chebyshev) of G,
    ``E_t`` is ``E`` at its nearest foreground pixel (Euclidean): the first offset of
    ``(_NEAR_DR, _NEAR_DC)`` that lands in G. Among equally near foreground pixels this is the
    one with the smallest column, then the smallest row, as SciPy's feature transform (MATLAB's
    ``bwdist`` index, which the earlier code used) picks it; tested equal on masks full of
    ties. Elsewhere ``E_t = 0``: no foreground pixel's 7×7 window reaches it, and the margin
    is the zero padding outside the image.

    Args:
        error: ``(h, w)`` float64 ``E = |S − G|``, with a margin of ``_PAD`` pixels (zeros)
            outside the image on every side.
        g: ``(h, w)`` bool mask, with the same margin (False).
    """
    g_u8 = g.view(np.uint8)
    band = cv2.dilate(g_u8, _BAND_KERNEL)
    band -= g_u8  # background pixels within 3 of G
    band[:_PAD] = band[-_PAD:] = 0  # the margin is outside the image
    band[:, :_PAD] = band[:, -_PAD:] = 0
    pixels = np.flatnonzero(band)
    offsets = _NEAR_DR * g.shape[1] + _NEAR_DC  # (60,) in the flattened array
    candidates = pixels + offsets[:, None]  # (60, band pixels)
    first = g.ravel()[candidates].argmax(axis=0)  # the first offset that lands in G
    error_t = np.where(g, error, 0.0)
    error_t.ravel()[pixels] = error.ravel()[pixels + offsets[first]]
    return error_t


def _weighted_f_measure(p: np.ndarray, g: np.ndarray, beta2: float = 1.0) -> float:
    """wFm in two parts that need different pixels.

    - *Inside G* the error is ``min(E, E_A)``, and ``E_A`` (7×7 kernel) reads ``E_t`` at most 3
      pixels from G: both are computed on the box around G grown by 3 pixels (with a zero
      margin, the filter's padding), ``E_t`` by :func:`_propagate_error` and ``E_A`` by
      OpenCV's separable filter (equal to SciPy's up to rounding).
    - *Outside G* the error is ``S`` itself, weighted by ``B(d)``. ``B`` counts as 2 from
      ``d = 200`` on (:data:`_IMPORTANCE`), so only the box around G grown by 200 pixels needs
      distances: there OpenCV's exact Euclidean distance (float32, so ``d²`` is recovered
      exactly by rounding: ``d² < 2^22``) indexes the table; the rest of the image adds
      ``2·Σ S``.
    """
    n_fg = np.count_nonzero(g)
    if n_fg == 0:
        return 0.0
    h, w = g.shape
    rows, cols = (np.flatnonzero(counts) for counts in _row_col_counts(g))

    def grown(r: int) -> tuple[slice, slice]:  # the box around G grown by r pixels
        return (slice(max(rows[0] - r, 0), min(rows[-1] + r + 1, h)),
                slice(max(cols[0] - r, 0), min(cols[-1] + r + 1, w)))

    box = grown(3)
    g_box = np.pad(g[box], _PAD)
    error = np.zeros(g_box.shape)  # E = |S − G| in float64, whatever the map's dtype
    inner = error[_PAD:-_PAD, _PAD:-_PAD]
    inner[...] = p[box]
    inner -= g[box]
    np.abs(inner, out=inner)
    error_a = cv2.sepFilter2D(_propagate_error(error, g_box), cv2.CV_64F, _GAUSS, _GAUSS,
                              borderType=cv2.BORDER_CONSTANT)
    error_fg = float(np.sum(np.minimum(error, error_a), where=g_box))

    top, left = grown(_IMPORTANCE_RADIUS)
    dist = cv2.distanceTransform(np.logical_not(g[top, left]).view(np.uint8), cv2.DIST_L2,
                                 cv2.DIST_MASK_PRECISE)
    np.minimum(dist, _IMPORTANCE_RADIUS, out=dist)
    squared = cv2.multiply(dist, dist, dtype=cv2.CV_32S)  # rounded to the nearest integer
    importance = np.take(_IMPORTANCE, squared)  # B(d), 0 inside G
    near = np.einsum("ij,ij->", importance, p[top, left], dtype=np.float64)
    far = (_sum(p[:top.start]) + _sum(p[top.stop:])  # pixels over 200 from G: B = 2
           + _sum(p[top, :left.start]) + _sum(p[top, left.stop:]))
    fp_w = float(near) + 2.0 * far
    tp_w = n_fg - error_fg
    recall = 1 - error_fg / n_fg
    precision = tp_w / (_EPS + tp_w + fp_w)
    return float((1 + beta2) * recall * precision / (_EPS + recall + beta2 * precision))


def weighted_f_measure(pred: Any, gt: Any, beta2: float = 1.0) -> float:
    """Weighted F-measure ``F^w_β`` of one map (Margolin et al., CVPR 2014), β² = 1.

    Args:
        pred: ``(H, W)`` soft map in [0, 1].
        gt: ``(H, W)`` boolean (or 0/1) mask.
        beta2: β², the weight of recall (1 in the polyp protocol).

    Returns:
        wFm in [0, 1]; 0 for an empty mask.
    """
    return _weighted_f_measure(*_check_pair(pred, gt, keep_float32=True), beta2=beta2)


# ---------------------------------------------------------------------------------------------
# Per image, per dataset
# ---------------------------------------------------------------------------------------------
def _score(p: np.ndarray, g: np.ndarray) -> dict[str, Any]:
    curves = _curves(p, g)
    dic, iou, sen, spe, em = curves
    n_fg = np.count_nonzero(g)
    if 0 < n_fg < g.size:
        cells = _Moments(p, g, *_matlab_centroid(g, n_fg))
        # MAE = (Σ_{¬G} S + Σ_G (1 − S)) / N, from the cells the S-measure needs anyway.
        mae = float(np.dot(cells.n[:, 0], cells.mean[:, 0])
                    + np.dot(cells.n[:, 1], 1 - cells.mean[:, 1])) / g.size
    else:
        cells, mean = None, _sum(p) / p.size
        mae = mean if n_fg == 0 else 1 - mean
    return {
        "meanDic": float(dic.mean()), "meanIoU": float(iou.mean()),
        "maxDic": float(dic.max()), "maxIoU": float(iou.max()),
        "wFm": _weighted_f_measure(p, g), "Sm": _s_measure(p, g, cells=cells),
        "meanEm": float(em.mean()), "maxEm": float(em.max()),
        "MAE": mae,
        "meanSen": float(sen.mean()), "meanSpe": float(spe.mean()),
        "curves": dict(zip(CURVE_NAMES, curves, strict=True)),
    }


def score_map(pred: Any, gt: Any) -> dict[str, Any]:
    """Every protocol measure for one image.

    Args:
        pred: ``(H, W)`` soft map in [0, 1] (numpy array or tensor; leading 1-dims allowed).
        gt: ``(H, W)`` boolean (or 0/1) mask of the same size.

    Returns:
        The keys of :data:`METRIC_NAMES` (floats; ``meanX``/``maxX`` are the mean/max of this
        image's own curve) and ``"curves"``: ``{name: array (256,)}`` for :data:`CURVE_NAMES`.
    """
    return _score(*_check_pair(pred, gt, keep_float32=True))


def default_workers() -> int:
    """The CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class MetricAccumulator:
    """Scores images one at a time and averages them as the protocol does.

    Only the five 256-point curves and three scalars are kept per image, so a whole test set
    never has to sit in memory (``kdas_lite.evaluate`` streams predictions through it).

    With ``workers > 1`` :meth:`submit` scores in that many threads (NumPy and OpenCV release
    the GIL in the per-pixel work) while the caller goes on, e.g. with the next
    forward pass; at most ``2·workers`` pairs wait at a time, so memory stays bounded. The
    results do not depend on ``workers``: images are averaged in the order they were added.

    Example::

        acc = MetricAccumulator()
        for pred, gt in pairs:
            acc.add(pred, gt)
        acc.result()["meanDic"]
    """

    def __init__(self, workers: int = 1) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers
        self._images: list[dict[str, Any] | Future[dict[str, Any]]] = []
        self._pending: deque[Future[dict[str, Any]]] = deque()
        self._pool: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return len(self._images)

    def add(self, pred: Any, gt: Any, label: str = "") -> dict[str, Any]:
        """Score one pair now (see :func:`score_map`); ``label`` names it in error messages."""
        scores = _score(*_check_pair(pred, gt, label, keep_float32=True))
        self._images.append(scores)
        return scores

    def submit(self, pred: Any, gt: Any, label: str = "") -> None:
        """Queue one pair: checked now (errors name ``label``), scored in a worker thread
        (in this thread when ``workers == 1``); :meth:`result` waits for all of them."""
        p, g = _check_pair(pred, gt, label, keep_float32=True)
        if self.workers == 1:
            self._images.append(_score(p, g))
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="kdas-metrics")
        while len(self._pending) >= 2 * self.workers:
            self._pending.popleft().result()
        future = self._pool.submit(_score, p, g)
        self._pending.append(future)
        self._images.append(future)

    def close(self) -> None:
        """Drop the queued pairs not yet scored and end the worker threads (after an error)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        self._images = [im for im in self._images if isinstance(im, dict) or
                        (im.done() and not im.cancelled() and im.exception() is None)]
        self._pending.clear()

    def _collect(self) -> list[dict[str, Any]]:
        """Every image's scores, waiting for the queued ones; the worker threads end here."""
        self._images = [im if isinstance(im, dict) else im.result() for im in self._images]
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        return self._images  # type: ignore[return-value]

    def result(self, per_image: bool = False) -> dict[str, Any]:
        """Dataset means, keys exactly :data:`METRIC_NAMES` (+ ``"per_image"`` if asked).

        ``meanX``/``maxX`` are the mean/max over thresholds of the image-averaged curve;
        wFm, Sm and MAE are plain means over images.
        """
        images = self._collect()
        if not images:
            raise ValueError("no maps to score: add at least one (prediction, mask) pair")
        curves = np.mean([[im["curves"][c] for c in CURVE_NAMES] for im in images], axis=0)
        dic, iou, sen, spe, em = curves
        scalar = {k: float(np.mean([im[k] for im in images])) for k in ("wFm", "Sm", "MAE")}
        out: dict[str, Any] = {
            "meanDic": float(dic.mean()), "meanIoU": float(iou.mean()),
            "maxDic": float(dic.max()), "maxIoU": float(iou.max()),
            "wFm": scalar["wFm"], "Sm": scalar["Sm"],
            "meanEm": float(em.mean()), "maxEm": float(em.max()),
            "MAE": scalar["MAE"], "meanSen": float(sen.mean()), "meanSpe": float(spe.mean()),
        }
        if per_image:
            out["per_image"] = list(images)
        return out


def evaluate_maps(preds: Sequence[Any], gts: Sequence[Any],
                  per_image: bool = False, workers: int | None = None) -> dict[str, Any]:
    """Score a dataset of soft maps against their masks with the polyp protocol.

    Args:
        preds: soft maps in [0, 1], numpy arrays or tensors ``(H_i, W_i)`` (sizes may differ
            between images).
        gts: boolean (or 0/1) masks, ``gts[i]`` the same size as ``preds[i]``.
        per_image: also return ``"per_image"``: one dict per image as :func:`score_map` gives
            (the eleven measures of that image alone plus its ``"curves"``).
        workers: threads that score images (default :func:`default_workers`); the result does
            not depend on it.

    Returns:
        ``{name: float}`` for the names of :data:`METRIC_NAMES`, in that order, plus
        ``"per_image"`` when asked. The dataset ``maxDic`` etc. are maxima of the averaged
        curves, *not* means of the per-image maxima.

    Raises:
        ValueError: the lists differ in length or are empty; a pair differs in size (the index
            is named); a prediction has values outside [0, 1]; a mask is not binary.
    """
    if len(preds) != len(gts):
        raise ValueError(f"got {len(preds)} predictions but {len(gts)} masks")
    acc = MetricAccumulator(default_workers() if workers is None else workers)
    try:
        for i, (pred, gt) in enumerate(zip(preds, gts, strict=True)):
            acc.submit(pred, gt, label=f"preds[{i}] / gts[{i}]")
    except ValueError:
        acc.close()
        raise
    return acc.result(per_image=per_image)


# ---------------------------------------------------------------------------------------------
# Training-time validation
# ---------------------------------------------------------------------------------------------
def batch_dice(probs: Tensor, masks: Tensor, threshold: float = 0.5) -> Tensor:
    """Dice of each image of a batch at one threshold (the per-epoch validation score).

    ``Dice = 2·|M ∩ G| / (|M| + |G|)`` with ``M = [p ≥ threshold]`` and ``G = [mask > 0.5]``;
    0 when there is no true positive, as in the protocol (so empty vs empty scores 0).

    Args:
        probs: ``(B, 1, H, W)`` (or ``(B, H, W)``) probabilities, e.g. ``sigmoid(P1 + P2)``.
        masks: the masks, same shape, values in {0, 1}.
        threshold: binarisation threshold.

    Returns:
        ``(B,)`` float32 tensor on the device of ``probs``.
    """
    if probs.shape != masks.shape:
        raise ValueError(f"probs {tuple(probs.shape)} and masks {tuple(masks.shape)} differ")
    if probs.dim() < 3:
        raise ValueError(f"expected (B, 1, H, W) or (B, H, W), got {tuple(probs.shape)}")
    pred = probs >= threshold
    gt = masks > 0.5
    dims = tuple(range(1, probs.dim()))
    tp = (pred & gt).sum(dim=dims)
    total = pred.sum(dim=dims) + gt.sum(dim=dims)
    return (2 * tp / total.clamp_min(1)).float()
