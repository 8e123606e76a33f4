"""Capture the PVTv2 encoder's self-attention maps for visualisation.

Each PVTv2 block attends from every token of its stage (the *queries*, an ``h × w`` grid) to a
spatially reduced copy of the same map (the *keys*, ``h_r × w_r`` = ``h/R × w/R`` with the
stage's reduction ratio R = 8, 4, 2, 1):

    A = softmax(Q Kᵀ / √d)  with  Q = X W_q,  K = LN(SR(X)) W_k,

one ``(N_q, N_kv)`` matrix per head. timm computes it inside a fused kernel and never stores it,
so :func:`encoder_attention_maps` puts a forward hook on each chosen ``pvt_v2.Attention`` module
that recomputes ``A`` from the module's own layers and inputs; the hooks are removed before it
returns. :func:`attention_to_image` turns one map into the ``(h_r, w_r)`` image the attention
explorer shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from timm.models.pvt_v2 import Attention
from torch import Tensor, nn

if TYPE_CHECKING:
    from kdas_lite.models.polyp_pvt import PolypPVT

__all__ = ["EncoderAttention", "attention_to_image", "encoder_attention_maps",
           "has_encoder_attention"]


@dataclass
class EncoderAttention:
    """The attention of one encoder block.

    Attributes:
        stage: encoder stage, 1..4 (strides 4, 8, 16, 32).
        block: index of the block inside the stage.
        attention: ``(B, heads, N_q, N_kv)``, rows sum to 1; ``N_q = h·w``, ``N_kv = h_r·w_r``
            (row-major grids).
        query_grid: ``(h, w)`` of the stage's feature map.
        key_grid: ``(h_r, w_r)`` after the spatial reduction.
    """

    stage: int
    block: int
    attention: Tensor
    query_grid: tuple[int, int]
    key_grid: tuple[int, int]


def _attention_probs(module: Attention, x: Tensor, feat_size: tuple[int, int]
                     ) -> tuple[Tensor, tuple[int, int]]:
    """Recompute ``softmax(q kᵀ · scale)`` of a timm ``pvt_v2.Attention`` for input ``x``
    ``(B, N, C)`` on an ``(h, w)`` grid; returns it with the key grid."""
    b, n, c = x.shape
    q = module.q(x).reshape(b, n, module.num_heads, -1).permute(0, 2, 1, 3)
    keys, key_grid = x, tuple(feat_size)
    if module.sr is not None:  # spatial reduction (linear variants pool to 7×7 first)
        spatial = x.permute(0, 2, 1).reshape(b, c, *feat_size)
        if module.pool is not None:
            spatial = module.pool(spatial)
        spatial = module.sr(spatial)
        key_grid = tuple(spatial.shape[-2:])
        keys = module.norm(spatial.reshape(b, c, -1).permute(0, 2, 1))
        if module.act is not None:
            keys = module.act(keys)
    k = module.kv(keys).reshape(b, -1, 2, module.num_heads, module.head_dim)[:, :, 0]
    k = k.permute(0, 2, 1, 3)
    return ((q * module.scale) @ k.transpose(-2, -1)).softmax(dim=-1), key_grid


def _stage_attentions(backbone: nn.Module) -> list[list[Attention]]:
    """The ``Attention`` modules of each PVTv2 stage, in block order."""
    stages = [
        [blk.attn for blk in module.blocks]
        for name, module in backbone.named_children()
        if name.startswith("stages") and hasattr(module, "blocks")
    ]
    return [s for s in stages if s and all(isinstance(a, Attention) for a in s)]


def has_encoder_attention(model: PolypPVT) -> bool:
    """Whether ``model``'s encoder has self-attention to show (PVTv2: yes; EfficientNet: no)."""
    return bool(_stage_attentions(model.backbone))


def encoder_attention_maps(model: PolypPVT, images: Tensor, block: int = -1
                           ) -> list[EncoderAttention]:
    """The spatial-reduction attention of one block per encoder stage (PVTv2 encoders).

    The model runs its encoder once under ``torch.no_grad()`` in its current mode (call
    ``model.eval()`` first for deterministic maps).

    Args:
        model: a :class:`~kdas_lite.models.PolypPVT` on a ``pvt_v2_*`` encoder.
        images: ``(B, 3, H, W)`` normalised images, H and W multiples of 32.
        block: which block of every stage (Python indexing; -1 = the last, the most refined).

    Returns:
        Four :class:`EncoderAttention`, stages 1..4, with ``attention`` ``(B, heads, N_q, N_kv)``:
        for PVTv2-b2 at 352 px, heads = 1, 2, 5, 8, query grids 88², 44², 22², 11² and key
        grids 11² in every stage.

    Raises:
        ValueError: the encoder has no attention layers (e.g. EfficientNet-Lite), or ``block``
            does not exist in every stage.
    """
    stages = _stage_attentions(model.backbone)
    if not stages:
        raise ValueError(
            f"encoder {model.encoder_name!r} has no self-attention layers to show. Use a "
            "pvt_v2_* encoder, or look at the decoder's CIM spatial attention instead: "
            "model(images, return_features=True).spatial_attention, (B, 1, H/4, W/4)."
        )
    depths = [len(s) for s in stages]
    if not all(-d <= block < d for d in depths):
        raise ValueError(f"block {block} does not exist in every stage (depths {depths})")
    model.check_input(images)

    captured: list[EncoderAttention] = []

    def make_hook(stage: int, index: int):
        def hook(module: Attention, args: tuple[Any, ...], kwargs: dict[str, Any], _out: Any):
            x = args[0]
            feat_size = args[1] if len(args) > 1 else kwargs["feat_size"]
            probs, key_grid = _attention_probs(module, x, feat_size)
            captured.append(EncoderAttention(stage, index, probs, tuple(feat_size), key_grid))

        return hook

    handles = []
    try:
        for stage, attentions in enumerate(stages, start=1):
            index = block % len(attentions)
            handles.append(attentions[index].register_forward_hook(
                make_hook(stage, index), with_kwargs=True))
        with torch.no_grad():
            model.backbone(images)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def attention_to_image(att: EncoderAttention, query: tuple[int, int] | None = None,
                       head: int | None = None) -> Tensor:
    """The attention one query position pays to every key position, as an image.

    Args:
        att: one stage's :class:`EncoderAttention`.
        query: ``(row, col)`` on ``att.query_grid``; ``None`` averages over all queries.
        head: one attention head; ``None`` averages over heads.

    Returns:
        ``(B, h_r, w_r)``; each map sums to 1 over the key positions.
    """
    a = att.attention
    if head is not None:
        if not -a.shape[1] <= head < a.shape[1]:
            raise ValueError(f"head {head} out of range: stage {att.stage} has {a.shape[1]} heads")
        a = a[:, head]
    else:
        a = a.mean(dim=1)
    if query is None:
        a = a.mean(dim=1)
    else:
        (row, col), (h, w) = query, att.query_grid
        if not (0 <= row < h and 0 <= col < w):
            raise ValueError(f"query {query} outside the stage-{att.stage} grid {h}x{w}")
        a = a[:, row * w + col]
    return a.reshape(a.shape[0], *att.key_grid)
