"""Shared helpers of the figures: tensors/arrays to RGB images and maps, subplot grids, colours."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

GT_COLOR = "#00e5ff"  # cyan: ground truth
PRED_COLOR = "#ffd600"  # yellow: prediction (both stand out on pink mucosa, colour-blind safe)
MAP_CMAP = "inferno"
DIFF_CMAP = "RdBu_r"  # signed values: blue < 0 < red, white at 0

# One colour per method in every figure (Okabe–Ito, colour-blind safe, then greys): the
# teacher, the student alone and each distillation variant of notebook 04 keep their colour
# from the ablation bars to the gradient curves and the evaluation of notebook 05.
METHOD_COLORS: dict[str, str] = {
    "teacher": "#6b6b6b",
    "student alone": "#E69F00",
    "student alone × 0.7": "#F0E442",
    "+L_AT": "#56B4E9",
    "+L_SGM": "#D55E00",
    "KDAS": "#0072B2",
    "KDAS, reference-fixed L_AT": "#7FA7C9",
    "KDAS, reference L_AT": "#C8C8C8",
    "pixel KD": "#CC79A7",
    "CWD": "#009E73",
    "authors' teacher": "#000000",
    "authors' student": "#332288",
}
_ALIASES = {"student (KDAS)": "KDAS", "student": "KDAS"}
_SPARE = ("#882255", "#117733", "#999933", "#44AA99", "#AA4499", "#DDCC77")


def method_color(name: str) -> str:
    """The colour of a method (a key of :data:`METHOD_COLORS`, ``"student (KDAS)"`` included);
    other names get a fixed spare colour chosen from the name, the same in every figure."""
    key = _ALIASES.get(name, name)
    if key in METHOD_COLORS:
        return METHOD_COLORS[key]
    return _SPARE[sum(map(ord, name)) % len(_SPARE)]

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


def _suptitle(fig: Figure, *parts: str | None) -> None:
    """The figure's title from the given parts (None and empty ones skipped), e.g. the data set
    with its label and what the panels show."""
    text = " — ".join(p for p in parts if p)
    if text:
        fig.suptitle(text, fontsize=10)


def _hide_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


def _extent(shape: tuple[int, ...]) -> tuple[float, float, float, float]:
    """imshow extent that stretches any map over an image of ``shape`` (pixel centres)."""
    h, w = shape[:2]
    return (-0.5, w - 0.5, h - 0.5, -0.5)
