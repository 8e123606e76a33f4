"""Downloading and unpacking datasets without ever leaving a broken file behind.

What this module teaches: two classic failure modes of "download a zip and unpack it".

1. **Half-finished files.** A dropped connection or a full disk leaves a truncated file that
   looks complete to the next run. :func:`download_file` writes to a temporary ``.part`` file
   in the destination folder, checks the byte count announced by the server and the SHA-256
   (when known), and only then *renames* it into place (``os.replace`` is atomic). On any
   failure the temporary file is deleted.
2. **Hostile archives.** A zip member named ``../../.bashrc`` or ``/etc/passwd`` ("zip slip"),
   a symbolic link pointing outside the target, or a few kilobytes that inflate to terabytes
   ("zip bomb", possibly spread over many harmless-looking members) can damage the machine.
   :func:`safe_extract` checks *every* member, the total unpacked size and the whole
   archive's compression ratio before writing anything, extracts into a temporary folder,
   and renames it into place only when all members were written.
3. **Unbounded downloads.** A wrong link (or a server that streams without announcing a
   length) can fill the disk before anything looks wrong. :func:`download_file` stops at
   ``max_bytes``; :func:`download_dataset` caps both the download and the unpacked files at
   :data:`SIZE_MARGIN` times the size the registry expects for that dataset, and every
   archive at :data:`MAX_MEMBERS` members (counted from the archive's end record, before its
   directory is even read: a few MB of empty members would otherwise make 100 000 files).
4. **Killed runs.** A download killed half-way leaves its hidden scratch folder
   (``.<name>.xxxxxxxx.download``) behind; the next :func:`download_dataset` into that root
   removes it, while it holds a lock on the root, so the folder of a download still running
   elsewhere is never touched (a second download into the same root is refused meanwhile).

:func:`download_dataset` combines both for the datasets of
:data:`~kdas_lite.data.registry.DATASETS` (``kdas-lite download kvasir-seg``).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import secrets
import shutil
import stat
import struct
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from kdas_lite import __version__
from kdas_lite.data.io import IMAGE_EXTENSIONS, DataWarning, file_sha256
from kdas_lite.data.registry import DATASETS, is_dataset_folder
from kdas_lite.errors import DownloadError, KDASError

__all__ = ["MAX_MEMBERS", "MAX_RATIO", "MAX_TOTAL_BYTES", "SIZE_MARGIN", "dataset_size_limit",
           "download_dataset", "download_file", "safe_extract"]

MAX_TOTAL_BYTES = 20 * 2**30
"""Default limit on a download and on an archive's total uncompressed size (20 GiB)."""
MAX_RATIO = 200
"""Default limit on an archive's compression ratio (total uncompressed / archive size)."""
MAX_MEMBERS = 20_000
"""Default limit on an archive's member count (files and folders). The largest archive of the
benchmark, PraNet's ``TestDataset.zip``, holds about 3 200 files."""
SIZE_MARGIN = 3
"""A registry dataset may download and unpack to at most this multiple of its
:attr:`~kdas_lite.data.registry.DatasetInfo.archive_bytes` (upstream files change a little)."""
_RATIO_MIN_BYTES = 10 * 2**20  # archives unpacking to less than 10 MiB cannot hurt, any ratio
_CHUNK = 1 << 20


def dataset_size_limit(name: str) -> int:
    """Most bytes :func:`download_dataset` accepts for ``name``, downloaded and unpacked:
    :data:`SIZE_MARGIN` times the registry's ``archive_bytes``."""
    return SIZE_MARGIN * DATASETS[name].archive_bytes


def _open_new(path: Path) -> int:
    """Create ``path`` exclusively with the permissions of the umask (``mkstemp`` would make
    it private, 0600, and the finished file would keep that)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)


@dataclass(frozen=True)
class _Wording:
    """How error messages name the archive and what they advise: a file the user handed in
    can be deleted and fetched again; a download's temporary file is already gone."""

    manual: str  # the do-it-by-hand alternative, "or ..."
    archive: str  # how extraction errors name the archive
    corrupt_fix: str  # what to do about a corrupt archive
    limit_fix: str  # how to raise the size limit
    ratio_fix: str  # how to raise the compression-ratio limit
    members_fix: str = ""  # how to raise the member-count limit


