"""Figures and the interactive teacher/student attention explorer.

Every figure function takes tensors or arrays and returns a matplotlib ``Figure``: nothing is
shown from here (no ``plt.show``). In Jupyter the returned figure displays once, as the value
of the cell; in a script call ``fig.savefig(...)``. The figures, by notebook:

- data and losses: :func:`overlay`, :func:`overlay_grid`, :func:`boundary_weight_figure`
  (the structure loss's boundary weights, paper Eq. 1);
- architecture: :func:`parameter_counts`, :func:`parameter_table` (teacher vs student per
  block: encoder / CIM / CFM / SAM / heads);
- attention: :func:`encoder_attention_figure` (PVTv2 spatial-reduction attention per stage and
  head), :func:`decoder_attention_figure` (the CIM's channel and spatial attention),
  :func:`attention_target_figure` (the L_AT self-attention target of paper Eq. 2 vs the raw
  teacher map), :func:`compare_maps_figure` (teacher | student | difference) and the
  interactive :class:`AttentionExplorer` with its :meth:`~AttentionExplorer.static_figure`;
- L_SGM: :func:`matrices_figure`, :func:`sgm_figure` (P, Pᵀ, P + Pᵀ, pooled; paper Eqs. 4–5);
- training and results: :func:`training_curves_figure`, :func:`ablation_figure`,
  :func:`results_figure`, :func:`tradeoff_figure`, :func:`predict_test_set` +
  :func:`best_worst_figure`.

Images may be given as ``uint8 (H, W, 3)`` arrays (as :func:`kdas_lite.data.read_image` returns)
or as model-input tensors ``(3, H, W)`` / ``(1, 3, H, W)`` together with the ``mean``/``std``
that normalised them (``model.input_mean`` / ``model.input_std``). Maps may be any ``(H, W)``
array or tensor with leading singleton dimensions, e.g. ``(1, 1, H, W)``; they are resized to the
image they are drawn on.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor, nn

from kdas_lite.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PolypTestDataset,
    build_resize,
    read_image,
    read_mask,
)
from kdas_lite.evaluate import soft_maps
from kdas_lite.losses import attention_target, boundary_weight, sgm_loss, symmetric_form
from kdas_lite.metrics import METRIC_NAMES, score_map
from kdas_lite.models import (
    EncoderAttention,
    PolypPVTOutput,
    attention_to_image,
    encoder_attention_maps,
)

__all__ = [
    "BLOCKS",
    "MAP_KINDS",
    "SOURCES",
    "AttentionExplorer",
    "ablation_figure",
    "attention_target_figure",
    "best_worst_figure",
    "boundary_weight_figure",
    "compare_maps_figure",
    "decoder_attention_figure",
    "encoder_attention_figure",
    "matrices_figure",
    "overlay",
    "overlay_grid",
    "parameter_counts",
    "parameter_table",
    "predict_test_set",
    "results_figure",
    "sgm_figure",
    "to_map",
    "to_rgb",
    "tradeoff_figure",
    "training_curves_figure",
]

GT_COLOR = "#00e5ff"  # cyan: ground truth
PRED_COLOR = "#ffd600"  # yellow: prediction (both stand out on pink mucosa, colour-blind safe)
MAP_CMAP = "inferno"
DIFF_CMAP = "RdBu_r"

ImageLike = Tensor | np.ndarray
Stats = Sequence[float] | None


# ---------------------------------------------------------------------------------------------
# Arrays in, arrays out
# ---------------------------------------------------------------------------------------------
def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def to_rgb(image: ImageLike, mean: Stats = None, std: Stats = None) -> np.ndarray:
    """An image as a displayable ``float32 (H, W, 3)`` array in ``[0, 1]``.

    Args:
        image: ``uint8 (H, W, 3)`` (or ``(H, W)`` grey), float ``(H, W, 3)`` in [0, 1], or a
            tensor ``(3, H, W)`` / ``(1, 3, H, W)``.
        mean, std: undo a normalisation ``(x − mean) / std`` (give both or neither), e.g.
            ``model.input_mean`` / ``model.input_std`` for a model-input tensor.
    """
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std (to undo a normalisation) or neither")
    arr = _numpy(image)
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise ValueError(f"to_rgb shows one image; got a batch of shape {arr.shape}")
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"expected an image (H, W, 3), (3, H, W) or (H, W); got {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=2)
    arr = arr / 255.0 if np.issubdtype(arr.dtype, np.integer) else arr
    arr = arr.astype(np.float32)
    if mean is not None:
        arr = arr * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    return np.clip(arr, 0.0, 1.0)


def to_map(x: ImageLike) -> np.ndarray:
    """One 2-D map as ``float32 (H, W)``; leading singleton dims (``(1, 1, H, W)``) are dropped."""
    arr = _numpy(x).astype(np.float32)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"expected one 2-D map, e.g. (H, W) or (1, 1, H, W); got {arr.shape}")
    return arr


def _resize(m: np.ndarray, shape: tuple[int, ...], nearest: bool = False) -> np.ndarray:
    """Resize a 2-D map to ``shape`` (bilinear, or nearest for token grids and masks)."""
    shape = tuple(int(s) for s in shape[:2])
    if m.shape == shape:
        return m
    t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]
    if nearest:
        return F.interpolate(t, size=shape, mode="nearest")[0, 0].numpy()
    return F.interpolate(t, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def _pick(x: Tensor, index: int) -> Tensor:
    """Image ``index`` of a ``(B, 1, H, W)`` batch, kept 4-D: ``(1, 1, H, W)``."""
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"expected a (B, 1, H, W) map, got {tuple(x.shape)}")
    return x[index:index + 1].detach().float().cpu()


def _subplots(nrows: int, ncols: int, panel: tuple[float, float] = (2.6, 2.6),
              **kwargs: Any) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with an ``(nrows, ncols)`` array of axes.

    The figure is closed in pyplot right away: it is *returned*, so Jupyter shows it once (as
    the cell's value) instead of twice, and scripts never accumulate open figures.
    """
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows),
                             squeeze=False, layout="constrained", **kwargs)
    plt.close(fig)
    return fig, axes


