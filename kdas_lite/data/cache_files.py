"""Cache files that follow the content of the data and never break a run.

The decode caches (:class:`~kdas_lite.data.PolypDataset` with ``cache="disk"``,
:class:`~kdas_lite.data.PolypTestDataset` with ``cache_dir``) and the data identity that
``--resume`` compares (:func:`kdas_lite.runs.data_identity`) rest on four rules:

1. **Named by content.** A cache file is named by a SHA-256 of the *bytes* of the files it was
   made from (:func:`content_hashes`), not by their modification times and sizes: a mask
   replaced by another of the same size with its mtime restored (``cp -p``, ``tar -x``,
   ``rsync -t``, a backup restore) gets new cache files, and a data folder that is copied
   elsewhere or only touched keeps them.
2. **Hashes remembered safely.** Hashing reads every byte, so the hashes are
   remembered in ``file-hashes.json`` of the cache folder, each with the file's
   ``(size, mtime, ctime, inode, device)`` when it was hashed, and reused only while all five
   are unchanged. No tool can set the ctime back (every write, rename, ``chmod`` or ``utime``
   sets it to *now*), so a remembered hash never outlives the content it describes. A file
   whose ctime is less than :data:`RACY_SECONDS` old is hashed but not remembered (the clock
   may not have ticked since its last write: git's "racy clean" rule).
3. **Checked on read.** Each cache file has its SHA-256 beside it, in ``<file>.sha256``
   (``sha256sum`` format, written *before* the file itself; the hash list holds a checksum of
   its entries instead, as processes writing it at once may write different entries), and the
   file is compared with it before it is used: random bytes behind a valid ``.npy`` header,
   a truncated, zero-length or byte-flipped file are rebuilt, with a
   :class:`~kdas_lite.data.DataWarning` naming the file. Any error of a cache file's reader
   counts as unreadable.
4. **Written safely.** A cache file is written to a temporary file created with the umask's
   permissions (a course's shared cache stays readable by the others, as checkpoints do),
   flushed with ``fsync`` and renamed into place: a power cut leaves the old file or the whole
   new one. A cache folder that cannot be used (``KDAS_CACHE`` naming a file, a read-only
   folder, a full disk) gives one warning naming it, and the run goes on without the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from kdas_lite.data.io import DataWarning, file_sha256
from kdas_lite.errors import DataError

__all__ = ["RACY_SECONDS", "content_hashes", "default_cache_dir", "read_cache_file",
           "usable_cache_dir", "write_cache_file"]

T = TypeVar("T")
RACY_SECONDS = 2.0
"""A file changed this recently is hashed every time (rule 2 of the module docstring)."""
_HASHES = "file-hashes.json"
_HASHES_FORMAT = 1


def default_cache_dir() -> Path:
    """``$KDAS_CACHE`` if set, else ``$XDG_CACHE_HOME/kdas_lite`` (``~/.cache/kdas_lite`` by
    default)."""
    if os.environ.get("KDAS_CACHE"):
        return Path(os.environ["KDAS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kdas_lite"


def _named(directory: Path) -> str:
    """The cache folder as messages name it: with ``(KDAS_CACHE)`` when that variable set it."""
    env = os.environ.get("KDAS_CACHE")
    from_env = bool(env) and Path(env).expanduser().resolve() == directory.resolve()
    return f"{directory} (KDAS_CACHE)" if from_env else str(directory)


_warned: set[Path] = set()  # folders already warned about in this process


def _warn_unusable(directory: Path, exc: OSError) -> None:
    """One warning per folder and process: the folder, why, and that the run goes on."""
    if directory in _warned:
        return
    _warned.add(directory)
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f" at {exc.filename}" if exc.filename and Path(exc.filename) != directory else ""
    warnings.warn(f"cache folder {_named(directory)} cannot be written ({reason}{where}): "
                  "going on without its cache files (the data is decoded and hashed again "
                  "each time, with the same results). Point KDAS_CACHE at a writable folder to "
                  "keep them.", DataWarning, stacklevel=4)


def _temp_name(path: Path) -> Path:
    """``.<stem>.<random>.tmp<suffix>`` next to ``path`` (NumPy appends ``.npy``/``.npz`` to a
    name without them)."""
    return path.parent / f".{path.stem}.{secrets.token_hex(6)}.tmp{path.suffix}"


def _create(path: Path) -> None:
    """Create ``path`` empty, with the umask's permissions (not ``mkstemp``'s private 0600)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_synced(tmp: Path, path: Path) -> None:
    """Flush ``tmp`` to disk, rename it to ``path`` and flush the folder's entry (POSIX)."""
    _fsync(tmp)
    os.replace(tmp, path)
    if os.name == "posix":
        # best effort: some file systems (FUSE mounts such as Google Drive) refuse it
        with contextlib.suppress(OSError):
            _fsync(path.parent)