def download_file(url: str, dest: str | os.PathLike[str], sha256: str | None = None,
                  progress: bool = True, timeout: float = 60.0, *,
                  max_bytes: int = MAX_TOTAL_BYTES) -> Path:
    """Download ``url`` to ``dest`` atomically, with a progress bar and optional checksum.

    An existing ``dest`` is kept when it matches ``sha256`` (or when no checksum is given:
    this function only ever creates ``dest`` complete). The file follows the umask like any
    other new file.

    Args:
        url: ``http(s)://`` (or ``file://``) address.
        dest: the file to create; its folder is created if needed.
        sha256: expected hex digest, or ``None`` to skip verification.
        progress: show a tqdm progress bar.
        timeout: seconds without data before giving up.
        max_bytes: refuse a download larger than this, whether the server announces its size
            or streams without one, so that a wrong link cannot fill the disk.

    Returns:
        ``dest``.

    Raises:
        DownloadError: HTTP error, unreachable host, connection dropped before the announced
            length, more than ``max_bytes``, or checksum mismatch. No partial file is left
            behind.
    """
    dest = Path(dest)
    wording = _Wording(manual=f"or download it in a browser and save it as {dest}",
                       archive=str(dest), corrupt_fix="", limit_fix="pass a larger max_bytes",
                       ratio_fix="")
    return _fetch(url, dest, sha256, progress, timeout, max_bytes, wording, shown_as=dest)


def _fetch(url: str, dest: Path, sha256: str | None, progress: bool, timeout: float,
           max_bytes: int, wording: _Wording, shown_as: Path) -> Path:
    """:func:`download_file`; messages name ``shown_as`` and advise as ``wording`` says."""
    if dest.is_file() and (sha256 is None or file_sha256(dest) == sha256.lower()):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part"
    manual = wording.manual
    too_big = (f"the link does not point to the expected file. Check the address, {manual} "
               f"(if the file really is this large, {wording.limit_fix}).")
    try:
        digest, received = hashlib.sha256(), 0
        request = urllib.request.Request(url, headers={"User-Agent": f"kdas-lite/{__version__}"})
        with os.fdopen(_open_new(tmp), "wb") as out, \
                urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length else None
            if total is not None and total > max_bytes:
                raise DownloadError(f"{url} announces {total} bytes, more than the limit of "
                                    f"{max_bytes}: {too_big}")
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                      disable=not progress) as bar:
                while chunk := resp.read(_CHUNK):
                    received += len(chunk)
                    if received > max_bytes:
                        raise DownloadError(f"{url} sent more than the limit of {max_bytes} "
                                            f"bytes (stopped there; nothing was kept): {too_big}")
                    out.write(chunk)
                    digest.update(chunk)
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
        os.replace(tmp, dest)
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"{url} answered HTTP {exc.code} ({exc.reason}). Check the address, {manual}."
        ) from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(
            f"downloading {url} to {shown_as} failed ({reason}). Check the internet connection "
            f"and free disk space, {manual}."
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _member_parts(name: str, wording: _Wording) -> list[str]:
    """Path components of a zip member, refusing anything that could leave the target."""
    normalised = name.replace("\\", "/")
    parts = [part for part in normalised.split("/") if part not in ("", ".")]
    if normalised.startswith("/") or re.match(r"[A-Za-z]:", normalised) or ".." in parts:
        raise DownloadError(
            f"{wording.archive} contains the unsafe path {name!r} (absolute or with '..'), "
            "which would be written outside the target folder (zip slip). Refusing to extract: "
            "the archive is malicious or broken; get it from the official source."
        )
    return parts


def _declared_members(zip_path: Path) -> int | None:
    """The member count in the archive's end record (zip64 included), read without parsing
    its central directory; None when there is no end record (``zipfile`` then says why)."""
    with zip_path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - 22 - 0xFFFF))  # the end record, after a comment ≤ 64 KiB
        tail = handle.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            return None
        count = struct.unpack_from("<H", tail, at + 10)[0]
        locator = tail[at - 20:at] if at >= 20 else b""
        if count == 0xFFFF and locator[:4] == b"PK\x06\x07":  # zip64: > 65 534 members
            handle.seek(struct.unpack_from("<Q", locator, 8)[0])
            record = handle.read(56)
            if record[:4] == b"PK\x06\x06" and len(record) == 56:
                count = struct.unpack_from("<Q", record, 32)[0]
    return count


