"""S-measure, the structure measure of Fan et al. (ICCV 2017): ``Sm = α·S_o + (1 − α)·S_r``.

The object score ``S_o`` compares the foreground and background values with the mask; the
region score ``S_r`` splits the image at the foreground centroid (MATLAB's 1-based ``round``,
:func:`_matlab_centroid`) into four blocks and scores each with SSIM without its stabilising
constants. Both follow from per-block, per-class moments (:class:`_Moments`), which also give
the MAE (:mod:`kdas_lite.metrics.scoring`). Formulas and conventions: the
:mod:`kdas_lite.metrics` docstring.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from kdas_lite.metrics._common import _EPS, _check_pair, _row_col_counts, _sum


def _object_score(mean: float, std: float) -> float:
    """``O(x) = 2·x̄ / (x̄² + 1 + σ_x + eps)`` from the mean and (N−1) std of the values."""
    return 2 * mean / (mean**2 + 1 + std + _EPS)


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
        Sm in [0, 1]; see the :mod:`kdas_lite.metrics` docstring for the formulas and the
        empty-mask cases.
    """
    return _s_measure(*_check_pair(pred, gt, keep_float32=True), alpha=alpha)