def usable_cache_dir(directory: Path) -> bool:
    """True if cache files can be written in ``directory`` (created if needed); else warn
    (once per folder), naming the folder and ``KDAS_CACHE`` when it set it, and return
    False."""
    probe = _temp_name(directory / "probe")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _create(probe)
    except OSError as exc:
        _warn_unusable(directory, exc)
        return False
    probe.unlink(missing_ok=True)
    return True


def write_cache_file(path: Path, write: Callable[[Path], None], checksum: bool = True) -> bool:
    """Write a cache file safely (rule 4 of the module docstring) with its checksum beside it.

    Args:
        path: the cache file.
        write: writes the content to the temporary path it is given (which it may reopen,
            e.g. with ``np.save``; the file exists already, with the umask's permissions).
        checksum: write ``<file>.sha256``; False for a file that holds its own checksum (the
            hash list, whose content differs between processes that write it at once).

    Returns:
        True if the file was written; False (after a warning) if its folder is unusable.
    """
    tmp, sums = _temp_name(path), _temp_name(path.with_name(path.name + ".sha256"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _create(tmp)
        write(tmp)
        if checksum:  # the checksum goes first: a file under `path` always has its own
            _create(sums)
            sums.write_text(f"{file_sha256(tmp)}  {path.name}\n", encoding="utf-8")
            _replace_synced(sums, path.with_name(path.name + ".sha256"))
        _replace_synced(tmp, path)
    except OSError as exc:
        _warn_unusable(path.parent, exc)
        return False
    finally:
        tmp.unlink(missing_ok=True)
        sums.unlink(missing_ok=True)
    return True


def read_cache_file(path: Path, read: Callable[[Path], T], checksum: bool = True) -> T | None:
    """``read(path)`` if ``path`` matches the checksum beside it and reads; None if it is
    missing, or (after a warning naming it) if it differs from its checksum or ``read``
    raises anything (a wrong shape, ``EOFError``, ``BadZipFile``, an unpickling error, …).
    ``checksum=False``: the file holds its own checksum, which ``read`` checks."""
    if not path.is_file():
        return None
    try:
        if checksum:
            expected = path.with_name(path.name + ".sha256").read_text(encoding="utf-8").split()
            if not expected or file_sha256(path) != expected[0]:
                raise ValueError("its bytes differ from the checksum beside it")
        return read(path)
    except Exception as exc:  # every reader error means "rebuild this file"
        warnings.warn(f"rebuilding unreadable cache file {path} ({type(exc).__name__}: {exc})",
                      DataWarning, stacklevel=3)
        return None


def _stat_key(path: Path) -> tuple[list[int], float]:
    """(size, mtime, ctime, inode, device) of ``path``, and its ctime in seconds."""
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise DataError(f"dataset file not found: {path}") from exc
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev], st.st_ctime


def _digest(entries: dict[str, list]) -> str:
    """The checksum the hash list holds of its own entries."""
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()


def content_hashes(paths: Sequence[Path], cache_dir: Path | None = None) -> list[str]:
    """The SHA-256 (hex) of each file's bytes, remembered in ``cache_dir`` (rule 2 of the
    module docstring; default :func:`default_cache_dir`).

    Raises:
        DataError: a file is missing.
    """
    directory = cache_dir if cache_dir is not None else default_cache_dir()
    store = directory / _HASHES

    def load(p: Path) -> dict[str, list]:
        content = json.loads(p.read_text(encoding="utf-8"))
        if content.get("format") != _HASHES_FORMAT:
            raise ValueError(f"not a format-{_HASHES_FORMAT} hash list")
        if _digest(content["files"]) != content["sha256"]:
            raise ValueError("its entries differ from the checksum it holds")
        return dict(content["files"])

    known = read_cache_file(store, load, checksum=False) or {}
    hashes, new = [], 0
    for path in paths:
        name = os.path.abspath(path)  # no symlink resolution: the inode identifies the file
        stat, ctime = _stat_key(path)
        entry = known.get(name)
        if isinstance(entry, list) and entry[:-1] == stat:
            hashes.append(entry[-1])
            continue
        digest = file_sha256(path)
        if _stat_key(path)[0] == stat and time.time() - ctime >= RACY_SECONDS:
            known[name] = [*stat, digest]
            new += 1
        hashes.append(digest)
    if new and usable_cache_dir(directory):
        text = json.dumps({"format": _HASHES_FORMAT, "sha256": _digest(known), "files": known})
        write_cache_file(store, lambda tmp: tmp.write_text(text, encoding="utf-8"),
                         checksum=False)
    return hashes