def _check_count(count: int, max_members: int, wording: _Wording) -> None:
    if count > max_members:
        raise DownloadError(
            f"{wording.archive} has {count} members, more than the limit of {max_members}: no "
            "polyp dataset has that many files. Refusing to extract; if you trust the file, "
            f"{wording.members_fix}."
        )


def _check_members(archive: zipfile.ZipFile, archive_bytes: int, max_total_bytes: int,
                   max_ratio: float, max_members: int, wording: _Wording) -> None:
    """Validate every member before anything is written (see module docstring, point 2).

    The sizes checked are those the archive declares; :mod:`zipfile` never writes more than a
    member declares (it stops with a CRC error), so they bound what extraction writes.
    """
    _check_count(len(archive.infolist()), max_members, wording)
    total = 0
    for member in archive.infolist():
        _member_parts(member.filename, wording)
        kind = stat.S_IFMT(member.external_attr >> 16)  # Unix file type; 0 for DOS archives
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            what = "a symbolic link" if kind == stat.S_IFLNK else "a special file"
            raise DownloadError(
                f"{wording.archive} contains {member.filename!r}, {what}. Links can point "
                "outside the target folder, so the archive is refused; get it from the "
                "official source."
            )
        total += member.file_size
    if total > max_total_bytes:
        raise DownloadError(
            f"{wording.archive} would unpack to {total} bytes, more than the limit of "
            f"{max_total_bytes}. Refusing to extract; if you trust the file and have the disk "
            f"space, {wording.limit_fix}."
        )
    if total > _RATIO_MIN_BYTES and total > max_ratio * max(archive_bytes, 1):
        raise DownloadError(
            f"{wording.archive} inflates {archive_bytes} bytes to {total} (ratio > "
            f"{max_ratio}), the signature of a zip bomb. Refusing to extract; if you trust the "
            f"file, {wording.ratio_fix}."
        )


def safe_extract(zip_path: str | os.PathLike[str], dest: str | os.PathLike[str], *,
                 max_total_bytes: int = MAX_TOTAL_BYTES, max_ratio: float = MAX_RATIO,
                 max_members: int = MAX_MEMBERS) -> Path:
    """Extract a zip archive into ``dest`` safely and atomically.

    Every member is checked first: at most ``max_members`` of them (read from the archive's
    end record before anything else), no absolute paths or ``..`` (zip slip), no symbolic
    links or special files, total uncompressed size ≤ ``max_total_bytes`` and, for archives
    that unpack to more than 10 MiB, total uncompressed size ≤ ``max_ratio`` × the archive's
    size (zip bomb: many members, each harmless, add up). Members are then written (as plain
    files, without permission bits, following the umask) into a temporary sibling of
    ``dest``, which is renamed to ``dest`` only when everything succeeded.

    Args:
        zip_path: the archive.
        dest: folder to create; it must not exist or be empty.
        max_total_bytes: most bytes the archive may unpack to.
        max_ratio: most the archive may inflate (total uncompressed / archive size).
        max_members: most files and folders the archive may hold.

    Returns:
        ``dest``.

    Raises:
        DownloadError: unsafe or corrupt archive, or ``dest`` not empty. Nothing is left
            behind on failure.
    """
    zip_path = Path(zip_path)
    wording = _Wording(manual="", archive=str(zip_path),
                       corrupt_fix="Delete it and download it again.",
                       limit_fix="raise max_total_bytes", ratio_fix="raise max_ratio",
                       members_fix="raise max_members")
    return _extract(zip_path, Path(dest), max_total_bytes, max_ratio, wording, max_members)


