"""Figures of notebook 06 (deploying the student): its three forms side by side, and a video."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from kdas_lite.viz._common import GT_COLOR, PRED_COLOR

_FORM_COLORS = ("#0072B2", "#56B4E9", "#009E73")  # PyTorch fp32, ONNX fp32, ONNX INT8


def deploy_figure(frames_per_s: Mapping[str, float], mdice: Mapping[str, float], *,
                  title: str = "") -> Figure:
    """Two panels over the forms of one student (``form → value``, in the same order):
    frames/s at batch 1 (left) and the image-weighted mean Dice (right), each bar labelled."""
    forms = list(frames_per_s)
    colors = [_FORM_COLORS[i % len(_FORM_COLORS)] for i in range(len(forms))]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), constrained_layout=True)
    plt.close(fig)  # returned: Jupyter shows it once, as the cell's value
    for ax, values, label, fmt in ((axes[0], [frames_per_s[f] for f in forms],
                                    "frames/s (batch 1)", "{:.1f}"),
                                   (axes[1], [mdice[f] for f in forms], "mDice", "{:.3f}")):
        bars = ax.barh(forms, values, color=colors)
        ax.bar_label(bars, [fmt.format(v) for v in values], padding=3)
        ax.set_xlabel(label)
        ax.set_xlim(0, max(values) * 1.25 if max(values) > 0 else 1)
        ax.invert_yaxis()
    axes[1].set_yticklabels([])
    if title:
        fig.suptitle(title)
    return fig


def video_figure(frames: Sequence[np.ndarray], frame_ids: Sequence[int],
                 predicted_area: Sequence[float], true_area: Sequence[float] | None = None, *,
                 title: str = "") -> Figure:
    """A strip of overlaid video frames (``(H, W, 3)`` uint8, labelled by ``frame_ids``) above
    the predicted polyp area per frame (% of the frame; ``true_area``: the ground truth's)."""
    fig = plt.figure(figsize=(2.2 * max(len(frames), 4), 5.4), constrained_layout=True)
    plt.close(fig)
    grid = fig.add_gridspec(2, max(len(frames), 1), height_ratios=[1.1, 1])
    for i, (frame, index) in enumerate(zip(frames, frame_ids, strict=True)):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(frame)
        ax.set_title(f"frame {index}", fontsize=9)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    x = np.arange(len(predicted_area))
    ax.plot(x, predicted_area, color=PRED_COLOR, lw=2, label="predicted", marker=".")
    if true_area is not None:
        ax.plot(x, true_area, color=GT_COLOR, lw=2, ls="--", label="ground truth")
    ax.set_xlabel("frame of the clip")
    ax.set_ylabel("polyp area (% of the frame)")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig
