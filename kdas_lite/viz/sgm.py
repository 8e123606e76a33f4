"""L_SGM figures: P, Pᵀ, P + Pᵀ and their pooled forms (paper Eqs. 4-5)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from kdas_lite.losses import sgm_loss, symmetric_form
from kdas_lite.viz._common import (
    DIFF_CMAP,
    ImageLike,
    _hide_unused,
    _pick,
    _subplots,
    _suptitle,
    to_map,
)


# ---------------------------------------------------------------------------------------------
# L_SGM: matrices
# ---------------------------------------------------------------------------------------------
def _show_matrix(ax: Axes, fig: Figure, m: ImageLike, title: str, *, cmap: str | None = None,
                 vmin: float | None = None, vmax: float | None = None,
                 diverging: bool = False, colorbar: bool = True) -> Any:
    """``m`` with a colour bar: on ``cmap`` (default viridis), or, with ``diverging``, on a
    scale symmetric around 0 (default :data:`DIFF_CMAP`: blue < 0 < red, white at 0)."""
    m = to_map(m)
    if diverging:
        bound = float(np.abs(m).max()) or 1.0
        vmin, vmax = -bound, bound
    cmap = cmap or (DIFF_CMAP if diverging else "viridis")
    artist = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    if colorbar:
        fig.colorbar(artist, ax=ax, shrink=0.75)
    return artist


def matrices_figure(matrices: Mapping[str, ImageLike], *, ncols: int | None = None,
                    cmap: str | None = None, diverging: bool = False,
                    suptitle: str | None = None, panel: float = 2.6) -> Figure:
    """Show named 2-D matrices side by side, each with its own colour bar.

    Args:
        matrices: title → ``(H, W)`` matrix (e.g. ``{"P": p, "Pᵀ": p.T, "P + Pᵀ": p + p.T}``).
        ncols: panels per row (default: all in one row).
        cmap: colour map (default viridis; with ``diverging``, :data:`DIFF_CMAP`).
        diverging: signed values: a scale symmetric around 0 on a diverging colour map.
        suptitle: figure title.
    """
    if not matrices:
        raise ValueError("matrices_figure needs at least one matrix")
    n = len(matrices)
    ncols = ncols or n
    fig, axes = _subplots(math.ceil(n / ncols), ncols, (panel, panel))
    for ax, (title, m) in zip(axes.flat, matrices.items(), strict=False):
        _show_matrix(ax, fig, m, title, cmap=cmap, diverging=diverging)
    _hide_unused(axes, n)
    _suptitle(fig, suptitle)
    return fig


def sgm_figure(student: Tensor, teacher: Tensor, *, pool_size: int | None = None,
               index: int = 0, title: str | None = None) -> Figure:
    """The matrices L_SGM compares (paper Eqs. 4–5), for one image of the batch.

    Rows: teacher, student, teacher − student. Columns: the logit map ``P``, its transpose
    ``Pᵀ``, the symmetric form ``S = P + Pᵀ`` (:func:`~kdas_lite.losses.symmetric_form`) and
    ``pool(S)`` (adaptive average pooling to ``pool_size``; the full map when None). The title
    gives L_SGM on the whole batch as :func:`~kdas_lite.losses.sgm_loss` computes it.

    Args:
        student, teacher: ``(B, 1, H, W)`` logits (the teacher is resized to the student).
        pool_size: as :func:`~kdas_lite.losses.sgm_loss`.
        index: which image of the batch to show.
        title: put before the L_SGM line of the figure title (e.g. the data set).
    """
    loss = float(sgm_loss(student.detach().float().cpu(), teacher.detach().float().cpu(),
                          pool_size))
    s = _pick(student, index)
    t = _pick(teacher, index)
    if t.shape[-2:] != s.shape[-2:]:
        t = F.interpolate(t, size=s.shape[-2:], mode="bilinear", align_corners=False)
    rows = {}
    for name, p in (("teacher", t), ("student", s)):
        sym = symmetric_form(p)
        side = pool_size or sym.shape[-1]
        rows[name] = [p[0, 0], p[0, 0].T, sym[0, 0], F.adaptive_avg_pool2d(sym, side)[0, 0]]
    rows["teacher − student"] = [a - b for a, b in zip(rows["teacher"], rows["student"],
                                                       strict=True)]
    side = pool_size or rows["teacher"][2].shape[-1]
    columns = ("P", "Pᵀ", "S = P + Pᵀ", f"pool(S) {side}×{side}")
    fig, axes = _subplots(3, 4, (2.5, 2.4))
    for r, (name, mats) in enumerate(rows.items()):
        for c, m in enumerate(mats):  # logits are signed: a diverging scale around 0
            _show_matrix(axes[r, c], fig, m.numpy(), f"{name}: {columns[c]}", diverging=True)
    _suptitle(fig, title, f"L_SGM = MSE(pool(S_s), pool(S_t)) = {loss:.4f} (batch of "
              f"{student.shape[0]})")
    return fig
