"""A trained model as a Hugging Face Hub folder: ``model.safetensors`` + ``config.json``.

The folder that ``kdas-lite package`` writes (:mod:`kdas_lite.package`) holds:

- ``model.safetensors``: the state dict (tensors only: the safetensors format is a JSON header
  and raw bytes, so reading it can never run code, unlike a pickle-based ``.pth``);
- ``config.json``: the architecture record (:meth:`~kdas_lite.models.PolypPVT.config`), the
  size the model was trained at and its input normalisation;
- ``README.md``: the model card (not needed to load the model).

:func:`load_package` rebuilds the model from such a folder, or from a Hub repository id
(``owner/name``, downloaded with ``huggingface_hub.hf_hub_download``, which honours
``HF_ENDPOINT`` and the local cache). The architecture record is checked before anything is
built (:func:`~kdas_lite.models.polyp_pvt.validate_config`), and the weights are loaded
strictly. ``kdas-lite evaluate / predict / export`` and :func:`kdas_lite.runs.load_trained`
accept either wherever they accept a checkpoint.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdas_lite.errors import CheckpointError

__all__ = ["CONFIG_NAME", "PACKAGE_FORMAT", "WEIGHTS_NAME", "is_package", "load_package",
           "package_config", "resolve_package"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
PACKAGE_FORMAT = "kdas_lite.package/1"
"""``config.json``'s ``format`` entry."""

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _is_repo_id(ref: str) -> bool:
    """``owner/name`` that is not a local path and not a checkpoint file name."""
    return (bool(_REPO_ID.match(ref)) and not Path(ref).exists()
            and Path(ref).suffix.lower() not in (".pth", ".pt", ".ckpt", ".onnx", ".bin"))


def is_package(ref: str | os.PathLike[str]) -> bool:
    """True for a folder holding ``model.safetensors`` and ``config.json``, or a string that
    can only be a Hub repository id (``owner/name`` that is not a local path)."""
    path = Path(ref)
    if path.is_dir():
        return (path / WEIGHTS_NAME).is_file() and (path / CONFIG_NAME).is_file()
    return isinstance(ref, str) and _is_repo_id(ref)


def resolve_package(ref: str | os.PathLike[str], *, revision: str | None = None) -> Path:
    """The local folder of a package: ``ref`` itself, or the Hub snapshot of the repository
    ``ref`` (its ``config.json`` and ``model.safetensors``, downloaded once and cached).

    Raises:
        CheckpointError: a folder without the two files, or a repository that cannot be
            downloaded (the Hub unreachable, no such repository, files missing).
    """
    path = Path(ref)
    if path.is_dir():
        missing = [name for name in (WEIGHTS_NAME, CONFIG_NAME) if not (path / name).is_file()]
        if missing:
            raise CheckpointError(f"{path} is a folder without {' and '.join(missing)}: not a "
                                  "model folder written by kdas-lite package (pass a .pth "
                                  "checkpoint, or package one: kdas-lite package CKPT FOLDER)")
        return path
    try:
        from huggingface_hub import hf_hub_download

        files = [Path(hf_hub_download(str(ref), name, revision=revision))
                 for name in (CONFIG_NAME, WEIGHTS_NAME)]
    except Exception as exc:  # network errors, 404s, offline mode: all the same to the user
        first = (str(exc) or type(exc).__name__).splitlines()[0]
        raise CheckpointError(f"{ref} is neither a local file or folder nor a Hub model "
                              f"repository that could be downloaded ({type(exc).__name__}: "
                              f"{first}); check the path, or the repository id and "
                              "HF_ENDPOINT") from exc
    if files[0].parent != files[1].parent:
        raise CheckpointError(f"{ref}: the Hub returned its files in two folders")
    return files[0].parent


def package_config(ref: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``config.json`` of a package (folder or repository id), checked.

    Raises:
        CheckpointError: unreadable JSON, another format, or an architecture record or
            training size out of range.
    """
    from kdas_lite.config import MAX_IMAGE_SIZE
    from kdas_lite.models.polyp_pvt import validate_config

    path = resolve_package(ref) / CONFIG_NAME
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict) or config.get("format") != PACKAGE_FORMAT:
        raise CheckpointError(f"{path} is not a kdas-lite model config (format "
                              f"{PACKAGE_FORMAT!r}); write the folder with kdas-lite package")
    validate_config(config.get("arch"), source=f"{path} ('arch')")
    size = config.get("image_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size % 32
                             or not 32 <= size <= MAX_IMAGE_SIZE):
        raise CheckpointError(f"{path}: image_size={size!r:.40} is not a multiple of 32 from 32 "
                              f"to {MAX_IMAGE_SIZE}")
    return config


def load_package(ref: str | os.PathLike[str], device: str | torch.device = "cpu"
                 ) -> nn.Module:
    """Rebuild the model of a package folder or Hub repository, in eval mode.

    Only ``safetensors`` is read for the weights: nothing is unpickled.

    Raises:
        CheckpointError: see :func:`package_config`; weights that do not fit the
            architecture (missing / unexpected keys, other shapes) or an unreadable file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from kdas_lite.models import PolypPVT
    from kdas_lite.models.polyp_pvt import validate_config

    folder = resolve_package(ref)
    config = package_config(folder)
    model = PolypPVT(**validate_config(config["arch"], source=str(folder / CONFIG_NAME)))
    try:
        state = load_file(folder / WEIGHTS_NAME)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {folder / WEIGHTS_NAME}: {exc}") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{folder / WEIGHTS_NAME} does not fit the architecture in "
                              f"{CONFIG_NAME} ({first}); the folder is damaged") from exc
    return model.to(torch.device(device)).eval()
