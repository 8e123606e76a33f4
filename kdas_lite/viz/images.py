"""Images with masks and predictions, and the structure loss's boundary weights (paper Eq. 1)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from kdas_lite.losses import boundary_weight
from kdas_lite.viz._common import (
    GT_COLOR,
    PRED_COLOR,
    ImageLike,
    Stats,
    _hide_unused,
    _resize,
    _subplots,
    _suptitle,
    to_map,
    to_rgb,
)


# ---------------------------------------------------------------------------------------------
# Images with masks and predictions
# ---------------------------------------------------------------------------------------------
def overlay(ax: Axes, image: ImageLike, mask: ImageLike | None = None,
            pred: ImageLike | None = None, *, mode: Literal["contour", "alpha"] = "contour",
            alpha: float = 0.45, threshold: float = 0.5, mean: Stats = None, std: Stats = None,
            title: str | None = None) -> Axes:
    """Draw an image with its ground truth (cyan) and prediction (yellow) on ``ax``.

    Args:
        ax: the axes to draw on.
        image: see :func:`to_rgb` (``mean``/``std`` undo a normalisation).
        mask: ground truth ``(H, W)`` in {0, 1} (any size: resized to the image).
        pred: prediction probabilities ``(H, W)`` in [0, 1] (apply the sigmoid to logits).
        mode: ``"contour"`` (outline at ``threshold``) or ``"alpha"`` (filled, opacity
            ``alpha`` × value).
        title: axes title.

    Returns:
        ``ax``.
    """
    if mode not in ("contour", "alpha"):
        raise ValueError(f"mode must be 'contour' or 'alpha', got {mode!r}")
    rgb = to_rgb(image, mean, std)
    ax.imshow(rgb)
    for layer, color in ((mask, GT_COLOR), (pred, PRED_COLOR)):
        if layer is None:
            continue
        m = _resize(to_map(layer), rgb.shape)
        if mode == "contour":
            if m.min() < threshold < m.max():  # otherwise there is no outline to draw
                ax.contour(m, levels=[threshold], colors=[color], linewidths=1.6)
        else:
            rgba = np.zeros((*m.shape, 4), np.float32)
            rgba[..., :3] = to_rgba(color)[:3]
            rgba[..., 3] = alpha * np.clip(m, 0.0, 1.0)
            ax.imshow(rgba)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def _legend(fig: Figure, mask: bool, pred: bool) -> None:
    handles = [Line2D([], [], color=c, lw=2, label=label)
               for c, label, on in ((GT_COLOR, "ground truth", mask),
                                    (PRED_COLOR, "prediction", pred)) if on]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                   fontsize="small", frameon=False)


def overlay_grid(images: Sequence[ImageLike], masks: Sequence[ImageLike] | None = None,
                 preds: Sequence[ImageLike] | None = None, titles: Sequence[str] | None = None,
                 *, ncols: int = 4, mode: Literal["contour", "alpha"] = "contour",
                 mean: Stats = None, std: Stats = None, panel: float = 2.6,
                 title: str | None = None) -> Figure:
    """A grid of images with their masks / predictions drawn by :func:`overlay`.

    Args:
        images: N images; ``masks``, ``preds``, ``titles``: None or N entries each (a title
            may hold a line break; keep each line short enough for its panel).
        ncols: panels per row.
        mode, mean, std: as :func:`overlay`.
        panel: side of one panel in inches.
        title: figure title (e.g. the data set and its label).
    """
    n = len(images)
    if n == 0:
        raise ValueError("overlay_grid needs at least one image")
    for name, seq in (("masks", masks), ("preds", preds), ("titles", titles)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"got {n} images but {len(seq)} {name}")
    ncols = min(ncols, n)
    fig, axes = _subplots(math.ceil(n / ncols), ncols, (panel, panel))
    for i in range(n):
        overlay(axes.flat[i], images[i], None if masks is None else masks[i],
                None if preds is None else preds[i], mode=mode, mean=mean, std=std,
                title=None if titles is None else titles[i])
    _hide_unused(axes, n)
    _legend(fig, masks is not None, preds is not None)
    _suptitle(fig, title)
    return fig


def boundary_weight_figure(image: ImageLike, mask: ImageLike, pred: ImageLike | None = None,
                           *, kernel_size: int = 31, mean: Stats = None,
                           std: Stats = None, title: str | None = None) -> Figure:
    """Where the structure loss looks: the boundary weights ``w = 1 + 5·|avgpool(G) − G|``.

    Panels: the image with its mask; the weight map ``w`` (1 far from the boundary, up to 6 on
    it, paper Eq. 1); and, with ``pred``, the per-pixel BCE and the weighted ``w·BCE`` whose
    normalised sum ``Σ w·BCE / Σ w`` is the L_wBCE term (compared with the plain mean BCE).

    Args:
        image: the image (see :func:`to_rgb`).
        mask: ``(H, W)`` ground truth in {0, 1}.
        pred: optional ``(H, W)`` **logits** at the mask's size (resized if not).
        kernel_size: the pooling window (31 in PraNet / Polyp-PVT).
        title: figure title (e.g. the image and its data set).
    """
    g = torch.from_numpy(to_map(mask))[None, None]
    w = boundary_weight(g, kernel_size)[0, 0].numpy()
    n = 2 if pred is None else 4
    fig, axes = _subplots(1, n, (3.0, 3.0))
    overlay(axes[0, 0], image, mask, mean=mean, std=std, title="image and mask G")
    im = axes[0, 1].imshow(w, cmap="magma", vmin=1, vmax=6)
    axes[0, 1].set_title(f"weight w = 1 + 5·|avgpool{kernel_size}(G) − G|", fontsize=9)
    axes[0, 1].set_axis_off()
    fig.colorbar(im, ax=axes[0, 1], shrink=0.8)
    if pred is not None:
        logits = torch.from_numpy(_resize(to_map(pred), g.shape[-2:]))[None, None]
        bce = F.binary_cross_entropy_with_logits(logits, g, reduction="none")[0, 0].numpy()
        weighted = w * bce
        vmax = float(weighted.max()) or 1.0
        for ax, values, label in ((axes[0, 2], bce, f"BCE (mean {bce.mean():.3f})"),
                                  (axes[0, 3], weighted,
                                   f"w·BCE (Σw·BCE/Σw = {weighted.sum() / w.sum():.3f})")):
            im = ax.imshow(values, cmap="viridis", vmin=0, vmax=vmax)
            ax.set_title(label, fontsize=9)
            ax.set_axis_off()
        fig.colorbar(im, ax=axes[0, 2:], shrink=0.8)
    _suptitle(fig, title)
    return fig
