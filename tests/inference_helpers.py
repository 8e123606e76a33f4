"""Stand-in segmentation models and image folders for the inference and deploy tests (no
training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn


class RednessModel(nn.Module):
    """Calls "polyp" wherever the red channel is bright; records what it was given.

    Attributes:
        seen: per forward call, the input shape ``(B, 3, S, S)`` and PyTorch's thread count.
    """

    input_mean = (0.5, 0.5, 0.5)
    input_std = (0.5, 0.5, 0.5)
    encoder_name = "redness"

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(8.0))
        self.seen: list[tuple[tuple[int, ...], int]] = []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen.append((tuple(x.shape), torch.get_num_threads()))
        logit = self.gain * x[:, :1]  # red in [-1, 1] after normalisation
        return logit, logit


class TinySegmenter(nn.Module):
    """Two convolutions, (P1, P2) logits: exports to ONNX (and INT8) in seconds."""

    input_mean = (0.5, 0.5, 0.5)
    input_std = (0.5, 0.5, 0.5)
    encoder_name = "tiny"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.conv2(torch.relu(self.conv1(x))) + 6 * (x[:, :1] - x[:, 1:2])
        return p, p


def disc_image(path: Path, size: int = 64, radius: int = 14) -> Path:
    """A grey image with a bright red disc in the middle (the "polyp")."""
    yy, xx = np.mgrid[:size, :size]
    image = np.full((size, size, 3), 60, np.uint8)
    image[(yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= radius**2] = (250, 40, 40)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path
