"""Attention figures: PVTv2 encoder attention, the CIM's decoder attention, the L_AT target."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor, nn

from kdas_lite.losses import attention_target
from kdas_lite.models import (
    PolypPVTOutput,
    attention_to_image,
    encoder_attention_maps,
)
from kdas_lite.viz._common import (
    DIFF_CMAP,
    GT_COLOR,
    MAP_CMAP,
    ImageLike,
    Stats,
    _extent,
    _numpy,
    _pick,
    _resize,
    _subplots,
    _suptitle,
    to_map,
    to_rgb,
)
from kdas_lite.viz.sgm import _show_matrix


# ---------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------
def _query_cell(query: tuple[float, float], grid: tuple[int, int]) -> tuple[int, int]:
    """Relative ``(y, x)`` in [0, 1] → ``(row, col)`` on a token grid."""
    (y, x), (h, w) = query, grid
    if not (0.0 <= y <= 1.0 and 0.0 <= x <= 1.0):
        raise ValueError(f"query (y, x) must be fractions of the image in [0, 1], got {query}")
    return min(int(y * h), h - 1), min(int(x * w), w - 1)


def _draw_map(ax: Axes, rgb: np.ndarray, m: np.ndarray, *, alpha: float, cmap: str,
              vmin: float | None = None, vmax: float | None = None,
              nearest: bool = False) -> Any:
    """The image with ``m`` stretched over it (token grids drawn as blocks when ``nearest``)."""
    ax.imshow(rgb)
    artist = ax.imshow(m, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax,
                       extent=_extent(rgb.shape), interpolation="nearest" if nearest else
                       "bilinear")
    ax.set_xlim(-0.5, rgb.shape[1] - 0.5)
    ax.set_ylim(rgb.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    return artist


def _mark_query(ax: Axes, query: tuple[float, float], shape: tuple[int, ...]) -> None:
    ax.plot(query[1] * (shape[1] - 1), query[0] * (shape[0] - 1), marker="+", color="cyan",
            ms=12, mew=2.5)


def _model_rgb(model: nn.Module, images: Tensor) -> np.ndarray:
    return to_rgb(images[:1], getattr(model, "input_mean", None),
                  getattr(model, "input_std", None))


def encoder_attention_figure(model: nn.Module, images: Tensor, *,
                             query: tuple[float, float] | None = None, max_heads: int = 4,
                             block: int = -1, alpha: float = 0.6, title: str | None = None
                             ) -> Figure:
    """The PVTv2 encoder's spatial-reduction attention, one row per stage.

    Column 1 averages the heads, the next columns show single heads (up to ``max_heads``).
    Each panel is the attention over the stage's *key* grid (the spatially reduced map,
    ``h/R × w/R``), drawn as blocks over the image: from one query token (``query``, marked
    with a cross) or averaged over all queries (``query=None``: how much attention each key
    region receives overall). See :func:`kdas_lite.models.encoder_attention_maps`.

    Args:
        model: a Polyp-PVT on a ``pvt_v2_*`` encoder (eval mode for reproducible maps).
        images: ``(1, 3, H, W)`` normalised input (only the first image is used).
        query: ``(y, x)`` as fractions of the image height / width, or None.
        max_heads: most single-head columns.
        block: which block of each stage (-1: the last).
        alpha: opacity of the attention map.
        title: put before the figure's own title (e.g. the data set, and "random init" for
            an untrained model).

    The panels of a stage share one colour scale, from 0 to the stage's largest weight, shown
    by the colour bar at the end of the row.
    """
    atts = encoder_attention_maps(model, images[:1], block=block)
    rgb = _model_rgb(model, images)
    heads = min(max(a.attention.shape[1] for a in atts), max_heads)
    fig, axes = _subplots(len(atts), 1 + heads, (2.3, 2.3))
    for row, att in zip(axes, atts, strict=True):
        cell = None if query is None else _query_cell(query, att.query_grid)
        n_heads = att.attention.shape[1]
        heads_shown = [None, *range(min(n_heads, heads))]
        maps = [_numpy(attention_to_image(att, cell, head)[0]) for head in heads_shown]
        top = max(float(m.max()) for m in maps) or 1.0
        for col, ax in enumerate(row):
            if col >= len(heads_shown):
                ax.set_visible(False)
                continue
            head = heads_shown[col]
            artist = _draw_map(ax, rgb, maps[col], alpha=alpha, cmap=MAP_CMAP, vmin=0,
                               vmax=top, nearest=True)
            if query is not None:
                _mark_query(ax, query, rgb.shape)
            label = "mean of heads" if head is None else f"head {head + 1}/{n_heads}"
            ax.set_title(f"stage {att.stage} · {label}", fontsize=8)
        fig.colorbar(artist, ax=list(row), shrink=0.8, label="weight")
        row[0].text(-0.08, 0.5, f"queries {att.query_grid[0]}×{att.query_grid[1]}\n"
                    f"keys {att.key_grid[0]}×{att.key_grid[1]}", transform=row[0].transAxes,
                    rotation=90, va="center", ha="right", fontsize=7)
    where = "from the marked query" if query is not None else "averaged over queries"
    _suptitle(fig, title, f"{getattr(model, 'encoder_name', 'encoder')}: attention {where}")
    return fig


def decoder_attention_figure(output: PolypPVTOutput, image: ImageLike, *, index: int = 0,
                             mean: Stats = None, std: Stats = None, alpha: float = 0.55,
                             title: str | None = None) -> Figure:
    """The decoder's attention and outputs for one image.

    Panels: the CIM's channel attention ``CA(X1)`` (one weight per channel of stage 1,
    sorted), its spatial attention ``SA`` over the image (stride 4), and the two predictions
    ``σ(P1)`` (CFM branch) and ``σ(P2)`` (SAM branch).

    Args:
        output: ``model(x, return_features=True)``.
        image: the displayed image (see :func:`to_rgb`; e.g. ``x[index]`` with the model's
            ``mean``/``std``).
        index: which image of the batch.
        title: figure title (e.g. the model and the data set).
    """
    rgb = to_rgb(image, mean, std)
    fig, axes = _subplots(1, 4, (2.8, 2.8))
    ca = _numpy(output.channel_attention[index]).ravel()
    ax = axes[0, 0]
    ax.bar(np.arange(ca.size), np.sort(ca)[::-1], width=1.0, color="tab:purple")
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"channel of X1 (sorted, C1 = {ca.size})", fontsize=8)
    ax.set_title("CIM channel attention CA(X1)", fontsize=9)
    panels = (
        ("CIM spatial attention SA", output.spatial_attention[index]),
        ("σ(P1): CFM branch", torch.sigmoid(output.p1[index].float())),
        ("σ(P2): SAM branch", torch.sigmoid(output.p2[index].float())),
    )
    for ax, (heading, m) in zip(axes[0, 1:], panels, strict=True):
        artist = _draw_map(ax, rgb, to_map(m), alpha=alpha, cmap=MAP_CMAP, vmin=0, vmax=1)
        ax.set_title(heading, fontsize=9)
    fig.colorbar(artist, ax=axes[0, 1:], shrink=0.8)
    _suptitle(fig, title)
    return fig


def _row_attention(p: Tensor) -> Tensor:
    """``softmax(P Pᵀ / √W)`` over the rows of one map ``(H, W)``: the ``(H, H)`` weights."""
    return torch.softmax(p @ p.T / math.sqrt(p.shape[-1]), dim=-1)


def _spatial_softmax(x: Tensor, temperature: float) -> np.ndarray:
    """``softmax_{HW}(x / T)`` of one ``(1, 1, H, W)`` map, as ``(H, W)``."""
    return torch.softmax(x.flatten() / temperature, dim=0).reshape(x.shape[-2:]).numpy()


def attention_target_figure(teacher: Tensor, student: Tensor | None = None, *,
                            temperature: float = 2.0, index: int = 0,
                            title: str | None = None) -> Figure:
    """What L_AT asks of the student (paper Eqs. 2–3), for one image.

    Top row, the teacher: its raw prediction ``σ(P_t)``, the row-to-row attention weights
    ``softmax(P_t P_tᵀ / √W)`` (H × H: rows crossing the same polyp attend to each other), the
    refined map ``σ(A_t)`` with ``A_t = softmax(P_t P_tᵀ/√W)·P_t``, and the target distribution
    ``q = softmax_HW(A_t / T)``. Bottom row (with ``student``): ``σ(P_s)``, the student's
    distribution ``p = softmax_HW(P_s / T)`` and ``q − p`` (where the student must move mass).

    Args:
        teacher: ``(B, 1, H, W)`` teacher logits.
        student: optional ``(B, 1, H, W)`` student logits (the teacher is resized to it).
        temperature: T of L_AT.
        index: which image of the batch.
        title: figure title (e.g. the data set).
    """
    t = _pick(teacher, index)
    if student is not None:
        s = _pick(student, index)
        if t.shape[-2:] != s.shape[-2:]:
            t = F.interpolate(t, size=s.shape[-2:], mode="bilinear", align_corners=False)
    target = attention_target(t)
    q = _spatial_softmax(target, temperature)
    p = None if student is None else _spatial_softmax(s, temperature)
    top_q = float(q.max() if p is None else max(q.max(), p.max()))  # q and p share a scale
    fig, axes = _subplots(1 if student is None else 2, 4, (2.8, 2.8))
    top = (
        ("teacher σ(P_t)", torch.sigmoid(t)[0, 0].numpy(), "viridis", (0, 1)),
        ("row attention softmax(P_t P_tᵀ/√W)", _row_attention(t[0, 0]).numpy(), "magma",
         (0, None)),
        ("refined σ(A_t)", torch.sigmoid(target)[0, 0].numpy(), "viridis", (0, 1)),
        (f"target q = softmax_HW(A_t/{temperature:g})", q, MAP_CMAP, (0, top_q)),
    )
    for ax, (heading, m, cmap, (vmin, vmax)) in zip(axes[0], top, strict=True):
        _show_matrix(ax, fig, m, heading, cmap=cmap, vmin=vmin, vmax=vmax)
    axes[0, 1].set_xlabel("key row", fontsize=8)
    axes[0, 1].set_ylabel("query row", fontsize=8)
    if p is not None:
        bottom = (
            ("student σ(P_s)", torch.sigmoid(s)[0, 0].numpy(), "viridis", (0, 1)),
            (f"student p = softmax_HW(P_s/{temperature:g})", p, MAP_CMAP, (0, top_q)),
        )
        for ax, (heading, m, cmap, (vmin, vmax)) in zip(axes[1], bottom, strict=False):
            _show_matrix(ax, fig, m, heading, cmap=cmap, vmin=vmin, vmax=vmax)
        _show_matrix(axes[1, 2], fig, q - p, "q − p", cmap=DIFF_CMAP, diverging=True)
        kl = float((q * (np.log(q + 1e-30) - np.log(p + 1e-30))).sum()) * temperature**2
        axes[1, 3].text(0.5, 0.5, f"L_AT for this image\nT²·KL(q‖p) = {kl:.4f}",
                        ha="center", va="center", fontsize=10, transform=axes[1, 3].transAxes)
        axes[1, 3].set_axis_off()
    _suptitle(fig, title)
    return fig


def compare_maps_figure(image: ImageLike, teacher_map: ImageLike, student_map: ImageLike, *,
                        mask: ImageLike | None = None, titles: tuple[str, str] = ("teacher",
                                                                                  "student"),
                        mean: Stats = None, std: Stats = None, alpha: float = 0.55,
                        vmin: float | None = 0.0, vmax: float | None = None,
                        title: str | None = None) -> Figure:
    """Teacher and student maps side by side over the image, and their difference.

    Both maps are resized to the image; the third panel is ``teacher − student`` on a
    diverging scale symmetric around 0 (red: the teacher is higher).

    Args:
        image: the displayed image (see :func:`to_rgb`).
        teacher_map, student_map: ``(H, W)`` maps (any sizes), e.g. ``σ(P2)`` or attention.
        mask: optional ground truth drawn as a contour on every panel.
        titles: names of the two maps.
        vmin, vmax: colour range of the two maps (default from 0 to their common maximum).
        title: figure title (e.g. the data set).
    """
    rgb = to_rgb(image, mean, std)
    t = _resize(to_map(teacher_map), rgb.shape)
    s = _resize(to_map(student_map), rgb.shape)
    vmax = float(max(t.max(), s.max())) if vmax is None else vmax
    fig, axes = _subplots(1, 3, (2.9, 2.9))
    for ax, m, heading in ((axes[0, 0], t, titles[0]), (axes[0, 1], s, titles[1])):
        artist = _draw_map(ax, rgb, m, alpha=alpha, cmap=MAP_CMAP, vmin=vmin, vmax=vmax)
        ax.set_title(heading, fontsize=9)
    fig.colorbar(artist, ax=axes[0, :2], shrink=0.8)
    diff = t - s
    bound = float(np.abs(diff).max()) or 1.0
    artist = _draw_map(axes[0, 2], rgb, diff, alpha=0.75, cmap=DIFF_CMAP, vmin=-bound,
                       vmax=bound)
    axes[0, 2].set_title(f"{titles[0]} − {titles[1]}", fontsize=9)
    fig.colorbar(artist, ax=axes[0, 2], shrink=0.8)
    if mask is not None:
        g = _resize(to_map(mask), rgb.shape)
        if g.min() < 0.5 < g.max():
            for ax in axes.flat:
                ax.contour(g, levels=[0.5], colors=[GT_COLOR], linewidths=1.2)
    _suptitle(fig, title)
    return fig
