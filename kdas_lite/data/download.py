"""Downloading and unpacking datasets without ever leaving a broken file behind.

What this module teaches: two classic failure modes of "download a zip and unpack it".

1. **Half-finished files.** A dropped connection or a full disk leaves a truncated file that
   looks complete to the next run. :func:`download_file` writes to a temporary ``.part`` file
   in the destination folder, checks the byte count announced by the server and the SHA-256
   (when known), and only then *renames* it into place (``os.replace`` is atomic). On any
   failure the temporary file is deleted.
2. **Hostile archives.** A zip member named ``../../.bashrc`` or ``/etc/passwd`` ("zip slip"),
   a symbolic link pointing outside the target, or a few kilobytes that inflate to terabytes
   ("zip bomb") can damage the machine. :func:`safe_extract` checks *every* member before
   writing anything, extracts into a temporary folder, and renames it into place only when
   all members were written.

:func:`download_dataset` combines both for the datasets of
:data:`~kdas_lite.data.registry.DATASETS` (``kdas-lite download kvasir-seg``).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from pathlib import Path

from tqdm.auto import tqdm

from kdas_lite import __version__
from kdas_lite.data.io import IMAGE_EXTENSIONS, DataWarning
from kdas_lite.data.registry import DATASETS, is_dataset_folder
from kdas_lite.errors import DownloadError

__all__ = ["MAX_RATIO", "MAX_TOTAL_BYTES", "download_dataset", "download_file", "safe_extract"]

MAX_TOTAL_BYTES = 20 * 2**30
"""Default limit on the total uncompressed size of an archive (20 GiB)."""
MAX_RATIO = 200
"""Default limit on a large member's compression ratio (uncompressed / compressed)."""
_RATIO_MIN_BYTES = 10 * 2**20  # members smaller than 10 MiB cannot hurt, whatever their ratio
_CHUNK = 1 << 20


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, dest: str | os.PathLike[str], sha256: str | None = None,
                  progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, with a progress bar and optional checksum.

    An existing ``dest`` is kept when it matches ``sha256`` (or when no checksum is given:
    this function only ever creates ``dest`` complete).

    Args:
        url: ``http(s)://`` (or ``file://``) address.
        dest: the file to create; its folder is created if needed.
        sha256: expected hex digest, or ``None`` to skip verification.
        progress: show a tqdm progress bar.
        timeout: seconds without data before giving up.

    Returns:
        ``dest``.

    Raises:
        DownloadError: HTTP error, unreachable host, connection dropped before the announced
            length, or checksum mismatch. No partial file is left behind.
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or _sha256_of(dest) == sha256.lower()):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    manual = f"or download it in a browser and save it as {dest}"
    try:
        digest, received = hashlib.sha256(), 0
        request = urllib.request.Request(url, headers={"User-Agent": f"kdas-lite/{__version__}"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length else None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                      disable=not progress) as bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise DownloadError(
                f"download of {url} was interrupted after {received} of {total} bytes; nothing "
                f"was kept. Run it again, {manual}."
            )
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise DownloadError(
                f"checksum mismatch for {url}: expected sha256 {sha256.lower()}, got "
                f"{digest.hexdigest()}; the file was deleted. Retry (the transfer may have been "
                "corrupted); if the file changed upstream on purpose, pass the new checksum."
            )
        os.replace(tmp_name, dest)
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"{url} answered HTTP {exc.code} ({exc.reason}). Check the address, {manual}."
        ) from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(
            f"downloading {url} to {dest} failed ({reason}). Check the internet connection "
            f"and free disk space, {manual}."
        ) from exc
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return dest


def _member_parts(name: str, zip_path: Path) -> list[str]:
    """Path components of a zip member, refusing anything that could leave the target."""
    normalised = name.replace("\\", "/")
    parts = [part for part in normalised.split("/") if part not in ("", ".")]
    if normalised.startswith("/") or re.match(r"[A-Za-z]:", normalised) or ".." in parts:
        raise DownloadError(
            f"{zip_path} contains the unsafe path {name!r} (absolute or with '..'), which would "
            "be written outside the target folder (zip slip). Refusing to extract: the archive "
            "is malicious or broken; get it from the official source."
        )
    return parts


def _check_members(archive: zipfile.ZipFile, zip_path: Path, max_total_bytes: int,
                   max_ratio: float) -> None:
    """Validate every member before anything is written (see module docstring, point 2)."""
    total = 0
    for member in archive.infolist():
        _member_parts(member.filename, zip_path)
        kind = stat.S_IFMT(member.external_attr >> 16)  # Unix file type; 0 for DOS archives
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            what = "a symbolic link" if kind == stat.S_IFLNK else "a special file"
            raise DownloadError(
                f"{zip_path} contains {member.filename!r}, {what}. Links can point outside the "
                "target folder, so the archive is refused; get it from the official source."
            )
        total += member.file_size
        if (member.file_size > _RATIO_MIN_BYTES
                and member.file_size > max_ratio * max(member.compress_size, 1)):
            raise DownloadError(
                f"{zip_path}: member {member.filename!r} inflates {member.compress_size} bytes "
                f"to {member.file_size} (ratio > {max_ratio}), the signature of a zip bomb. "
                "Refusing to extract; if you trust the file, raise max_ratio."
            )
    if total > max_total_bytes:
        raise DownloadError(
            f"{zip_path} would unpack to {total} bytes, more than the limit of "
            f"{max_total_bytes}. Refusing to extract; if you trust the file and have the disk "
            "space, raise max_total_bytes."
        )


def safe_extract(zip_path: str | os.PathLike[str], dest: str | os.PathLike[str], *,
                 max_total_bytes: int = MAX_TOTAL_BYTES, max_ratio: float = MAX_RATIO) -> Path:
    """Extract a zip archive into ``dest`` safely and atomically.

    Every member is checked first: no absolute paths or ``..`` (zip slip), no symbolic links
    or special files, total uncompressed size ≤ ``max_total_bytes``, and no member over 10 MiB
    with a compression ratio above ``max_ratio`` (zip bomb). Members are then written (as
    plain files, without permission bits) into a temporary sibling of ``dest``, which is
    renamed to ``dest`` only when everything succeeded.

    Args:
        zip_path: the archive.
        dest: folder to create; it must not exist or be empty.

    Returns:
        ``dest``.

    Raises:
        DownloadError: unsafe or corrupt archive, or ``dest`` not empty. Nothing is left
            behind on failure.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    if not zip_path.is_file():
        raise DownloadError(f"archive not found: {zip_path}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(f"{dest} already exists and is not empty: delete it or extract "
                            "somewhere else (existing files are never overwritten).")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        with zipfile.ZipFile(zip_path) as archive:
            _check_members(archive, zip_path, max_total_bytes, max_ratio)
            for member in archive.infolist():
                target = tmp.joinpath(*_member_parts(member.filename, zip_path))
                if not target.resolve().is_relative_to(tmp.resolve()):  # belt and braces
                    raise DownloadError(f"{zip_path}: member {member.filename!r} escapes {dest}")
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, target.open("wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.replace(tmp, dest)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DownloadError(f"{zip_path} is not a valid zip archive or is corrupt ({exc}). "
                            "Delete it and download it again.") from exc
    except (RuntimeError, NotImplementedError) as exc:  # encrypted / unknown compression
        raise DownloadError(f"cannot extract {zip_path}: {exc}. Unpack it by hand.") from exc
    except OSError as exc:
        raise DownloadError(f"extracting {zip_path} into {dest} failed ({exc}); nothing was "
                            "kept. Free disk space or check permissions and retry.") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _locate(unpacked: Path, folder_name: str) -> Path | None:
    """The extracted folder holding the dataset: one named ``folder_name`` with images/ and
    masks/, else the archive's root or a top-level folder with images/ and masks/."""
    candidates = [*sorted(unpacked.rglob(folder_name)), unpacked, *sorted(unpacked.iterdir())]
    return next((folder for folder in candidates if is_dataset_folder(folder)), None)


def download_dataset(name: str, root: str | os.PathLike[str], url: str | None = None,
                     sha256: str | None = None, progress: bool = True) -> Path:
    """Download and unpack a dataset of :data:`~kdas_lite.data.registry.DATASETS` into ``root``.

    The zip is downloaded and extracted inside a hidden scratch folder under ``root``, the
    dataset folder is moved to ``root / DATASETS[name].folder`` and the scratch folder is
    removed, whatever happens. A dataset already in place is not downloaded again.

    Args:
        name: a key of ``DATASETS``, e.g. ``"kvasir-seg"``.
        root: the data root.
        url: override the registry's address (e.g. a mirror, or a direct link to the PraNet
            zips, which only exist on Google Drive).
        sha256: expected checksum; defaults to the registry's when ``url`` is not overridden.
        progress: show a progress bar.

    Returns:
        The dataset folder (with ``images/`` and ``masks/``).

    Raises:
        DownloadError: unknown name, no direct URL known (the message says how to get the
            files by hand), or any failure of :func:`download_file` / :func:`safe_extract`.
    """
    if name not in DATASETS:
        raise DownloadError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    info = DATASETS[name]
    root = Path(root).expanduser()
    target = root / info.folder
    if is_dataset_folder(target):
        return target
    if url is None and info.url is None:
        raise DownloadError(
            f"{name} has no direct download link: get the zip from {info.homepage} in a "
            f"browser (or `pip install gdown; gdown --fuzzy {info.homepage}`), unzip it into "
            f"{root} so that {target}/images exists, or pass url= a direct link to the zip."
        )
    if target.exists():
        raise DownloadError(f"{target} exists but has no images/ and masks/: move it away and "
                            "run the download again.")
    expected = sha256 if sha256 is not None else (info.sha256 if url in (None, info.url) else None)
    source = url or info.url
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}.", suffix=".download", dir=root) as scratch:
        archive = download_file(source, Path(scratch) / "archive.zip", expected, progress)
        unpacked = safe_extract(archive, Path(scratch) / "unpacked")
        found = _locate(unpacked, Path(info.folder).name)
        if found is None:
            contents = ", ".join(sorted(p.name for p in unpacked.iterdir())) or "nothing"
            raise DownloadError(
                f"the archive from {source} has no {Path(info.folder).name}/ folder with "
                f"images/ and masks/ (it contains: {contents}). Check the URL."
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(found, target)
    count = sum(p.suffix.lower() in IMAGE_EXTENSIONS for p in (target / "images").iterdir())
    if count != info.num_images:
        warnings.warn(f"{target} has {count} images, the registry expects {info.num_images}: "
                      "the upstream archive may have changed.", DataWarning, stacklevel=2)
    return target
