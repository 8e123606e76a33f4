"""Safe checkpoint files: atomic writes and ``weights_only`` reads.

- :func:`save_checkpoint` writes to a temporary file in the same folder, flushes it to disk and
  renames it over the target, so a crash mid-write leaves the previous checkpoint intact.
- :func:`load_checkpoint` always uses ``torch.load(..., weights_only=True)``: a file that would
  need to run code when unpickled is refused, and a truncated or foreign file gives a
  :class:`~kdas_lite.errors.CheckpointError` that names the file and the fix.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from kdas_lite.errors import CheckpointError

__all__ = ["load_checkpoint", "save_checkpoint"]


def save_checkpoint(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` with ``torch.save`` atomically (temp file + ``fsync`` + rename).

    Args:
        obj: anything ``torch.save`` accepts; keep it to tensors, numbers, strings, lists and
            dicts so that :func:`load_checkpoint` can read it with ``weights_only=True``.
        path: destination file; its folder is created if needed.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Any:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and clear errors.

    Args:
        path: the ``.pth`` / ``.pt`` file.
        map_location: where tensors are placed (default CPU).

    Returns:
        The stored object (usually a dict).

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, or unsafe (it contains
            pickled code that ``weights_only=True`` refuses to run).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}. Check the path, or train a model first "
            "(kdas-lite train-teacher / distill)."
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):  # not a refused object: the bytes are simply not a pickle
            raise CheckpointError(
                f"cannot read checkpoint {path}: it is not a PyTorch checkpoint (corrupt or "
                "foreign file). Re-download it or re-run the training that wrote it."
            ) from exc
        raise CheckpointError(
            f"refusing to load {path}: it contains objects that only a full pickle load could "
            "create (possibly code). Only load checkpoints from sources you trust; re-save it as "
            f"a plain state dict with torch.save(model.state_dict(), ...). Detail: {exc}"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or not a PyTorch checkpoint "
            f"({type(exc).__name__}: {exc}). Re-download it or re-run the training that wrote it."
        ) from exc
