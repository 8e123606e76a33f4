"""The full PraNet benchmark from Google Drive: TrainDataset (1450) and TestDataset (five sets).

What this module teaches: getting *the* benchmark, not something like it. PraNet's README
links two Google Drive files (:data:`PRANET_DRIVE_FILES`): ``TrainDataset.zip`` (1450 pairs)
and ``TestDataset.zip`` (the five test sets, ETIS complete at 196). Drive gives no stable
direct link to files this large (a confirmation page stands in the way, and a file that many
people fetched is refused for a day: the *quota*), so they are fetched with
`gdown <https://github.com/wkentaro/gdown>`_, installed by the notebooks' Colab cell only.
:func:`fetch_pranet` then treats the archive like every other download
(:mod:`kdas_lite.data.download`):

1. **archive**: ``<cache>/<name>.zip`` when an earlier run left it there (on Colab the cache is
   a Google Drive folder, so a new runtime does not download again); otherwise gdown fetches
   each file id in turn (PraNet's current id first, the older one as a fallback) into a
   ``.part`` file that is renamed only when complete, and refused when it is larger than the
   size cap (:func:`~kdas_lite.data.download.dataset_size_limit`; gdown writes the file
   itself, so the cap is checked when it is complete, before anything is extracted);
2. **extraction**: the same safe extraction (zip slip, links, size and ratio caps) into a
   scratch folder inside the data root; the sets are moved into place only when all is well;
3. **counts**: every set is counted against the registry before it is moved. A set with
   *fewer* pairs is kept and labelled (``ETIS-LaribPolypDB (20/196)``, status ``partial`` in
   the ``MANIFEST.json`` written next to it, and a warning names it); a set with *more* is
   refused (the archive changed upstream; its scores would not be comparable).

When Drive refuses, :func:`fetch_pranet` raises :class:`~kdas_lite.errors.DownloadError`:
one line with gdown's reason for each file id (Drive's quota page, a truncated body — never
blamed on the quota —, no public link), and what to do. gdown's own partial files
(``.<name>.zip.part<8 characters>.part``) are removed whatever happens, and the zip kept in the
cache gets the umask's permissions (gdown makes its files private).
:func:`kdas_lite.data.course_data` then falls back to the Kvasir-SEG download (one test set)
and says so.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from kdas_lite.data.download import (
    MAX_RATIO,
    _extract,
    _fetch,
    _locate,
    _Wording,
    dataset_size_limit,
)
from kdas_lite.data.io import DataWarning, pair_files, write_text_atomic
from kdas_lite.data.registry import (
    DATASETS,
    TEST_SETS,
    TRAIN_SET,
    DataLayout,
    find_layout,
    image_mask_dirs,
    is_dataset_folder,
)
from kdas_lite.errors import DownloadError

__all__ = ["PRANET_ARCHIVES", "PRANET_DRIVE_FILES", "fetch_pranet"]

PRANET_DRIVE_FILES: dict[str, tuple[str, ...]] = {
    # PraNet's README ("Downloading necessary data"): the current files (TestDataset 327.2 MB,
    # TrainDataset 399.5 MB), then the older ids kept in the registry's homepages.
    "TestDataset": ("1Y2z7FD5p5y31vkZwQQomXFRB0HutHyao", "1o8OfBvYE6K-EpDyvzsmMPndnUMwb540R"),
    "TrainDataset": ("1YiGHLw4iTvKdvbT6MgwO9zcCv8zJ_Bnb", "1lODorfB33jbd-im-qrtUgWnZXxB94F55"),
}
"""Google Drive file ids of PraNet's two archives, tried in this order."""

PRANET_ARCHIVES: dict[str, tuple[str, ...]] = {"TestDataset": TEST_SETS,
                                               "TrainDataset": (TRAIN_SET,)}
"""The sets (keys of :data:`~kdas_lite.data.DATASETS`) each archive holds."""

_MADE_BY = "kdas_lite.data.fetch_pranet"


def _gdown_download(file_id: str, part: Path, progress: bool) -> None:
    """Fetch one Drive file with gdown into ``part`` (gdown draws the progress bar)."""
    import gdown  # imported here: installed on Colab only (the notebooks' first cell)

    try:
        result = gdown.download(id=file_id, output=str(part), quiet=not progress)
    finally:
        _remove_gdown_parts(part)
    if result is None or not part.is_file():  # older gdown returns None instead of raising
        raise DownloadError("gdown got no file (Google Drive refused it)")


def _remove_gdown_parts(part: Path) -> None:
    """Delete gdown's own partial files of ``part`` (``<part name><8 characters>.part``, one per
    attempt: gdown keeps them for its ``resume``, which is not used here)."""
    pattern = re.compile(re.escape(part.name) + r"[A-Za-z0-9_]{8}\.part")
    for leftover in part.parent.glob(f"{glob.escape(part.name)}*.part"):
        if pattern.fullmatch(leftover.name) and leftover.is_file():
            leftover.unlink(missing_ok=True)


