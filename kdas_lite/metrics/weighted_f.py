"""Weighted F-measure ``F^w_β`` of Margolin et al. (CVPR 2014), β² = 1.

The error ``E = |S − G|`` is propagated from each background pixel's nearest foreground pixel
(:func:`_propagate_error`), smoothed by the 7×7 Gaussian of σ = 5 (pixel *dependency*), and
background errors are weighted by their distance to the mask (pixel *importance*,
:data:`_IMPORTANCE`); weighted precision and recall give wFm. Formulas and conventions: the
:mod:`kdas_lite.metrics` docstring.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from kdas_lite.metrics._common import _EPS, _check_pair, _row_col_counts, _sum

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
