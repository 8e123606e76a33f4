"""The authors' released checkpoints: the Polyp-PVT teacher and the KDAS student.

The KDAS repository (github.com/huyquoctrinh/KDAS) links one Google Drive folder that holds
the Polyp-PVT teacher (PVTv2-b2) and the distilled "Polyp-PVT-B0" student, both saved as
``torch.save(model.state_dict())`` of the authors' ``lib/pvt.py``. Google Drive has no stable
direct links, so the folder is fetched with `gdown <https://github.com/wkentaro/gdown>`_, the
ecosystem's tool for Drive (``pip install gdown``; the notebooks install it on Colab only).
A mirror or a test server can be given as plain URLs instead.

Which file is which is read from the weights, not the file names: each file is loaded into a
PVTv2-b2 teacher and, failing that, a PVTv2-b0 student with the authors' key map
(:func:`~kdas_lite.models.load_polyp_pvt_checkpoint`). These models were trained at 352 px on
the PraNet training set with ImageNet normalisation; evaluate them at 352 px.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from kdas_lite.errors import CheckpointError, KDASError
from kdas_lite.models.checkpoints import load_polyp_pvt_checkpoint
from kdas_lite.models.polyp_pvt import build_student, build_teacher

__all__ = ["AUTHORS_DRIVE_FOLDER", "fetch_authors_checkpoints", "load_authors_models"]

AUTHORS_DRIVE_FOLDER = "https://drive.google.com/drive/folders/1AMIXmyCcZTA0IfPTGOrdNjYvmIIfH-Ql"
"""The Drive folder of the teacher and student weights linked from the KDAS README."""

_BUILDERS = {"teacher": build_teacher, "student": build_student}


def _role_of(path: Path) -> tuple[str, nn.Module] | None:
    """(``"teacher"`` or ``"student"``, the loaded model) for an authors' file, else None."""
    for role, build in _BUILDERS.items():
        model = build()
        try:
            load_polyp_pvt_checkpoint(model, path)
        except CheckpointError:
            continue
        return role, model.eval()
    return None


def _download_drive_folder(url: str, dest: Path, progress: bool) -> list[Path]:
    try:
        import gdown
    except ImportError as exc:
        raise CheckpointError(
            "downloading the authors' checkpoints from Google Drive needs gdown: "
            "`pip install gdown` (the notebooks' Colab cell installs it), or download the files "
            f"of {url} in a browser into {dest} and pass that folder as checkpoint_dir."
        ) from exc
    files = gdown.download_folder(url, output=str(dest), quiet=not progress)
    if not files:
        raise CheckpointError(f"gdown got no file from {url}: the folder may have moved; see "
                              "the KDAS repository's README for the current link.")
    return [Path(f) for f in files]


def fetch_authors_checkpoints(dest: str | os.PathLike[str], *,
                              urls: Mapping[str, str] | None = None,
                              folder_url: str = AUTHORS_DRIVE_FOLDER,
                              progress: bool = True) -> dict[str, Path]:
    """Download the authors' checkpoints into ``dest`` and tell the teacher from the student.

    Files already in ``dest`` are not downloaded again.

    Args:
        dest: folder for the ``.pth`` files.
        urls: file name → direct URL (a mirror or a local server); None fetches
            ``folder_url`` from Google Drive with gdown.
        folder_url: the Drive folder (default :data:`AUTHORS_DRIVE_FOLDER`).
        progress: show download progress.

    Returns:
        ``{"teacher": path, "student": path}`` (a role whose file was not found is missing).

    Raises:
        CheckpointError: gdown is missing, nothing was downloaded, or no file is a Polyp-PVT
            teacher or student checkpoint (the message lists the files).
        DownloadError: a direct URL failed.
    """
    from kdas_lite.data.download import download_file

    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    if urls is not None:
        files = [download_file(url, dest / name, progress=progress) for name, url in urls.items()]
    elif any(dest.glob("*.pth")):
        files = sorted(dest.glob("*.pth"))
    else:
        files = _download_drive_folder(folder_url, dest, progress)
    found: dict[str, Path] = {}
    for path in sorted(f for f in files if f.suffix in (".pth", ".pt")):
        role = _role_of(path)
        if role is not None:
            found.setdefault(role[0], path)
    if not found:
        names = ", ".join(f.name for f in files) or "none"
        raise CheckpointError(f"none of the downloaded files ({names}) in {dest} is a "
                              "Polyp-PVT teacher (PVTv2-b2) or KDAS student (PVTv2-b0) "
                              "checkpoint in the authors' layout.")
    return found


def load_authors_models(paths: Mapping[str, str | os.PathLike[str]],
                        device: str | torch.device = "cpu") -> dict[str, nn.Module]:
    """The models of :func:`fetch_authors_checkpoints`' files, in eval mode on ``device``.

    Raises:
        KDASError: a file is not the role it is listed as.
    """
    models = {}
    for role, path in paths.items():
        found = _role_of(Path(path))
        if found is None or found[0] != role:
            raise KDASError(f"{path} is not the authors' {role} checkpoint "
                            f"({'it is the ' + found[0] if found else 'unrecognised layout'}).")
        models[role] = found[1].to(device)
    return models