def _extract(zip_path: Path, dest: Path, max_total_bytes: int, max_ratio: float,
             wording: _Wording, max_members: int = MAX_MEMBERS) -> Path:
    """:func:`safe_extract`; messages name the archive and advise as ``wording`` says."""
    if not zip_path.is_file():
        raise DownloadError(f"archive not found: {zip_path}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(f"{dest} already exists and is not empty: delete it or extract "
                            "somewhere else (existing files are never overwritten).")
    declared = _declared_members(zip_path)
    if declared is not None:
        _check_count(declared, max_members, wording)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.partial"
    tmp.mkdir()  # not mkdtemp: that one is private (0700), and the folder becomes dest
    try:
        with zipfile.ZipFile(zip_path) as archive:
            _check_members(archive, zip_path.stat().st_size, max_total_bytes, max_ratio,
                           max_members, wording)
            for member in archive.infolist():
                target = tmp.joinpath(*_member_parts(member.filename, wording))
                if not target.resolve().is_relative_to(tmp.resolve()):  # belt and braces
                    raise DownloadError(f"{wording.archive}: member {member.filename!r} "
                                        "escapes the target folder")
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
        raise DownloadError(f"{wording.archive} is not a valid zip archive or is corrupt "
                            f"({exc}). {wording.corrupt_fix}") from exc
    except (RuntimeError, NotImplementedError) as exc:  # encrypted / unknown compression
        raise DownloadError(f"cannot extract {wording.archive}: {exc}. Unpack it by hand"
                            f"{wording.manual and ', ' + wording.manual}.") from exc
    except OSError as exc:
        raise DownloadError(f"extracting {wording.archive} failed ({exc}); nothing was "
                            "kept. Free disk space or check permissions and retry.") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


@contextlib.contextmanager
def _exclusive(root: Path, what: str, error: type[KDASError] = DownloadError) -> Iterator[bool]:
    """Hold an advisory lock (``flock``) on the folder ``root`` while ``what`` writes into
    it: kdas_lite's scratch folders found there then belong to no running process. Yields
    False where the platform or file system has no such locks (the caller then cleans
    nothing up).

    Raises:
        ``error``: another process holds the lock.
    """
    try:
        import fcntl

        fd = os.open(root, os.O_RDONLY)
    except (ImportError, OSError):  # Windows, or a folder that cannot be opened
        yield False
        return
    locked = True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise error(f"another kdas-lite process is writing into {root} ({what} there too); "
                    "wait until it finishes, then run this again.") from None
    except OSError:  # no locks on this file system
        locked = False
    try:
        yield locked
    finally:
        os.close(fd)  # releases the lock


def _remove_stale(root: Path, pattern: str, left_by: str) -> None:
    """Delete the entries of ``root`` whose name matches ``pattern`` (kdas_lite's own scratch
    folders and temporary files, left by a killed run), with a :class:`DataWarning` naming
    them. Call it only while holding :func:`_exclusive` on ``root``."""
    stale = [p for p in sorted(root.iterdir())
             if re.fullmatch(pattern, p.name) and not p.is_symlink()]
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if stale:
        warnings.warn(f"removed {len(stale)} scratch entr{'y' if len(stale) == 1 else 'ies'} "
                      f"left by {left_by}: {', '.join(str(p) for p in stale)}", DataWarning,
                      stacklevel=3)


def _locate(unpacked: Path, folder_name: str) -> Path | None:
    """The extracted folder holding the dataset: one named ``folder_name`` with images/ and
    masks/, else the archive's root or a top-level folder with images/ and masks/."""
    candidates = [*sorted(unpacked.rglob(folder_name)), unpacked, *sorted(unpacked.iterdir())]
    return next((folder for folder in candidates if is_dataset_folder(folder)), None)


