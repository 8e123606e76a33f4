"""Safe checkpoint files: atomic writes and ``weights_only`` reads.

- :func:`save_checkpoint` writes to a temporary file in the same folder, flushes it to disk and
  renames it over the target, so a crash mid-write leaves the previous checkpoint intact. The
  file gets the permissions of the umask, like every other output (shared course machines).
- A process killed mid-write (``kill -9``, out of memory) cannot delete its temporary file;
  :func:`remove_stale_temp_files` does, when the next run starts in that folder.
- :func:`load_checkpoint` always uses ``torch.load(..., weights_only=True)``: a file that would
  need to run code when unpickled is refused, and any other file that is not a checkpoint
  (empty, text, JSON, another zip, truncated) gives a :class:`~kdas_lite.errors.CheckpointError`
  that names the file and the fix.
"""

from __future__ import annotations

import os
import pickle
import secrets
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from kdas_lite.errors import CheckpointError

__all__ = ["load_checkpoint", "remove_stale_temp_files", "save_checkpoint"]


def _temp_name(path: Path) -> Path:
    """The temporary sibling :func:`save_checkpoint` writes first: ``.<name>.<random>.tmp``."""
    return path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"


def save_checkpoint(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` with ``torch.save`` atomically (temp file + ``fsync`` + rename).

    The file is created with the permissions the umask gives any new file (not the private
    0600 of :func:`tempfile.mkstemp`), so others can read it where the umask allows.

    Args:
        obj: anything ``torch.save`` accepts; keep it to tensors, numbers, strings, lists and
            dicts so that :func:`load_checkpoint` can read it with ``weights_only=True``.
        path: destination file; its folder is created if needed.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)  # the kernel applies the umask
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def remove_stale_temp_files(folder: str | os.PathLike[str], names: Iterable[str]) -> list[Path]:
    """Delete the temporary files a killed :func:`save_checkpoint` left for ``names``.

    Call it when a run starts in ``folder`` (before it saves anything): a temporary file of
    ``best.pth`` can be as large as the checkpoint (300 MB for PVTv2-b2) and nothing else ever
    removes it. Only ``.<name>.*.tmp`` files of the given names are touched.

    Args:
        folder: the run folder (may not exist yet).
        names: checkpoint file names, e.g. ``("best.pth", "last.pth")``.

    Returns:
        The deleted files.
    """
    folder = Path(folder)
    stale = [p for name in names for p in folder.glob(f".{name}.*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


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
    # Junk bytes can make the unpickler warn (e.g. about an unknown protocol) before it fails:
    # the warnings are held back and shown only when the file loads.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            obj = torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            if "GLOBAL" not in str(exc):  # not a refused object: the bytes are not a pickle
                raise CheckpointError(
                    f"cannot read checkpoint {path}: it is not a PyTorch checkpoint (corrupt "
                    "or foreign file). Re-download it or re-run the training that wrote it."
                ) from exc
            raise CheckpointError(
                f"refusing to load {path}: it contains objects that only a full pickle load "
                "could create (possibly code). Only load checkpoints from sources you trust; "
                "re-save it as a plain state dict with torch.save(model.state_dict(), ...). "
                f"Detail: {exc}"
            ) from exc
        except Exception as exc:  # junk bytes raise anything: KeyError, IndexError, ...
            raise CheckpointError(
                f"cannot read checkpoint {path}: the file is truncated or not a PyTorch "
                f"checkpoint ({type(exc).__name__}: {exc}). Re-download it or re-run the "
                "training that wrote it."
            ) from exc
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)
    return obj