def _hide_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


def _extent(shape: tuple[int, ...]) -> tuple[float, float, float, float]:
    """imshow extent that stretches any map over an image of ``shape`` (pixel centres)."""
    h, w = shape[:2]
    return (-0.5, w - 0.5, h - 0.5, -0.5)


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
                 mean: Stats = None, std: Stats = None, panel: float = 2.6) -> Figure:
    """A grid of images with their masks / predictions drawn by :func:`overlay`.

    Args:
        images: N images; ``masks``, ``preds``, ``titles``: None or N entries each.
        ncols: panels per row.
        mode, mean, std: as :func:`overlay`.
        panel: side of one panel in inches.
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
    return fig


def boundary_weight_figure(image: ImageLike, mask: ImageLike, pred: ImageLike | None = None,
                           *, kernel_size: int = 31, mean: Stats = None,
                           std: Stats = None) -> Figure:
    """Where the structure loss looks: the boundary weights ``w = 1 + 5·|avgpool(G) − G|``.

    Panels: the image with its mask; the weight map ``w`` (1 far from the boundary, up to 6 on
    it, paper Eq. 1); and, with ``pred``, the per-pixel BCE and the weighted ``w·BCE`` whose
    normalised sum ``Σ w·BCE / Σ w`` is the L_wBCE term (compared with the plain mean BCE).

    Args:
        image: the image (see :func:`to_rgb`).
        mask: ``(H, W)`` ground truth in {0, 1}.
        pred: optional ``(H, W)`` **logits** at the mask's size (resized if not).
        kernel_size: the pooling window (31 in PraNet / Polyp-PVT).
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
    return fig


# ---------------------------------------------------------------------------------------------
# Architecture
# ---------------------------------------------------------------------------------------------
BLOCKS: dict[str, tuple[str, ...]] = {
    "encoder": ("backbone",),
    "CIM": ("ca", "sa", "translayer2_0"),
    "CFM": ("translayer2_1", "translayer3_1", "translayer4_1", "cfm"),
    "SAM": ("sam",),
    "heads": ("out_cfm", "out_sam"),
}
"""Polyp-PVT's top-level modules grouped by block: the encoder; the CIM (channel + spatial
attention on X1 and its 1×1 translayer to c channels for the SAM); the CFM (translayers of X2–X4
and the cascaded fusion); the SAM; the two 1×1 prediction heads."""


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters of each block of a Polyp-PVT (:data:`BLOCKS`), plus ``"total"``.

    Modules outside :data:`BLOCKS` are counted under ``"other"`` (present only when non-zero),
    so the blocks always add up to the total.
    """
    owner = {module: block for block, modules in BLOCKS.items() for module in modules}
    counts = dict.fromkeys(BLOCKS, 0)
    for name, child in model.named_children():
        block = owner.get(name, "other")
        counts[block] = counts.get(block, 0) + sum(p.numel() for p in child.parameters())
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def parameter_table(models: Mapping[str, nn.Module]) -> str:
    """Markdown table of :func:`parameter_counts`, one column per model.

    Counts are exact (thousands separated); the total row also gives millions. With several
    models the last column is the ratio of the last model to the first (e.g. student /
    teacher).

    Example:
        >>> print(parameter_table({"teacher": build_teacher(), "student": build_student()}))
        ... # doctest: +SKIP
    """
    if not models:
        raise ValueError("parameter_table needs at least one model")
    names = list(models)
    counts = {name: parameter_counts(model) for name, model in models.items()}
    blocks = list(dict.fromkeys(b for c in counts.values() for b in c if b != "total"))
    ratio = len(names) > 1
    header = ["block", *names, *([f"ratio {names[-1]} / {names[0]}"] if ratio else [])]
    lines = ["| " + " | ".join(header) + " |",
             "| --- |" + " ---: |" * (len(header) - 1)]
    for block in [*blocks, "total"]:
        values = [counts[n].get(block, 0) for n in names]
        if block == "total":
            cells = ["**total**", *(f"{v:,} ({v / 1e6:.2f} M)" for v in values)]
        else:
            cells = [block, *(f"{v:,}" for v in values)]
        if ratio:
            cells.append(f"{values[-1] / values[0]:.2f}" if values[0] else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
                             block: int = -1, alpha: float = 0.6) -> Figure:
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
    """
    atts = encoder_attention_maps(model, images[:1], block=block)
    rgb = _model_rgb(model, images)
    heads = min(max(a.attention.shape[1] for a in atts), max_heads)
    fig, axes = _subplots(len(atts), 1 + heads, (2.3, 2.3))
    for row, att in zip(axes, atts, strict=True):
        cell = None if query is None else _query_cell(query, att.query_grid)
        n_heads = att.attention.shape[1]
        for col, ax in enumerate(row):
            head = None if col == 0 else col - 1
            if head is not None and head >= n_heads:
                ax.set_visible(False)
                continue
            m = _numpy(attention_to_image(att, cell, head)[0])
            _draw_map(ax, rgb, m, alpha=alpha, cmap=MAP_CMAP, vmin=0, nearest=True)
            if query is not None:
                _mark_query(ax, query, rgb.shape)
            label = "mean of heads" if head is None else f"head {head + 1}/{n_heads}"
            ax.set_title(f"stage {att.stage} · {label}", fontsize=8)
        row[0].text(-0.08, 0.5, f"queries {att.query_grid[0]}×{att.query_grid[1]}\n"
                    f"keys {att.key_grid[0]}×{att.key_grid[1]}", transform=row[0].transAxes,
                    rotation=90, va="center", ha="right", fontsize=7)
    where = "from the marked query" if query is not None else "averaged over queries"
    fig.suptitle(f"{getattr(model, 'encoder_name', 'encoder')}: attention {where}", fontsize=10)
    return fig