def download_dataset(name: str, root: str | os.PathLike[str], url: str | None = None,
                     sha256: str | None = None, progress: bool = True, *,
                     max_bytes: int | None = None) -> Path:
    """Download and unpack a dataset of :data:`~kdas_lite.data.registry.DATASETS` into ``root``.

    The zip is downloaded and extracted inside a hidden scratch folder under ``root``, the
    dataset folder is moved to ``root / DATASETS[name].folder`` and the scratch folder is
    removed, whatever happens (scratch folders of a download killed earlier are removed first).
    A dataset already in place is not downloaded again. Disk use is bounded: the download and
    the unpacked files may each be at most ``max_bytes`` (:data:`SIZE_MARGIN` × the registry's
    ``archive_bytes`` by default), the archive may not inflate more than :data:`MAX_RATIO`
    times nor hold more than :data:`MAX_MEMBERS` members.

    Args:
        name: a key of ``DATASETS``, e.g. ``"kvasir-seg"``.
        root: the data root.
        url: override the registry's address (e.g. a mirror, or a direct link to the PraNet
            zips, which only exist on Google Drive).
        sha256: expected checksum; defaults to the registry's when ``url`` is not overridden.
        progress: show a progress bar.
        max_bytes: override the size limit (:func:`dataset_size_limit` by default), e.g. for
            a mirror that packs more than the registry's archive.

    Returns:
        The dataset folder (with ``images/`` and ``masks/``).

    Raises:
        DownloadError: unknown name, no direct URL known (the message says how to get the
            files by hand), or any failure of :func:`download_file` / :func:`safe_extract`
            (the messages name the URL: the temporary archive is already deleted).
    """
    if name not in DATASETS:
        raise DownloadError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    info = DATASETS[name]
    root = Path(root).expanduser()
    target = root / info.folder
    if is_dataset_folder(target):
        return target
    gdown = (f" (or `pip install gdown; gdown --fuzzy {info.homepage}`)"
             if "drive.google.com" in info.homepage else "")
    by_hand = (f"get the zip from {info.homepage} in a browser{gdown}, unzip it into {root} so "
               f"that {target}/images exists")
    if url is None and info.url is None:
        raise DownloadError(f"{name} has no direct download link: {by_hand}, or pass url= a "
                            "direct link to the zip.")
    if target.exists():
        raise DownloadError(f"{target} exists but has no images/ and masks/: move it away and "
                            "run the download again.")
    expected = sha256 if sha256 is not None else (info.sha256 if url in (None, info.url) else None)
    source = url or info.url
    limit = dataset_size_limit(name) if max_bytes is None else max_bytes
    wording = _Wording(
        manual=f"or {by_hand}",
        archive=f"the archive downloaded from {source} (already deleted)",
        corrupt_fix=f"Nothing was kept: run the download again; if it fails again, check that "
                    f"{source} links to the zip file itself, not to a web page about it.",
        limit_fix=f"pass download_dataset a max_bytes above {limit}",
        ratio_fix="download it by hand and unpack it with kdas_lite.data.safe_extract(..., "
                  "max_ratio=...)",
        members_fix="download it by hand and unpack it with kdas_lite.data.safe_extract(..., "
                    "max_members=...)",
    )
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root, f"downloading {name}") as locked:
        if locked:  # tempfile names: 8 characters of [a-z0-9_]
            _remove_stale(root, rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}\.download",
                          "an interrupted download")
        with tempfile.TemporaryDirectory(prefix=f".{name}.", suffix=".download",
                                         dir=root) as scratch:
            archive = _fetch(source, Path(scratch) / "archive.zip", expected, progress, 60.0,
                             limit, wording, shown_as=root)
            unpacked = _extract(archive, Path(scratch) / "unpacked", limit, MAX_RATIO, wording)
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
