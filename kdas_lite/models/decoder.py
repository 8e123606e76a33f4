"""The Polyp-PVT decoder (Dong et al., "Polyp-PVT: Polyp Segmentation with Pyramid Vision
Transformers", 2021): CIM, CFM and SAM.

The encoder gives four feature maps ``X1..X4`` at strides 4, 8, 16 and 32 with widths
``C1..C4``. The decoder works at ``c`` = 32 channels:

- **CIM** (camouflage identification module) cleans the low-level stage ``X1`` with a channel
  attention followed by a spatial attention (CBAM style):
  ``X1' = CA(X1) ⊙ X1``, ``CIM = SA(X1') ⊙ X1'``.
- **CFM** (cascaded fusion module) fuses the high-level stages ``X2..X4`` (after 1×1
  translayers to ``c`` channels) into one ``(B, c, H/8, W/8)`` map.
- **SAM** (similarity aggregation module) injects the CIM's low-level detail into the CFM map
  with a graph convolution over 16 node features pooled from the CIM-weighted map.

Everything here follows the authors' ``lib/pvt.py`` line by line, including its quirks (a
``BasicConv2d`` with no activation, the SAM's nearest-neighbour resize and its softmax over
channels), so that the authors' checkpoints load and behave the same. Sub-module attribute names
(``conv_upsample1``, ``fc1``, ``conv_state`` ...) are the original ones; only the top-level names
in :class:`~kdas_lite.models.PolypPVT` are snake_case.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CFM", "GCN", "SAM", "BasicConv2d", "ChannelAttention", "SpatialAttention"]


def _up2(x: Tensor) -> Tensor:
    """×2 bilinear upsampling with ``align_corners=True`` (the CFM's ``nn.Upsample``)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class BasicConv2d(nn.Module):
    """``BN(Conv(x))``: convolution without bias followed by batch norm, **no activation**.

    The original class builds a ReLU but never calls it; keeping it out preserves the
    behaviour of the authors' trained weights. Shapes: ``(B, in, H, W) -> (B, out, H', W')``.
    """

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_planes)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class ChannelAttention(nn.Module):
    """CIM channel attention ``CA(X) = σ(fc2(ReLU(fc1(AvgPool(X)))) + fc2(ReLU(fc1(MaxPool(X)))))``.

    ``fc1``/``fc2`` are bias-free 1×1 convolutions ``C → C//16 → C``.
    Shapes: ``(B, C, H, W) -> (B, C, 1, 1)`` weights in ``(0, 1)``.
    """

    def __init__(self, in_planes: int, ratio: int = 16) -> None:
        super().__init__()
        hidden = max(in_planes // ratio, 1)
        self.fc1 = nn.Conv2d(in_planes, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, in_planes, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        avg = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        peak = self.fc2(F.relu(self.fc1(F.adaptive_max_pool2d(x, 1))))
        return torch.sigmoid(avg + peak)


class SpatialAttention(nn.Module):
    """CIM spatial attention ``SA(X) = σ(Conv7×7([mean_c(X); max_c(X)]))`` (bias-free conv).

    Shapes: ``(B, C, H, W) -> (B, 1, H, W)`` weights in ``(0, 1)``.
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv1(pooled))


class CFM(nn.Module):
    """Cascaded fusion module. Called as ``CFM(T4, T3, T2)`` on the translayer outputs.

    With ``up`` = ×2 bilinear upsampling and ``cuK``/``ccK`` the ``conv_upsampleK`` /
    ``conv_concatK`` :class:`BasicConv2d` (3×3):

    - ``X2_1 = cu1(up(T4)) ⊙ T3``
    - ``X3_1 = cu2(up(up(T4))) ⊙ cu3(up(T3)) ⊙ T2``
    - ``X2_2 = cc2([X2_1; cu4(up(T4))])``                 (2c channels, stride 16)
    - ``X3_2 = cc3([X3_1; cu5(up(X2_2))])``               (3c channels, stride 8)
    - ``CFM = conv4(X3_2)``                               (c channels, stride 8)

    Shapes: ``(B, c, H/32, W/32)``, ``(B, c, H/16, W/16)``, ``(B, c, H/8, W/8)``
    ``-> (B, c, H/8, W/8)``.
    """

    def __init__(self, channel: int) -> None:
        super().__init__()
        c = channel
        self.conv_upsample1 = BasicConv2d(c, c, 3, padding=1)
        self.conv_upsample2 = BasicConv2d(c, c, 3, padding=1)
        self.conv_upsample3 = BasicConv2d(c, c, 3, padding=1)
        self.conv_upsample4 = BasicConv2d(c, c, 3, padding=1)
        self.conv_upsample5 = BasicConv2d(2 * c, 2 * c, 3, padding=1)
        self.conv_concat2 = BasicConv2d(2 * c, 2 * c, 3, padding=1)
        self.conv_concat3 = BasicConv2d(3 * c, 3 * c, 3, padding=1)
        self.conv4 = BasicConv2d(3 * c, c, 3, padding=1)

    def forward(self, x1: Tensor, x2: Tensor, x3: Tensor) -> Tensor:
        x2_1 = self.conv_upsample1(_up2(x1)) * x2
        x3_1 = self.conv_upsample2(_up2(_up2(x1))) * self.conv_upsample3(_up2(x2)) * x3
        x2_2 = self.conv_concat2(torch.cat((x2_1, self.conv_upsample4(_up2(x1))), dim=1))
        x3_2 = self.conv_concat3(torch.cat((x3_1, self.conv_upsample5(_up2(x2_2))), dim=1))
        return self.conv4(x3_2)


class GCN(nn.Module):
    """One graph-convolution step over ``N`` nodes with ``S`` state channels (SAM).

    ``GCN(V) = ReLU(W_s · (A · V − V))`` where ``A`` = ``conv1`` mixes nodes (Conv1d over the
    node axis, with bias) and ``W_s`` = ``conv2`` mixes state channels (no bias).
    Shapes: ``(B, S, N) -> (B, S, N)``.
    """

    def __init__(self, num_state: int, num_node: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(num_node, num_node, kernel_size=1)
        self.conv2 = nn.Conv1d(num_state, num_state, kernel_size=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(x.permute(0, 2, 1)).permute(0, 2, 1)
        return F.relu(self.conv2(h - x))


class SAM(nn.Module):
    """Similarity aggregation module: graph reasoning guided by the CIM.

    With ``X`` the CFM map ``(B, c, h, w)`` and ``E`` the downsampled CIM translayer
    ``(B, c, h, w)``:

    1. ``e = softmax_c(E)[:, 1]`` (the original's channel softmax; ``(B, 1, h, w)``);
    2. ``state = conv_state(X)`` and ``proj = conv_proj(X)``, both ``(B, S, h·w)``, S = 16;
    3. ``anchor = AvgPool_{(m+2)×(m+2)}(proj ⊙ e)`` cropped to its ``m×m`` interior: ``N = m²``
       = 16 node features ``(B, S, N)``;
    4. ``P = softmax_N(anchorᵀ · proj)`` ``(B, N, h·w)``: soft assignment of pixels to nodes;
    5. ``V = state · Pᵀ`` ``(B, S, N)``; ``V' = GCN(V)``;
    6. ``SAM = X + conv_extend(V' · P)`` reshaped to ``(B, c, h, w)``.
    """

    def __init__(self, num_in: int = 32, plane_mid: int = 16, mids: int = 4) -> None:
        super().__init__()
        self.num_s = plane_mid
        self.num_n = mids * mids
        self.priors = nn.AdaptiveAvgPool2d(output_size=(mids + 2, mids + 2))
        self.conv_state = nn.Conv2d(num_in, self.num_s, kernel_size=1)
        self.conv_proj = nn.Conv2d(num_in, self.num_s, kernel_size=1)
        self.gcn = GCN(num_state=self.num_s, num_node=self.num_n)
        self.conv_extend = nn.Conv2d(self.num_s, num_in, kernel_size=1, bias=False)

    def forward(self, x: Tensor, edge: Tensor) -> Tensor:
        n, _, h, w = x.shape
        edge = F.interpolate(edge, size=(h, w), mode="nearest")
        edge = torch.softmax(edge, dim=1)[:, 1:2]

        state = self.conv_state(x).view(n, self.num_s, -1)
        proj = self.conv_proj(x)
        anchor = self.priors(proj * edge)[:, :, 1:-1, 1:-1].reshape(n, self.num_s, -1)
        assign = torch.softmax(anchor.permute(0, 2, 1) @ proj.reshape(n, self.num_s, -1), dim=1)

        node_state = self.gcn(state @ assign.permute(0, 2, 1))
        return x + self.conv_extend((node_state @ assign).view(n, self.num_s, h, w))