def decoder_attention_figure(output: PolypPVTOutput, image: ImageLike, *, index: int = 0,
                             mean: Stats = None, std: Stats = None, alpha: float = 0.55
                             ) -> Figure:
    """The decoder's attention and outputs for one image.

    Panels: the CIM's channel attention ``CA(X1)`` (one weight per channel of stage 1,
    sorted), its spatial attention ``SA`` over the image (stride 4), and the two predictions
    ``σ(P1)`` (CFM branch) and ``σ(P2)`` (SAM branch).

    Args:
        output: ``model(x, return_features=True)``.
        image: the displayed image (see :func:`to_rgb`; e.g. ``x[index]`` with the model's
            ``mean``/``std``).
        index: which image of the batch.
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
    for ax, (title, m) in zip(axes[0, 1:], panels, strict=True):
        artist = _draw_map(ax, rgb, to_map(m), alpha=alpha, cmap=MAP_CMAP, vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
    fig.colorbar(artist, ax=axes[0, 1:], shrink=0.8)
    return fig


def _row_attention(p: Tensor) -> Tensor:
    """``softmax(P Pᵀ / √W)`` over the rows of one map ``(H, W)``: the ``(H, H)`` weights."""
    return torch.softmax(p @ p.T / math.sqrt(p.shape[-1]), dim=-1)


def _spatial_softmax(x: Tensor, temperature: float) -> np.ndarray:
    """``softmax_{HW}(x / T)`` of one ``(1, 1, H, W)`` map, as ``(H, W)``."""
    return torch.softmax(x.flatten() / temperature, dim=0).reshape(x.shape[-2:]).numpy()


def attention_target_figure(teacher: Tensor, student: Tensor | None = None, *,
                            temperature: float = 2.0, index: int = 0) -> Figure:
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
    for ax, (title, m, cmap, (vmin, vmax)) in zip(axes[0], top, strict=True):
        _show_matrix(ax, fig, m, title, cmap=cmap, vmin=vmin, vmax=vmax)
    axes[0, 1].set_xlabel("key row", fontsize=8)
    axes[0, 1].set_ylabel("query row", fontsize=8)
    if p is not None:
        bottom = (
            ("student σ(P_s)", torch.sigmoid(s)[0, 0].numpy(), "viridis", (0, 1)),
            (f"student p = softmax_HW(P_s/{temperature:g})", p, MAP_CMAP, (0, top_q)),
        )
        for ax, (title, m, cmap, (vmin, vmax)) in zip(axes[1], bottom, strict=False):
            _show_matrix(ax, fig, m, title, cmap=cmap, vmin=vmin, vmax=vmax)
        _show_matrix(axes[1, 2], fig, q - p, "q − p", cmap=DIFF_CMAP, diverging=True)
        kl = float((q * (np.log(q + 1e-30) - np.log(p + 1e-30))).sum()) * temperature**2
        axes[1, 3].text(0.5, 0.5, f"L_AT for this image\nT²·KL(q‖p) = {kl:.4f}",
                        ha="center", va="center", fontsize=10, transform=axes[1, 3].transAxes)
        axes[1, 3].set_axis_off()
    return fig


def compare_maps_figure(image: ImageLike, teacher_map: ImageLike, student_map: ImageLike, *,
                        mask: ImageLike | None = None, titles: tuple[str, str] = ("teacher",
                                                                                  "student"),
                        mean: Stats = None, std: Stats = None, alpha: float = 0.55,
                        vmin: float | None = 0.0, vmax: float | None = None) -> Figure:
    """Teacher and student maps side by side over the image, and their difference.

    Both maps are resized to the image; the third panel is ``teacher − student`` on a
    diverging scale symmetric around 0 (red: the teacher is higher).

    Args:
        image: the displayed image (see :func:`to_rgb`).
        teacher_map, student_map: ``(H, W)`` maps (any sizes), e.g. ``σ(P2)`` or attention.
        mask: optional ground truth drawn as a contour on every panel.
        titles: names of the two maps.
        vmin, vmax: colour range of the two maps (default from 0 to their common maximum).
    """
    rgb = to_rgb(image, mean, std)
    t = _resize(to_map(teacher_map), rgb.shape)
    s = _resize(to_map(student_map), rgb.shape)
    vmax = float(max(t.max(), s.max())) if vmax is None else vmax
    fig, axes = _subplots(1, 3, (2.9, 2.9))
    for ax, m, title in ((axes[0, 0], t, titles[0]), (axes[0, 1], s, titles[1])):
        artist = _draw_map(ax, rgb, m, alpha=alpha, cmap=MAP_CMAP, vmin=vmin, vmax=vmax)
        ax.set_title(title, fontsize=9)
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
    return fig


# ---------------------------------------------------------------------------------------------
# L_SGM: matrices
# ---------------------------------------------------------------------------------------------
def _show_matrix(ax: Axes, fig: Figure, m: ImageLike, title: str, *, cmap: str = "viridis",
                 vmin: float | None = None, vmax: float | None = None,
                 diverging: bool = False, colorbar: bool = True) -> Any:
    m = to_map(m)
    if diverging:
        bound = float(np.abs(m).max()) or 1.0
        vmin, vmax = -bound, bound
    artist = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    if colorbar:
        fig.colorbar(artist, ax=ax, shrink=0.75)
    return artist


def matrices_figure(matrices: Mapping[str, ImageLike], *, ncols: int | None = None,
                    cmap: str = "viridis", diverging: bool = False,
                    suptitle: str | None = None, panel: float = 2.6) -> Figure:
    """Show named 2-D matrices side by side, each with its own colour bar.

    Args:
        matrices: title → ``(H, W)`` matrix (e.g. ``{"P": p, "Pᵀ": p.T, "P + Pᵀ": p + p.T}``).
        ncols: panels per row (default: all in one row).
        cmap: colour map; with ``diverging`` a scale symmetric around 0.
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
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def sgm_figure(student: Tensor, teacher: Tensor, *, pool_size: int | None = None,
               index: int = 0) -> Figure:
    """The matrices L_SGM compares (paper Eqs. 4–5), for one image of the batch.

    Rows: teacher, student, teacher − student. Columns: the logit map ``P``, its transpose
    ``Pᵀ``, the symmetric form ``S = P + Pᵀ`` (:func:`~kdas_lite.losses.symmetric_form`) and
    ``pool(S)`` (adaptive average pooling to ``pool_size``; the full map when None). The title
    gives L_SGM on the whole batch as :func:`~kdas_lite.losses.sgm_loss` computes it.

    Args:
        student, teacher: ``(B, 1, H, W)`` logits (the teacher is resized to the student).
        pool_size: as :func:`~kdas_lite.losses.sgm_loss`.
        index: which image of the batch to show.
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
        diverging = r == 2
        for c, m in enumerate(mats):
            _show_matrix(axes[r, c], fig, m.numpy(), f"{name}: {columns[c]}",
                         cmap=DIFF_CMAP if diverging else "viridis", diverging=diverging)
    fig.suptitle(f"L_SGM = MSE(pool(S_s), pool(S_t)) = {loss:.4f} (batch of "
                 f"{student.shape[0]})", fontsize=10)
    return fig


# ---------------------------------------------------------------------------------------------
# Training and results
# ---------------------------------------------------------------------------------------------
_CURVE_LABELS = {"loss": "training loss", "seg": "L_seg", "at": "L_AT", "sgm": "L_SGM",
                 "kd": "L_KD", "val_dice": "validation Dice", "lr": "learning rate"}


def training_curves_figure(histories: Mapping[str, Sequence[Mapping[str, Any]]],
                           keys: Sequence[str] = ("loss", "val_dice")) -> Figure:
    """Compare runs: one panel per logged value, one line per run.

    For a single run's loss terms together, :func:`kdas_lite.train.plot_history` draws them on
    one axes.

    Args:
        histories: run name → ``TrainResult.history`` (one dict per epoch with ``"epoch"``).
        keys: values to plot, e.g. ``"loss"``, ``"seg"``, ``"at"``, ``"sgm"``, ``"val_dice"``.
    """
    if not histories:
        raise ValueError("training_curves_figure needs at least one history")
    fig, axes = _subplots(1, len(keys), (3.6, 2.8))
    for ax, key in zip(axes[0], keys, strict=True):
        for name, history in histories.items():
            if not history:
                raise ValueError(f"the history of {name!r} is empty")
            if key not in history[0]:
                raise KeyError(f"{name!r} logged no {key!r}; it has {sorted(history[0])}")
            ax.plot([r["epoch"] for r in history], [r[key] for r in history], marker="o",
                    ms=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_title(_CURVE_LABELS.get(key, key), fontsize=9)
        ax.grid(alpha=0.3)
        if key == "val_dice":
            ax.set_ylim(0, 1)
    axes[0, -1].legend(fontsize="small")
    return fig


def _table_rows(table: Any) -> Mapping[str, Mapping[str, float]]:
    return table.rows if hasattr(table, "rows") else table


def results_figure(tables: Mapping[str, Any], metric: str = "meanDic", *,
                   reference: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
                   title: str | None = None) -> Figure:
    """Grouped bars of one metric per test set, one bar per model.

    Test sets are labelled as the tables label them (``ETIS-LaribPolypDB (20/196)`` for a
    subset), and the title says **SYNTHETIC data** when any table was scored on it.

    Args:
        tables: model name → :class:`~kdas_lite.evaluate.EvaluationTable` (or a mapping
            test set → {metric: value}).
        metric: a name of :data:`~kdas_lite.metrics.METRIC_NAMES`.
        reference: published numbers as :data:`~kdas_lite.evaluate.PAPER_RESULTS` (model →
            test set → {metric: value}), drawn as black ticks on the bar of the model with the
            same name (e.g. keys ``"teacher"`` and ``"student"``).
        title: figure title (the SYNTHETIC warning is prepended where it applies).
    """
    if not tables:
        raise ValueError("results_figure needs at least one table")
    labels = {d: t.label(d) for t in reversed(list(tables.values())) if hasattr(t, "label")
              for d in t.rows}
    rows = {name: _table_rows(t) for name, t in tables.items()}
    datasets = list(dict.fromkeys(d for r in rows.values() for d in r))
    width = 0.8 / len(rows)
    fig, axes = _subplots(1, 1, (max(5.0, 1.3 * len(datasets) + 1.5), 3.4))
    ax = axes[0, 0]
    x = np.arange(len(datasets))
    for i, (name, r) in enumerate(rows.items()):
        values = [r[d][metric] if d in r else np.nan for d in datasets]
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, values, width, label=name)
        published = (reference or {}).get(name, {})
        for p, d in zip(pos, datasets, strict=True):
            if metric in published.get(d, {}):
                ax.hlines(published[d][metric], p - width / 2, p + width / 2, color="k", lw=2)
    if reference and any(name in reference for name in rows):
        ax.plot([], [], color="k", lw=2, label="published")
    ax.set_xticks(x, [labels.get(d, d) for d in datasets], rotation=15, fontsize=8)
    ax.set_ylabel(metric)
    synthetic = any(getattr(t, "synthetic", False) for t in tables.values())
    _data_title(ax, title, synthetic)
    if metric != "MAE":
        ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", ncols=min(len(rows) + 1, 4))
    return fig


def ablation_figure(scores: Mapping[str, float], *, ylabel: str = "best validation Dice",
                    baseline: str | None = None) -> Figure:
    """One bar per training variant (e.g. the ablation of notebook 04), values written on top.

    Args:
        scores: variant name → score, in display order.
        ylabel: what the score is.
        baseline: a variant drawn as a dashed reference line across the plot (e.g.
            ``"student alone"``).
    """
    if not scores:
        raise ValueError("ablation_figure needs at least one score")
    if baseline is not None and baseline not in scores:
        raise ValueError(f"baseline {baseline!r} is not one of {list(scores)}")
    fig, axes = _subplots(1, 1, (max(4.0, 1.1 * len(scores) + 1.0), 3.2))
    ax = axes[0, 0]
    bars = ax.bar(list(scores), list(scores.values()),
                  color=[f"C{i}" for i in range(len(scores))])
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    if baseline is not None:
        ax.axhline(scores[baseline], color="k", ls="--", lw=1, label=baseline)
        ax.legend(fontsize="small", loc="lower right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, max(1.0, max(scores.values()) * 1.1))
    ax.tick_params(axis="x", labelsize=8, rotation=15)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _data_title(ax: Any, title: str | None, synthetic: bool) -> None:
    """Set ``title``, led by "SYNTHETIC data" when the figure shows synthetic data."""
    parts = (["SYNTHETIC data (not real endoscopy)"] if synthetic else []) + (
        [title] if title else [])
    if parts:
        ax.set_title(" — ".join(parts), fontsize=9, color="C3" if synthetic else "k")


def tradeoff_figure(names: Sequence[str], params_m: Sequence[float], scores: Sequence[float],
                    images_per_s: Sequence[float] | None = None, *,
                    score_label: str = "mean Dice",
                    reference: Mapping[str, tuple[float, float]] | None = None,
                    title: str | None = None, synthetic: bool = False) -> Figure:
    """Parameters vs accuracy, with speed as the marker size (and written next to it).

    Args:
        names: model names.
        params_m: parameters in millions.
        scores: accuracy (e.g. the image-weighted mean Dice over the test sets).
        images_per_s: measured throughput; bigger markers are faster.
        score_label: y-axis label.
        reference: published points ``name → (params_m, score)``, drawn hollow.
        title: figure title.
        synthetic: the scores come from synthetic data (said first in the title).
    """
    if not len(names) == len(params_m) == len(scores):
        raise ValueError("names, params_m and scores must have the same length")
    if images_per_s is not None and len(images_per_s) != len(names):
        raise ValueError("images_per_s must have one value per model")
    fig, axes = _subplots(1, 1, (5.0, 3.6))
    ax = axes[0, 0]
    if images_per_s is not None:
        top = max(images_per_s) or 1.0
        sizes = [60 + 440 * v / top for v in images_per_s]
    else:
        sizes = [120] * len(names)
    ax.scatter(params_m, scores, s=sizes, c=[f"C{i}" for i in range(len(names))], alpha=0.8,
               edgecolors="k", zorder=3)
    for i, name in enumerate(names):
        speed = "" if images_per_s is None else f"\n{images_per_s[i]:.1f} img/s"
        ax.annotate(f"{name}{speed}", (params_m[i], scores[i]), textcoords="offset points",
                    xytext=(8, 6), fontsize=8)
    for name, (p, score) in (reference or {}).items():
        ax.scatter([p], [score], s=120, facecolors="none", edgecolors="k", zorder=3)
        ax.annotate(f"{name} (published)", (p, score), textcoords="offset points",
                    xytext=(8, -12), fontsize=8)
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel(score_label)
    ax.grid(alpha=0.3)
    ax.margins(x=0.25, y=0.2)
    _data_title(ax, title, synthetic)
    return fig


def predict_test_set(model: nn.Module, folder: str | os.PathLike[str], size: int = 352, *,
                         limit: int | None = None, device: str | torch.device | None = None
                         ) -> list[dict[str, Any]]:
    """Predict and score the images of one test folder, for qualitative figures.

    The maps follow :func:`kdas_lite.evaluate.evaluate` (``σ(P1 + P2)`` resized to the mask's
    original size, min–max normalised) and are scored per image with
    :func:`kdas_lite.metrics.score_map`.

    Args:
        model: a kdas_lite model (its ``input_mean``/``input_std`` normalise the images).
        folder: a folder with ``images/`` and ``masks/``.
        size: input side.
        limit: only the first ``limit`` images.
        device: where to run (default: the model's device).

    Returns:
        One dict per image: ``name``, ``image`` (uint8 ``(H, W, 3)``, original size), ``mask``
        (bool ``(H, W)``), ``pred`` (float ``(H, W)`` in [0, 1]) and the measures of
        :data:`~kdas_lite.metrics.METRIC_NAMES`.
    """
    dataset = PolypTestDataset(folder, size=size, mean=model.input_mean, std=model.input_std)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    cases = []
    try:
        for i in range(len(dataset) if limit is None else min(limit, len(dataset))):
            sample = dataset[i]
            with torch.inference_mode():
                p1, p2 = model(sample["image"][None].to(device))
            pred = soft_maps((p1 + p2).float().cpu(), [sample["mask"].shape])[0]
            scores = score_map(pred, sample["mask"])
            cases.append({"name": sample["name"], "image": read_image(dataset.pairs[i][0]),
                          "mask": sample["mask"], "pred": pred,
                          **{m: scores[m] for m in METRIC_NAMES}})
    finally:
        model.train(was_training)
    return cases


def best_worst_figure(cases: Sequence[Mapping[str, Any]], k: int = 3, key: str = "meanDic",
                      *, higher_is_better: bool = True, title: str | None = None) -> Figure:
    """The ``k`` best and ``k`` worst images by ``key``, with mask and prediction contours.

    Args:
        cases: dicts with ``image``, ``mask``, ``pred``, ``name`` and ``key``, e.g. from
            :func:`predict_test_set`.
        k: images per row.
        key: the score to rank by.
        higher_is_better: False for errors such as ``"MAE"``.
        title: figure title.
    """
    if not cases:
        raise ValueError("best_worst_figure needs at least one case")
    ranked = sorted(cases, key=lambda c: c[key], reverse=higher_is_better)
    k = min(k, len(ranked))
    rows = (("best", ranked[:k]), ("worst", ranked[::-1][:k]))
    fig, axes = _subplots(2, k, (2.7, 2.7))
    for r, (label, chosen) in enumerate(rows):
        for ax, case in zip(axes[r], chosen, strict=True):
            overlay(ax, case["image"], case["mask"], case["pred"],
                    title=f"{label}: {case['name']}\n{key} {case[key]:.3f}")
    _legend(fig, mask=True, pred=True)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# ---------------------------------------------------------------------------------------------
# The interactive explorer
# ---------------------------------------------------------------------------------------------
MAP_KINDS: tuple[str, ...] = (
    "encoder attention: query point",
    "encoder attention: mean over queries",
    "decoder spatial attention",
    "output probability",
    "L_AT distribution",
)
"""What :class:`AttentionExplorer` can show. The L_AT distribution is the target
``q = softmax_HW(A_t/T)`` for the teacher and ``p = softmax_HW(P_s/T)`` for the student
(both from P2): the two distributions that L_AT matches."""

SOURCES: tuple[str, ...] = ("teacher", "student", "difference")
"""Whose map :class:`AttentionExplorer` shows; ``difference`` is teacher − student."""

_ENCODER_KINDS = MAP_KINDS[:2]


@dataclass
class _ModelMaps:
    """Everything one model computed for one image (CPU, detached)."""

    output: PolypPVTOutput
    encoder: list[EncoderAttention] | None


def _load_rgb(image: str | os.PathLike[str] | np.ndarray | Tensor) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    rgb = to_rgb(image)
    return np.round(rgb * 255).astype(np.uint8)


def _load_mask(mask: str | os.PathLike[str] | np.ndarray | Tensor) -> np.ndarray:
    if isinstance(mask, (str, os.PathLike)):
        return read_mask(mask)
    return to_map(mask) > 0.5


class AttentionExplorer:
    """Explore teacher and student attention, image by image (ipywidgets, or a static figure).

    The controls: an image picker, the map kind (:data:`MAP_KINDS`), the source
    (:data:`SOURCES`: teacher, student or their difference), the encoder stage (1–4) and head
    (or the mean of the heads), the query point (y, x as fractions of the image) for encoder
    attention, and the overlay opacity. Maps are computed with the models in eval mode when an
    image is first needed (the first image when the explorer is created) and cached per image.

    Works in JupyterLab and Colab (ipywidgets 8; on Colab call
    ``google.colab.output.enable_custom_widget_manager()`` first). The figure is rendered to a
    PNG inside an ``ipywidgets.Image``, so it needs no interactive matplotlib backend. Where
    widgets are not rendered (a static HTML copy, nbviewer, a terminal) use
    :meth:`static_figure`.

    Example::

        explorer = AttentionExplorer(teacher, student, image_paths, mask_paths, image_size=352)
        explorer.show()                  # the widget
        explorer.static_figure()         # the same maps as one figure, for static copies

    Args:
        teacher, student: Polyp-PVT models (encoder attention needs ``pvt_v2_*`` encoders in
            both; otherwise only the decoder/output kinds are offered).
        images: image paths, ``uint8 (H, W, 3)`` arrays or ``(3, H, W)`` tensors in [0, 1].
        masks: optional matching mask paths or ``(H, W)`` arrays (drawn as contours).
        names: labels for the picker (default: file stems, or "image i").
        image_size: side the models run at (a multiple of 32).
        temperature: T of the L_AT distributions.
        block: which block of each encoder stage (-1: the last).
        dpi: resolution of the rendered widget figure.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module,
                 images: Sequence[str | os.PathLike[str] | np.ndarray | Tensor],
                 masks: Sequence[str | os.PathLike[str] | np.ndarray | Tensor] | None = None,
                 names: Sequence[str] | None = None, *, image_size: int = 352,
                 temperature: float = 2.0, block: int = -1, dpi: int = 90) -> None:
        if not images:
            raise ValueError("AttentionExplorer needs at least one image")
        if masks is not None and len(masks) != len(images):
            raise ValueError(f"got {len(images)} images but {len(masks)} masks")
        if image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {image_size}")
        self.models = {"teacher": teacher, "student": student}
        self.images = list(images)
        self.masks = None if masks is None else list(masks)
        self.names = list(names) if names is not None else [
            Path(im).stem if isinstance(im, (str, os.PathLike)) else f"image {i}"
            for i, im in enumerate(self.images)]
        if len(self.names) != len(self.images):
            raise ValueError(f"got {len(self.images)} images but {len(self.names)} names")
        self.image_size = image_size
        self.temperature = temperature
        self.block = block
        self.dpi = dpi
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None, dict[str, _ModelMaps]]] = {}
        self.kinds = MAP_KINDS if self._has_encoder_attention() else MAP_KINDS[2:]
        self.widget: Any = None
        self.figure: Figure | None = None
        self.controls: dict[str, Any] = {}

    # ------------------------------------------------------------------ computing maps
    def _has_encoder_attention(self) -> bool:
        _, _, maps = self._compute(0)
        return all(m.encoder is not None for m in maps.values())

    def _compute(self, index: int) -> tuple[np.ndarray, np.ndarray | None, dict[str, _ModelMaps]]:
        """The resized image, mask and both models' maps for image ``index`` (cached)."""
        if index not in self._cache:
            image = _load_rgb(self.images[index])
            mask = None if self.masks is None else _load_mask(self.masks[index])
            resize = build_resize(self.image_size)
            if mask is None:
                image = resize(image=image)["image"]
            else:
                out = resize(image=image, mask=mask.astype(np.uint8))
                image, mask = out["image"], out["mask"].astype(bool)
            maps = {role: self._run(model, image) for role, model in self.models.items()}
            self._cache[index] = (image, mask, maps)
        return self._cache[index]

    def _run(self, model: nn.Module, image: np.ndarray) -> _ModelMaps:
        mean = torch.tensor(getattr(model, "input_mean", IMAGENET_MEAN)).view(3, 1, 1)
        std = torch.tensor(getattr(model, "input_std", IMAGENET_STD)).view(3, 1, 1)
        x = (torch.tensor(image, dtype=torch.float32).permute(2, 0, 1) / 255 - mean) / std
        x = x[None].to(next(model.parameters()).device)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model(x, return_features=True)
            try:
                encoder = encoder_attention_maps(model, x, block=self.block)
            except ValueError:  # no self-attention in this encoder (e.g. EfficientNet-Lite)
                encoder = None
        finally:
            model.train(was_training)
        out = PolypPVTOutput(**{k: ([t.detach().cpu() for t in v] if isinstance(v, list)
                                    else v.detach().cpu()) for k, v in vars(out).items()})
        if encoder is not None:
            for att in encoder:
                att.attention = att.attention.cpu()
        return _ModelMaps(out, encoder)

    def heads(self, stage: int) -> int:
        """Heads available at ``stage`` in both models (1..4)."""
        _, _, maps = self._compute(0)
        if any(m.encoder is None for m in maps.values()):
            return 0
        return min(m.encoder[stage - 1].attention.shape[1] for m in maps.values())

    @property
    def stages(self) -> int:
        """Number of encoder stages with attention (0 without encoder attention)."""
        _, _, maps = self._compute(0)
        return 0 if maps["teacher"].encoder is None else len(maps["teacher"].encoder)

    def _role_map(self, role: str, maps: _ModelMaps, kind: str, stage: int,
                  head: int | None, query: tuple[float, float]) -> np.ndarray:
        if kind in _ENCODER_KINDS:
            if maps.encoder is None:
                raise ValueError(f"the {role}'s encoder has no attention maps")
            att = maps.encoder[stage - 1]
            cell = _query_cell(query, att.query_grid) if kind == MAP_KINDS[0] else None
            return attention_to_image(att, cell, head)[0].numpy()
        out = maps.output
        if kind == "decoder spatial attention":
            return to_map(out.spatial_attention[0])
        if kind == "output probability":
            return to_map(torch.sigmoid(out.p2[0]))
        if kind == "L_AT distribution":
            p2 = out.p2[:1].float()
            source = attention_target(p2) if role == "teacher" else p2
            return _spatial_softmax(source, self.temperature)
        raise ValueError(f"unknown map kind {kind!r}; choose one of {self.kinds}")

    def compute_map(self, index: int = 0, source: str = "teacher",
                    kind: str = "output probability", stage: int = 1, head: int | None = None,
                    query: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
        """One map as shown by the explorer.

        Args:
            index: image index.
            source: ``"teacher"``, ``"student"`` or ``"difference"`` (teacher − student, the
                student's map resized to the teacher's when they differ).
            kind: one of :attr:`kinds`.
            stage, head, query: for the encoder kinds: stage 1–4, head index or None for the
                mean of the heads, query ``(y, x)`` in [0, 1].

        Returns:
            The ``(h, w)`` map: the key grid for encoder attention, stride 4 for the spatial
            attention, the input size otherwise.
        """
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if kind not in self.kinds:
            raise ValueError(f"kind must be one of {self.kinds}, got {kind!r}")
        _, _, maps = self._compute(index)
        if source != "difference":
            return self._role_map(source, maps[source], kind, stage, head, query)
        t = self._role_map("teacher", maps["teacher"], kind, stage, head, query)
        s = self._role_map("student", maps["student"], kind, stage, head, query)
        return t - _resize(s, t.shape, nearest=kind in _ENCODER_KINDS)

    # ------------------------------------------------------------------ static figure
    def static_figure(self, index: int = 0, stage: int | None = None,
                      query: tuple[float, float] = (0.5, 0.5), alpha: float = 0.6) -> Figure:
        """Every map kind (columns) for teacher, student and difference (rows), one image.

        The fallback where widgets cannot be shown; encoder attention is the mean of the heads
        at ``stage`` (default: the last stage).
        """
        image, mask, _ = self._compute(index)
        rgb = to_rgb(image)
        stage = stage or max(self.stages, 1)
        fig, axes = _subplots(len(SOURCES), len(self.kinds), (2.3, 2.3))
        for c, kind in enumerate(self.kinds):
            for r, source in enumerate(SOURCES):
                ax = axes[r, c]
                m = self.compute_map(index, source, kind, stage, None, query)
                self._style(ax, rgb, m, kind, source, alpha)
                if mask is not None and mask.any() and not mask.all():
                    ax.contour(mask, levels=[0.5], colors=[GT_COLOR], linewidths=0.8)
                if kind == MAP_KINDS[0]:
                    _mark_query(ax, query, rgb.shape)
                short = kind.replace("encoder attention: ", f"stage {stage} ")
                ax.set_title(f"{source}\n{short}", fontsize=7)
        fig.suptitle(f"{self.names[index]}: teacher vs student maps", fontsize=10)
        return fig

    @staticmethod
    def _style(ax: Axes, rgb: np.ndarray, m: np.ndarray, kind: str, source: str,
               alpha: float) -> Any:
        if source == "difference":
            bound = float(np.abs(m).max()) or 1.0
            return _draw_map(ax, rgb, m, alpha=alpha, cmap=DIFF_CMAP, vmin=-bound, vmax=bound,
                             nearest=kind in _ENCODER_KINDS)
        vmax = 1.0 if kind in ("output probability", "decoder spatial attention") else (
            float(m.max()) or 1.0)
        return _draw_map(ax, rgb, m, alpha=alpha, cmap=MAP_CMAP, vmin=0.0, vmax=vmax,
                         nearest=kind in _ENCODER_KINDS)

    # ------------------------------------------------------------------ widgets
    def build(self) -> Any:
        """Create the widget (an ``ipywidgets.VBox``); :meth:`show` calls this."""
        import ipywidgets as w

        stages = self.stages
        c = self.controls = {
            "image": w.Dropdown(options=[(n, i) for i, n in enumerate(self.names)], value=0,
                                description="image"),
            "kind": w.Dropdown(options=list(self.kinds), value=self.kinds[0],
                               description="map", layout=w.Layout(width="360px")),
            "source": w.ToggleButtons(options=list(SOURCES), value="teacher",
                                      description="source"),
            "stage": w.ToggleButtons(options=[(str(s), s) for s in range(1, stages + 1)] or
                                     [("—", 1)], value=max(stages, 1), description="stage"),
            "head": w.Dropdown(description="head"),
            "query_y": w.FloatSlider(0.5, min=0.0, max=1.0, step=0.01, description="query y"),
            "query_x": w.FloatSlider(0.5, min=0.0, max=1.0, step=0.01, description="query x"),
            "opacity": w.FloatSlider(0.6, min=0.0, max=1.0, step=0.05, description="opacity"),
        }
        for control in c.values():
            control.style.description_width = "initial"
        self._set_head_options()
        self._image_widget = w.Image(format="png")
        self._info = w.HTML()
        self._build_figure()
        c["stage"].observe(lambda _: self._set_head_options(), names="value")
        for control in c.values():
            control.observe(lambda _: self.update(), names="value")
        self.widget = w.VBox([
            w.HBox([c["image"], c["kind"]]),
            w.HBox([c["source"]]),
            w.HBox([c["stage"], c["head"]]),
            w.HBox([c["query_y"], c["query_x"], c["opacity"]]),
            self._image_widget,
            self._info,
        ])
        self.update()
        return self.widget

    def _set_head_options(self) -> None:
        heads = self.heads(self.controls["stage"].value) if self.stages else 0
        head = self.controls["head"]
        old = head.value
        options = [("mean of heads", -1), *((f"head {h + 1}", h) for h in range(heads))]
        head.options = options
        head.value = old if old is not None and old < heads else -1

    def _build_figure(self) -> None:
        fig, axes = _subplots(1, 2, (3.6, 3.6))
        image, _, _ = self._compute(0)
        rgb = to_rgb(image)
        self._base_artists = [axes[0, 0].imshow(rgb), axes[0, 1].imshow(rgb)]
        axes[0, 0].set_title("image (cyan: ground truth)", fontsize=9)
        axes[0, 0].set_axis_off()
        self._map_artist = axes[0, 1].imshow(np.zeros((2, 2)), cmap=MAP_CMAP, vmin=0, vmax=1,
                                             extent=_extent(rgb.shape))
        axes[0, 1].set_axis_off()
        fig.colorbar(self._map_artist, ax=axes[0, 1], shrink=0.8)
        self._query_markers = [ax.plot([], [], marker="+", color="cyan", ms=14, mew=2.5)[0]
                               for ax in axes[0]]
        self._contours: list[Any] = []
        self.figure, self._axes = fig, axes

    def state(self) -> dict[str, Any]:
        """The current selection (from the widgets)."""
        c = self.controls
        head = c["head"].value
        return {"index": c["image"].value, "kind": c["kind"].value,
                "source": c["source"].value, "stage": c["stage"].value,
                "head": None if head is None or head < 0 else head,
                "query": (c["query_y"].value, c["query_x"].value),
                "opacity": c["opacity"].value}

    @property
    def map_artist(self) -> Any:
        """The ``AxesImage`` holding the displayed map (its array changes with the controls)."""
        return self._map_artist

    @property
    def png(self) -> bytes:
        """The PNG currently shown by the widget."""
        return bytes(self._image_widget.value)

    def update(self) -> None:
        """Redraw the figure for the current control values and push it into the widget."""
        s = self.state()
        encoder = s["kind"] in _ENCODER_KINDS
        for name in ("stage", "head", "query_y", "query_x"):
            self.controls[name].disabled = not encoder or (
                name.startswith("query") and s["kind"] != MAP_KINDS[0])
        image, mask, _ = self._compute(s["index"])
        rgb = to_rgb(image)
        m = self.compute_map(s["index"], s["source"], s["kind"], s["stage"], s["head"],
                             s["query"])
        for artist in self._base_artists:
            artist.set_data(rgb)
        for contour in self._contours:
            contour.remove()
        self._contours = []
        if mask is not None and mask.any() and not mask.all():
            self._contours.append(self._axes[0, 0].contour(mask, levels=[0.5],
                                                           colors=[GT_COLOR], linewidths=1.2))
        artist = self._map_artist
        artist.set_data(m)
        artist.set_extent(_extent(rgb.shape))
        artist.set_alpha(s["opacity"])
        artist.set_interpolation("nearest" if encoder else "bilinear")
        if s["source"] == "difference":
            bound = float(np.abs(m).max()) or 1.0
            artist.set_cmap(DIFF_CMAP)
            artist.set_clim(-bound, bound)
        else:
            artist.set_cmap(MAP_CMAP)
            fixed = s["kind"] in ("output probability", "decoder spatial attention")
            artist.set_clim(0.0, 1.0 if fixed else float(m.max()) or 1.0)
        y, x = s["query"]
        point = ([x * (rgb.shape[1] - 1)], [y * (rgb.shape[0] - 1)])
        for marker in self._query_markers:
            marker.set_data(*(point if s["kind"] == MAP_KINDS[0] else ([], [])))
        detail = ""
        if encoder:
            head = "mean of heads" if s["head"] is None else f"head {s['head'] + 1}"
            detail = f" · stage {s['stage']} · {head}"
        self._axes[0, 1].set_title(f"{s['source']}: {s['kind']}{detail}", fontsize=9)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=self.dpi)
        self._image_widget.value = buffer.getvalue()
        self._info.value = self._describe(s, m)

    def _describe(self, s: dict[str, Any], m: np.ndarray) -> str:
        text = f"<small>{self.names[s['index']]} · map {m.shape[0]}×{m.shape[1]}"
        if s["kind"] in _ENCODER_KINDS:
            _, _, maps = self._compute(s["index"])
            att = maps["teacher"].encoder[s["stage"] - 1]
            text += (f" · queries {att.query_grid[0]}×{att.query_grid[1]}, keys "
                     f"{att.key_grid[0]}×{att.key_grid[1]} (spatial reduction)")
        return text + f" · range [{m.min():.3g}, {m.max():.3g}]</small>"

    def show(self) -> None:
        """Display the widget; without a widget frontend, display :meth:`static_figure`."""
        from IPython.display import display

        try:
            widget = self.widget or self.build()
        except ImportError:  # ipywidgets missing: the static figure says the same
            display(self.static_figure())
            return
        display(widget)
