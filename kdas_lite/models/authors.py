"""The authors' released checkpoints: the Polyp-PVT teacher and the KDAS student.

The KDAS repository (github.com/huyquoctrinh/KDAS) links one Google Drive folder that holds
the Polyp-PVT teacher (PVTv2-b2) and the distilled "Polyp-PVT-B0" student, both saved as
``torch.save(model.state_dict())`` of the authors' ``lib/pvt.py``. Google Drive has no stable
direct links, so the folder is fetched with `gdown <https://github.com/wkentaro/gdown>`_, the
ecosystem's tool for Drive (``pip install gdown``; the notebooks install it on Colab only).
A mirror or a test server can be given as plain URLs instead.

Which file is which is read from the weights, not the file names: the stage widths and depths
of each file tell the PVTv2-b2 teacher from the PVTv2-b0 student
(:func:`~kdas_lite.models.key_maps.infer_polyp_pvt_config`), and the file is then loaded
strictly with the authors' key map (:func:`~kdas_lite.models.load_polyp_pvt_checkpoint`). These
models were trained at 352 px on the PraNet training set with ImageNet normalisation; evaluate
them at 352 px.

A download is never trusted for being there: a fetched file that does not load as the
teacher or student (an HTML error page, other weights, a truncated transfer, a pickle that
would run code) is deleted with a message, a file already in the folder that does not load is
moved aside to ``<name>.rejected`` (never deleted: it may be yours) and fetched again, and a
missing teacher or student is an error that names it. Each download stops at
:data:`MAX_DOWNLOAD_BYTES` (3× the teacher's ~100 MB), and the ``.part`` files of a killed
download are removed by the next call.
"""

from __future__ import annotations

import os
import re
import secrets
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from kdas_lite.errors import CheckpointError, KDASError
from kdas_lite.models.key_maps import infer_polyp_pvt_config, load_polyp_pvt_checkpoint
from kdas_lite.models.polyp_pvt import build_student, build_teacher

__all__ = ["AUTHORS_DRIVE_FOLDER", "AUTHORS_ENCODERS", "AUTHORS_FILE_BYTES",
           "MAX_DOWNLOAD_BYTES", "fetch_authors_checkpoints", "load_authors_models"]

AUTHORS_DRIVE_FOLDER = "https://drive.google.com/drive/folders/1AMIXmyCcZTA0IfPTGOrdNjYvmIIfH-Ql"
"""The Drive folder of the teacher and student weights linked from the KDAS README."""

AUTHORS_ENCODERS = {"teacher": "pvt_v2_b2", "student": "pvt_v2_b0"}
"""The encoder of each released model: Polyp-PVT on PVTv2-b2 (teacher), PVTv2-b0 (student)."""

AUTHORS_FILE_BYTES = {"teacher": 100_600_000, "student": 14_700_000}
"""About how large each released ``.pth`` is (float32 state dicts: 25.1M and 3.7M values)."""

MAX_DOWNLOAD_BYTES = 3 * AUTHORS_FILE_BYTES["teacher"]
"""Largest file :func:`fetch_authors_checkpoints` downloads or reads (a wrong link or an
endless stream stops here instead of filling the disk)."""

_BUILDERS = {"teacher": build_teacher, "student": build_student}
_PART = re.compile(r"^\..+\.[0-9a-f]{12}\.part$")  # download_file's temporary files


class _OtherModel(CheckpointError):
    """A readable file whose weights are neither released model."""


def _load_role(path: Path) -> tuple[str, nn.Module]:
    """``("teacher" | "student", the loaded model in eval mode)`` of an authors' file.

    Raises:
        CheckpointError: the file is too large, unreadable, unsafe (a pickle that would run
            code), or not the authors' teacher or student (the message says what it is).
    """
    size = path.stat().st_size if path.is_file() else 0
    if size > MAX_DOWNLOAD_BYTES:
        raise CheckpointError(f"{path} has {size} bytes, more than the {MAX_DOWNLOAD_BYTES} "
                              "of any authors' checkpoint: it is another file.")
    config = infer_polyp_pvt_config(path)  # unreadable or unsafe files raise here
    roles = {encoder: role for role, encoder in AUTHORS_ENCODERS.items()}
    role = roles.get(config["encoder"]) if config else None
    if role is None:
        what = f"Polyp-PVT on {config['encoder']}" if config else "not a Polyp-PVT state dict"
        raise _OtherModel(
            f"{path} is neither the authors' teacher (Polyp-PVT on PVTv2-b2) nor their student "
            f"(PVTv2-b0) checkpoint ({what})."
        )
    model = _BUILDERS[role]()
    load_polyp_pvt_checkpoint(model, path)  # strict: wrong or missing keys raise
    return role, model.eval()


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _set_aside(path: Path, exc: CheckpointError) -> Path:
    """Move a file that was already there and does not load to ``<name>.rejected``: it may
    be the user's, so it is kept, but never read as a checkpoint again."""
    target = path.with_name(f"{path.name}.rejected")
    if target.exists():
        target = path.with_name(f"{path.name}.{secrets.token_hex(4)}.rejected")
    os.replace(path, target)
    warnings.warn(f"{path} does not load ({_first_line(exc)}); moved it to {target} and "
                  "fetching it again", UserWarning, stacklevel=3)
    return target


