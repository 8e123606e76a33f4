"""What every measure of the protocol shares: its constants and the checked input pair.

The 256 :data:`THRESHOLDS`, the names of the dataset-level metrics (:data:`METRIC_NAMES`) and
of the per-threshold curves (:data:`CURVE_NAMES`), MATLAB's ``eps``; :func:`_check_pair`, which
turns one (prediction, mask) pair into a float map ``S`` ∈ [0, 1] and a boolean mask ``G`` of
the same (H, W) or says what is wrong with it; and the sums the measures share (``Σ S`` in
float64, the foreground pixels per row and column). The formulas are in the
:mod:`kdas_lite.metrics` docstring.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

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


def _row_col_counts(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground pixels in each row ``(H,)`` and each column ``(W,)`` of ``g``, int64."""
    u8 = g.view(np.uint8)
    return (cv2.reduce(u8, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[:, 0].astype(np.int64),
            cv2.reduce(u8, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[0].astype(np.int64))