def _gdown_reason(exc: BaseException) -> str:
    """gdown's reason in one line. Its messages span several lines: a refusal reads "Failed to
    retrieve file url:", a blank line, then the reason (e.g. Drive's "Too many users have
    viewed or downloaded this file recently…") and advice about browsers; a truncated body
    ends by naming its kept partial file, which is deleted here."""
    text = str(exc).split("You may still be able to access the file from the browser")[0]
    text = text.strip().removeprefix("Failed to retrieve file url:")
    text = re.split(r"\s*The received bytes are kept in ", text)[0]
    return " ".join(text.split()) or repr(exc)


def _advice(reasons: Sequence[str]) -> tuple[str, str]:
    """What went wrong (the verb of the message) and what to do, from the reasons given."""
    said = " ".join(reasons)
    if "Too many users" in said or "quota" in said.lower():
        return ("refused", "A file many people downloaded is blocked for up to a day (its "
                "quota): run the data cell again later")
    if "incomplete" in said or "interrupted" in said:
        return ("did not send all of", "The connection dropped before the end (nothing was "
                "kept): run the data cell again")
    return ("did not send", "Check the internet connection and run the data cell again")


def _download_archive(name: str, dest: Path, urls: Sequence[str] | None, limit: int,
                      progress: bool) -> Path:
    """``dest`` (``<name>.zip``): kept when already a zip, else fetched from Drive (or ``urls``).

    Raises:
        DownloadError: every source failed (the reasons of each are listed, one line).
    """
    if zipfile.is_zipfile(dest):
        return dest
    if dest.exists():  # this function only ever puts a checked zip there: not ours
        raise DownloadError(f"{dest} exists but is not a zip archive: delete it, or replace it "
                            f"with PraNet's {name}.zip downloaded in a browser.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    reasons = []
    sources = list(urls) if urls is not None else list(PRANET_DRIVE_FILES[name])
    part = dest.with_name(f".{dest.name}.part")
    _remove_gdown_parts(part)  # left by a runtime that ended mid-download
    for source in sources:
        part.unlink(missing_ok=True)
        try:
            if urls is not None:
                wording = _Wording(manual=f"or download {source} by hand into {dest}",
                                   archive=str(part), corrupt_fix="",
                                   limit_fix="download it by hand", ratio_fix="")
                _fetch(source, part, None, progress, 60.0, limit, wording, shown_as=dest)
            else:
                _gdown_download(source, part, progress)
            size = part.stat().st_size
            if size > limit:
                raise DownloadError(f"{size} bytes, more than the limit of {limit} for {name}")
            if not zipfile.is_zipfile(part):
                raise DownloadError("not a zip archive (Drive may have sent a web page)")
            os.replace(part, dest)
            _follow_umask(dest)
            return dest
        except ImportError:
            raise DownloadError(f"fetching PraNet's {name} from Google Drive needs gdown "
                                "(`pip install gdown`; the notebooks' Colab cell installs it)"
                                ) from None
        except Exception as exc:  # gdown raises its own types (quota, no public link, network)
            reasons.append(f"{source}: {_gdown_reason(exc)}")
        finally:
            part.unlink(missing_ok=True)
    verb, advice = _advice(reasons)
    raise DownloadError(
        f"Google Drive {verb} PraNet's {name} ({'; '.join(reasons)}). {advice}, or download "
        f"https://drive.google.com/file/d/{PRANET_DRIVE_FILES[name][0]} in a browser and put "
        f"it at {dest}."
    )


def _follow_umask(path: Path) -> None:
    """Give ``path`` the permissions of a new file (gdown creates its files private, 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):  # a file system without permissions (Drive's FUSE)
        path.chmod(0o666 & ~umask)


def _archive_root(unpacked: Path, name: str) -> Path | None:
    """The extracted folder that holds ``name``'s sets (TrainDataset: images/ + masks/)."""
    if name == "TrainDataset":
        return _locate(unpacked, TRAIN_SET)
    candidates = [*sorted(unpacked.rglob("TestDataset")), unpacked, *sorted(unpacked.iterdir())]
    return next((folder for folder in candidates if folder.is_dir() and any(
        is_dataset_folder(folder / test) for test in TEST_SETS)), None)


def _count(name: str, folder: Path, archive: str) -> dict:
    """The manifest entry of one extracted set; refuses more pairs than the benchmark has."""
    info = DATASETS[name]
    pairs = len(pair_files(*image_mask_dirs(folder)))
    if pairs > info.num_images:
        raise DownloadError(f"{archive}: {name} holds {pairs} image/mask pairs, the benchmark "
                            f"has {info.num_images}. The archive changed upstream; refusing it "
                            "(its scores would not be comparable).")
    note = f"PraNet's {archive} from Google Drive"
    if pairs < info.num_images:
        warnings.warn(f"{name}: {pairs} of the {info.num_images} benchmark pairs in {archive}; "
                      f"it is labelled {name} ({pairs}/{info.num_images}) and its scores are not "
                      "comparable with published full-set numbers.", DataWarning, stacklevel=3)
        note += f"; only {pairs} of {info.num_images} pairs"
    return {"folder": info.folder, "pairs": pairs, "expected": info.num_images,
            "status": "complete" if pairs == info.num_images else "partial", "note": note}


def _write_manifest(root: Path, sets: dict[str, dict]) -> None:
    path = root / "MANIFEST.json"
    content = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if content and content.get("made_by") != _MADE_BY:
        return  # never rewrite a manifest this function did not write
    content.update({"layout": "PraNet (TrainDataset/{images,masks}, "
                              "TestDataset/<set>/{images,masks})", "made_by": _MADE_BY})
    content.setdefault("sets", {}).update(sets)
    write_text_atomic(path, json.dumps(content, indent=2) + "\n")


def fetch_pranet(root: str | os.PathLike[str], *, cache: str | os.PathLike[str] | None = None,
                 urls: Mapping[str, Sequence[str]] | None = None,
                 progress: bool = True) -> DataLayout:
    """Download PraNet's TrainDataset and TestDataset into ``root`` (see the module docstring).

    A set already in ``root`` is kept; an archive is downloaded only when one of its sets is
    missing and no copy is in ``cache``.

    Args:
        root: the data root (``root/TrainDataset``, ``root/TestDataset/<set>``).
        cache: a folder that keeps the downloaded zips (``TrainDataset.zip``,
            ``TestDataset.zip``) for the next run; None: a scratch folder, deleted afterwards.
        urls: archive name → direct URLs to try instead of Google Drive (a mirror; the tests
            use a local server). Without it, gdown fetches :data:`PRANET_DRIVE_FILES`.
        progress: show the download progress.

    Returns:
        The :func:`~kdas_lite.data.find_layout` of ``root``.

    Raises:
        DownloadError: Drive refused every file id (quota, no network), gdown is missing, an
            archive is unsafe, too large, or holds a set with more pairs than the benchmark.
            Sets already moved into ``root`` stay; nothing half-extracted is left.
    """
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    needed = {name: sets for name, sets in PRANET_ARCHIVES.items()
              if not all(is_dataset_folder(root / DATASETS[s].folder) for s in sets)}
    with tempfile.TemporaryDirectory(prefix=".pranet.", suffix=".download", dir=root) as scratch:
        where = Path(cache).expanduser() if cache is not None else Path(scratch)
        limits = {name: dataset_size_limit(sets[0]) for name, sets in needed.items()}
        # Both archives first: when Drive refuses the second, nothing has been moved yet.
        archives = {name: _download_archive(name, where / f"{name}.zip",
                                            None if urls is None else urls.get(name, ()),
                                            limits[name], progress) for name in needed}
        for name, sets in needed.items():
            _unpack(name, sets, archives[name], root, Path(scratch) / name, limits[name])
    return find_layout(root)


def _unpack(name: str, sets: Sequence[str], archive: Path, root: Path, scratch: Path,
            limit: int) -> None:
    """Extract ``archive`` safely into ``scratch``, count its sets, move them into ``root``."""
    wording = _Wording(manual=f"or unzip {archive} into {root} by hand",
                       archive=f"PraNet's {name}.zip ({archive})",
                       corrupt_fix=f"Delete {archive} and run again.",
                       limit_fix="unzip it by hand", ratio_fix="unzip it by hand")
    unpacked = _extract(archive, scratch, limit, MAX_RATIO, wording)
    found = _archive_root(unpacked, name)
    if found is None:
        contents = ", ".join(sorted(p.name for p in unpacked.iterdir())) or "nothing"
        raise DownloadError(f"{archive} holds no {name} folder in the PraNet layout (it "
                            f"contains: {contents}); delete it and run again.")
    folders = {s: found if name == "TrainDataset" else found / s for s in sets}
    present = {s: f for s, f in folders.items() if is_dataset_folder(f)}
    entries = {s: _count(s, f, f"{name}.zip") for s, f in present.items()}
    for missing in sorted(set(sets) - set(present)):
        warnings.warn(f"{name}.zip has no {missing} set: it is left out.", DataWarning,
                      stacklevel=3)
    moved = {}
    for s, folder in present.items():
        target = root / DATASETS[s].folder
        if not target.exists():  # a set already in root is kept as it is
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(folder, target)
            moved[s] = entries[s]
    _write_manifest(root, moved)