def _remove_stale_parts(dest: Path) -> None:
    """Delete the temporary ``.<name>.<hex>.part`` files a killed download left in ``dest``."""
    for part in dest.iterdir():
        if _PART.match(part.name) and part.is_file():
            part.unlink(missing_ok=True)


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


def _is_weights(path: Path) -> bool:
    return path.suffix in (".pth", ".pt")


def fetch_authors_checkpoints(dest: str | os.PathLike[str], *,
                              urls: Mapping[str, str] | None = None,
                              folder_url: str = AUTHORS_DRIVE_FOLDER,
                              progress: bool = True) -> dict[str, Path]:
    """Download the authors' checkpoints into ``dest`` and tell the teacher from the student.

    Files already in ``dest`` that load as the teacher and student are not downloaded again.
    Every ``.pth`` / ``.pt`` file is checked by loading it: one that was just downloaded and
    does not load is deleted; one that was already there and does not load is moved to
    ``<name>.rejected`` (with a warning) and fetched again. Direct URLs stop at
    :data:`MAX_DOWNLOAD_BYTES`; a larger file from gdown is refused once downloaded.

    Args:
        dest: folder for the ``.pth`` files.
        urls: file name → direct URL (a mirror or a local server); None fetches
            ``folder_url`` from Google Drive with gdown.
        folder_url: the Drive folder (default :data:`AUTHORS_DRIVE_FOLDER`).
        progress: show download progress.

    Returns:
        ``{"teacher": path, "student": path}``.

    Raises:
        CheckpointError: gdown is missing, or the teacher or the student is not among the
            files (the message names each file that failed to load and why).
        DownloadError: a direct URL failed or sent more than :data:`MAX_DOWNLOAD_BYTES`.
    """
    from kdas_lite.data.download import download_file

    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(dest)
    found: dict[str, Path] = {}
    problems: list[str] = []

    def check(path: Path) -> CheckpointError | None:
        """Record ``path``'s role, or return why it does not load."""
        try:
            role, _ = _load_role(path)
        except CheckpointError as exc:
            return exc
        if found.setdefault(role, path) != path:
            problems.append(f"{path.name} is the {role} again (as {found[role].name})")
        return None

    def check_download(path: Path) -> None:
        """Check a file this call downloaded; one that does not load is deleted."""
        if _is_weights(path) and (exc := check(path)) is not None:
            path.unlink(missing_ok=True)
            problems.append(f"{path.name} does not load and was deleted "
                            f"({_first_line(exc).rstrip('.')})")

    if urls is not None:
        for name, url in urls.items():
            path = dest / name
            if _is_weights(path) and path.is_file():
                if (exc := check(path)) is None:
                    continue
                _set_aside(path, exc)
            download_file(url, path, progress=progress, max_bytes=MAX_DOWNLOAD_BYTES)
            check_download(path)
    else:
        bad = {path: exc for path in sorted(dest.iterdir())
               if _is_weights(path) and path.is_file() and (exc := check(path)) is not None}
        if len(found) < len(_BUILDERS):  # fetch the folder again, past the files that fail
            for path, exc in bad.items():
                _set_aside(path, exc)
            for path in _download_drive_folder(folder_url, dest, progress):
                if path not in found.values():
                    check_download(path)
    missing = [role for role in _BUILDERS if role not in found]
    if missing:
        wanted = " and ".join(f"{role} ({AUTHORS_ENCODERS[role]})" for role in missing)
        detail = "; ".join(problems) or "no file loads as it"
        source = "the given URLs" if urls is not None else folder_url
        raise CheckpointError(
            f"the authors' {wanted} checkpoint is missing from {dest} after fetching "
            f"{source}: {detail}. Check the links (a mirror must serve the .pth files "
            "themselves, not a web page), or put the files there by hand."
        )
    return {role: found[role] for role in _BUILDERS}


def load_authors_models(paths: Mapping[str, str | os.PathLike[str]],
                        device: str | torch.device = "cpu") -> dict[str, nn.Module]:
    """The models of :func:`fetch_authors_checkpoints`' files, in eval mode on ``device``.

    Raises:
        CheckpointError: a file is missing, unreadable or unsafe (the message says so).
        KDASError: a file is not the role it is listed as.
    """
    models = {}
    for role, path in paths.items():
        try:
            found, model = _load_role(Path(path))
        except _OtherModel as exc:  # unreadable, unsafe, wrong keys: the loader's own message
            raise KDASError(f"{path} is not the authors' {role} checkpoint "
                            f"({_first_line(exc)})") from exc
        if found != role:
            raise KDASError(f"{path} is not the authors' {role} checkpoint (it is the {found}).")
        models[role] = model.to(device)
    return models
