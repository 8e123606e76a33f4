"""From a raw download to the benchmark split, and where a course's data comes from.

What this module teaches: a download is not yet a benchmark. ``kdas-lite download kvasir-seg``
gives the raw Kvasir-SEG release, 1000 image/mask pairs in one folder. The PraNet split that
PraNet, Polyp-PVT and KDAS report on uses 900 of them for training and a fixed 100 for the
Kvasir test set (their names ship with the package:
:func:`~kdas_lite.data.pranet_kvasir_test_names`). :func:`prepare_kvasir_split` builds that
split in the PraNet layout, so that the test images can never leak into training or model
selection, and writes a ``MANIFEST.json`` that says what the folder holds (the training set
is the Kvasir-SEG part only: 900 of PraNet's 1450 images, the CVC-ClinicDB frames are not in
Kvasir-SEG).

:func:`course_data` is what the notebooks call to get their data, in this order:

1. a dataset already on disk (``data_root``, ``$KDAS_DATA``, ``../shared/data`` or ``./data``);
   a raw Kvasir-SEG folder there is split first;
2. where gdown is installed and Google Drive answers (Colab), the full PraNet benchmark
   (:func:`~kdas_lite.data.fetch_pranet`: 1450 training images, the five test sets);
3. when Drive refuses (its download quota) or gdown is missing, the Kvasir-SEG download
   (≈ 46 MB, progress bar; its zip kept in ``cache`` too), then the split: one test set,
   Kvasir, and it says so. That split is marked as a fallback in its manifest: the next call
   (the data cell run again, same runtime) tries Drive again and, when it answers, replaces
   the fallback with the five sets. A split the user prepared is never replaced;
4. offline, the SYNTHETIC stand-in (:func:`~kdas_lite.data.make_synthetic_dataset`),
   announced as such.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from kdas_lite.data.download import (
    _exclusive,
    _remove_stale,
    dataset_size_limit,
    download_dataset,
    download_file,
)
from kdas_lite.data.io import pair_files, write_text_atomic
from kdas_lite.data.pranet import fetch_pranet
from kdas_lite.data.registry import (
    DATASETS,
    TEST_SETS,
    TRAIN_SET,
    DataLayout,
    find_layout,
    image_mask_dirs,
    is_dataset_folder,
    pranet_kvasir_test_names,
    resolve_data_root,
    set_status,
)
from kdas_lite.data.synthetic import make_synthetic_dataset
from kdas_lite.errors import DataError, KDASError

__all__ = ["course_data", "prepare_kvasir_split"]

_MADE_BY = "kdas_lite.data.prepare_kvasir_split"


def _link_or_copy(source: Path, dest: Path) -> None:
    """Hard-link ``source`` to ``dest`` (no extra disk space), copying where links fail."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def _own_manifest(path: Path) -> dict | None:
    """The content of ``path`` when :func:`prepare_kvasir_split` wrote it; None when absent.

    Raises:
        DataError: the file is not JSON, or another tool (or a person) wrote it: it is never
            replaced.
    """
    if not path.exists():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}): fix it, or move it away and run "
                        "prepare again.") from exc
    if not isinstance(content, dict) or content.get("made_by") != _MADE_BY:
        raise DataError(f"{path} was not written by prepare ({_MADE_BY}) and is never "
                        "replaced: prepare the split into another folder (--data), or move the "
                        "file away first.")
    return content


def _write_manifest(path: Path, content: dict) -> None:
    """Write ``path`` atomically (a hidden temporary file, then a rename)."""
    write_text_atomic(path, json.dumps(content, indent=2) + "\n")


def _finished(manifest: Path, raw: Path, pairs: list[tuple[Path, Path]]) -> bool:
    """True when the root of ``manifest`` holds a finished split of the images of ``raw``
    (``pairs``); False when there is no manifest, or prepare's own unfinished one.

    Raises:
        DataError: a manifest that is not prepare's (:func:`_own_manifest`), or a finished
            split of other images (both sources named).
    """
    content = _own_manifest(manifest)
    if content is None or not content.get("finished", True):  # older manifests: finished
        return False
    root = manifest.parent
    folders = (root / DATASETS[TRAIN_SET].folder, root / DATASETS["Kvasir"].folder)
    prepared = {image.name for folder in folders
                for image, _ in pair_files(*image_mask_dirs(folder))}
    if prepared != {image.name for image, _ in pairs}:
        raise DataError(f"{root} already holds the PraNet split prepared from "
                        f"{content.get('source')}; {raw} differs (other images). Prepare it "
                        f"into another folder (--data), or delete {folders[0]}, {folders[1]} "
                        f"and {manifest} first.")
    return True


def prepare_kvasir_split(raw: str | os.PathLike[str], root: str | os.PathLike[str]) -> DataLayout:
    """Build the PraNet Kvasir split from a raw Kvasir-SEG folder.

    Writes ``root/TrainDataset/{images,masks}`` (the Kvasir-SEG images that are not PraNet
    test images: 900 for the full release), ``root/TestDataset/Kvasir/{images,masks}`` (the
    PraNet test images found: 100 for the full release) and ``root/MANIFEST.json``. Files are
    hard-linked where the file system allows (no extra space), else copied.

    Nothing it did not write is replaced, and it never leaves a half-built split:

    - the split folders are built in a scratch folder, then renamed into place; a failure
      half-way removes what was already moved (and says so); a run *killed* half-way leaves a
      manifest marked unfinished, so the next run recognises that output as its own, removes
      it with the scratch folder and starts again;
    - a ``MANIFEST.json`` that is not JSON, or that another tool wrote, is refused (named);
    - running it again on a root it prepared returns at once when ``raw`` holds the same
      images, and is refused (naming both sources) when it holds other ones;
    - ``raw`` gets the same pair-count check as training on it (:func:`find_layout`): more
      pairs than Kvasir-SEG's 1000 are refused.

    Args:
        raw: the Kvasir-SEG folder with ``images/`` and ``masks/`` (e.g. ``data/Kvasir-SEG``).
        root: the data root to write the PraNet layout into (may be ``raw``'s parent).

    Returns:
        The :func:`~kdas_lite.data.find_layout` of ``root``.

    Raises:
        DataError: ``raw`` is not a dataset folder, has unpaired files or too many pairs;
            ``root`` already holds a ``TrainDataset``, ``TestDataset/Kvasir`` or
            ``MANIFEST.json`` that this function did not write, or a split prepared from
            other images; writing failed (nothing is kept).
    """
    raw, root = Path(raw).expanduser(), Path(root).expanduser()
    manifest = root / "MANIFEST.json"
    train_dir, test_dir = root / DATASETS[TRAIN_SET].folder, root / DATASETS["Kvasir"].folder
    pairs = pair_files(*image_mask_dirs(raw))
    if _finished(manifest, raw, pairs):
        return find_layout(root)
    set_status("kvasir-seg", raw, pairs)  # the check find_layout makes before training on it
    test_names = pranet_kvasir_test_names()
    split = {"train": [p for p in pairs if p[0].stem not in test_names],
             "test": [p for p in pairs if p[0].stem in test_names]}
    if not split["train"] or not split["test"]:
        raise DataError(f"{raw} is not Kvasir-SEG: of its {len(pairs)} images, "
                        f"{len(split['test'])} have the names of the PraNet Kvasir test set "
                        "and the rest would be the training set; both must be non-empty.")
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root, "prepare", DataError) as locked:
        if _finished(manifest, raw, pairs):  # by another process, since the check above
            return find_layout(root)
        if locked:
            _remove_stale(root, _SCRATCH, "an interrupted prepare")
        if _own_manifest(manifest) is not None:  # unfinished: its folders are ours, redo them
            for folder in (train_dir, test_dir):
                shutil.rmtree(folder, ignore_errors=True)
        clash = [str(p) for p in (train_dir, test_dir) if p.exists()]
        if clash:
            raise DataError(f"{' and '.join(clash)} already exist(s) and were not written by "
                            f"prepare_kvasir_split: prepare the split into another folder, or "
                            "move them away first.")
        content = _manifest(raw, len(split["train"]), len(split["test"]))
        _write_manifest(manifest, {**content, "finished": False, "sets": {}})
        moved: list[Path] = []
        try:
            _build(split, {"train": train_dir, "test": test_dir}, root, moved)
            _write_manifest(manifest, content)
        except BaseException as exc:
            for folder in moved:
                shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):
                test_dir.parent.rmdir()  # only if empty
            manifest.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise DataError(f"preparing the split in {root} failed ({exc}); nothing was "
                                "kept. Free disk space or check permissions and run it "
                                "again.") from exc
            raise
    return find_layout(root)


_SCRATCH = r"\.kvasir-split\.[a-z0-9_]{8}|\.MANIFEST\.json\.[0-9a-f]{12}\.tmp|MANIFEST\.json\.tmp"
"""Names of the scratch folders and temporary manifests of :func:`prepare_kvasir_split`."""


def _build(split: dict[str, list[tuple[Path, Path]]], targets: dict[str, Path], root: Path,
           moved: list[Path]) -> None:
    """Link each part of ``split`` into a scratch folder, then rename it to its target
    (appended to ``moved`` once there)."""
    with tempfile.TemporaryDirectory(prefix=".kvasir-split.", dir=root) as scratch:
        for part, target in targets.items():
            staged = Path(scratch) / part
            for sub in ("images", "masks"):
                (staged / sub).mkdir(parents=True)
            for image, mask in split[part]:
                _link_or_copy(image, staged / "images" / image.name)
                _link_or_copy(mask, staged / "masks" / mask.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
            moved.append(target)


def _manifest(raw: Path, n_train: int, n_test: int) -> dict:
    """The finished ``MANIFEST.json`` of a split of ``raw``."""
    return {
        "layout": "PraNet (TrainDataset/{images,masks}, TestDataset/<set>/{images,masks})",
        "made_by": _MADE_BY,
        "source": str(raw.absolute()),
        "finished": True,
        "sets": {
            TRAIN_SET: {"folder": DATASETS[TRAIN_SET].folder, "pairs": n_train,
                        "expected": DATASETS[TRAIN_SET].num_images, "status": "partial",
                        "note": "the Kvasir-SEG part of PraNet's training set only (900 "
                                "images in the full release); its 550 CVC-ClinicDB frames are "
                                "not part of Kvasir-SEG"},
            "Kvasir": {"folder": DATASETS["Kvasir"].folder, "pairs": n_test,
                       "expected": DATASETS["Kvasir"].num_images,
                       "status": "complete" if n_test == DATASETS["Kvasir"].num_images
                       else "partial",
                       "note": "PraNet's 100 Kvasir test names, taken from Kvasir-SEG"},
        },
    }


def course_data(data_root: str | os.PathLike[str] | None = None,
                use_synthetic: bool | None = None, *,
                synthetic_root: str | os.PathLike[str] = "runs/notebooks/synthetic-data",
                synthetic_images: int = 240, synthetic_size: int = 192,
                n_test_images: int = 40, seed: int = 0, url: str | None = None,
                pranet: bool | None = None, cache: str | os.PathLike[str] | None = None,
                progress: bool = True) -> DataLayout:
    """The dataset a notebook or lab uses: real data when it can be had, else SYNTHETIC.

    Args:
        data_root: a data folder; None looks at ``$KDAS_DATA``, ``../shared/data``, ``./data``
            (:func:`~kdas_lite.data.resolve_data_root`).
        use_synthetic: True forces the synthetic stand-in; False forbids it (an error when no
            real data can be had); None uses it only as the last resort.
        synthetic_root, synthetic_images, synthetic_size, n_test_images, seed: where and how
            the synthetic stand-in is generated.
        url: override the Kvasir-SEG download address (a mirror; the tests use a local server).
        pranet: try PraNet's full benchmark from Google Drive first (needs gdown; skipped
            without it); None: only when ``url`` is not given (a Kvasir-SEG mirror).
        cache: a folder that keeps the downloaded zips (PraNet's and Kvasir-SEG's) for the
            next run (on Colab, a Google Drive folder: :func:`kdas_lite.colab.course_setup`);
            None: not kept.
        progress: show the download's progress bar.

    Returns:
        The :class:`~kdas_lite.data.DataLayout`; a line saying which data it is is printed.

    Raises:
        DataError: ``data_root`` was given but holds no dataset, or ``use_synthetic=False`` and
            no real data could be found or downloaded.
    """
    layout = None
    if not use_synthetic:
        root = resolve_data_root(data_root)
        layout = _local_data(root)
        if layout is None and data_root is not None:
            find_layout(root)  # raises the DataError that explains the expected layout
        try_drive = pranet or (pranet is None and url is None)
        if layout is not None and try_drive and _is_fallback(root):
            layout = _replace_fallback(root, cache, progress) or layout
        elif layout is None and try_drive:
            layout = _download_pranet(root, cache, progress)
        if layout is None:
            layout = _download_kvasir(root, url, progress, required=use_synthetic is False,
                                      cache=cache)
            if layout is not None:
                _mark_fallback(root)
                print("only Kvasir-SEG is available: PraNet's split of it (the Kvasir test set "
                      "only); notebook 05's cross-dataset tables have one column")
    if layout is None:
        synthetic = make_synthetic_dataset(synthetic_root, n_train=synthetic_images,
                                           n_test=n_test_images, size=synthetic_size, seed=seed)
        layout = find_layout(synthetic)
        if not use_synthetic:
            print("no real polyp data here and no network to download Kvasir-SEG: using the "
                  "SYNTHETIC stand-in (procedurally drawn, NOT real endoscopy)")
    print(f"data: {layout.describe()}")
    return layout


def _local_data(root: Path) -> DataLayout | None:
    """The layout under ``root``, with a raw Kvasir-SEG folder split first; None when ``root``
    holds no dataset folder at all (a broken dataset raises instead of being skipped)."""
    candidates = (root / DATASETS[TRAIN_SET].folder, root, root / DATASETS["kvasir-seg"].folder)
    if not any(is_dataset_folder(folder) for folder in candidates):
        return None
    layout = find_layout(root)
    if layout.kind == "kvasir-seg":
        return prepare_kvasir_split(layout.train, root)
    return layout


def _download_pranet(root: Path, cache: str | os.PathLike[str] | None, progress: bool, *,
                     fallback: str = "the Kvasir-SEG download") -> DataLayout | None:
    """PraNet's benchmark from Google Drive into ``root``; None (with the reason printed) when
    gdown is missing or Drive refuses, so that the caller falls back to ``fallback``."""
    try:
        import gdown  # noqa: F401  (the Colab cell installs it; elsewhere it may be absent)
    except ImportError:
        return None
    try:
        return fetch_pranet(root, cache=cache, progress=progress)
    except (KDASError, OSError) as exc:
        print(f"PraNet's benchmark could not be fetched from Google Drive: {exc}\n"
              f"falling back to {fallback}", flush=True)
        return None


def _download_kvasir(root: Path, url: str | None, progress: bool, required: bool,
                     cache: str | os.PathLike[str] | None = None) -> DataLayout | None:
    """Download Kvasir-SEG into ``root`` and split it; None when the network is unavailable.
    With ``cache`` the zip is kept there (``kvasir-seg.zip``) and taken from there next time."""
    info = DATASETS["kvasir-seg"]
    sha256 = info.sha256 if url is None else None
    try:
        if cache is not None:
            cached = Path(cache).expanduser() / "kvasir-seg.zip"
            download_file(url or info.url, cached, sha256, progress=progress,
                          max_bytes=dataset_size_limit("kvasir-seg"))
            url = cached.absolute().as_uri()
        raw = download_dataset("kvasir-seg", root, url=url, sha256=sha256, progress=progress)
    except (KDASError, OSError) as exc:
        if required:
            raise DataError(f"no real polyp data under {root}, and downloading Kvasir-SEG "
                            f"failed: {exc}") from exc
        return None
    return prepare_kvasir_split(raw, root)


_FALLBACK = "course_data: Google Drive refused PraNet's benchmark, Kvasir-SEG stands in"
"""The mark :func:`course_data` puts in the manifest of the Kvasir-SEG split it made as a
fallback: only a split with this mark is ever replaced by PraNet's benchmark."""


def _mark_fallback(root: Path) -> None:
    manifest = root / "MANIFEST.json"
    content = _own_manifest(manifest)
    if content is not None and "fallback" not in content:
        _write_manifest(manifest, {**content, "fallback": _FALLBACK})


def _is_fallback(root: Path) -> bool:
    """True when ``root`` holds the Kvasir-SEG split :func:`course_data` made as a fallback
    (never a split a user prepared, nor data put there by hand)."""
    try:
        content = _own_manifest(root / "MANIFEST.json")
    except DataError:
        return False
    return content is not None and content.get("fallback") == _FALLBACK


def _replace_fallback(root: Path, cache: str | os.PathLike[str] | None, progress: bool
                      ) -> DataLayout | None:
    """Try Google Drive again after an earlier refusal; when PraNet's benchmark comes, it
    replaces the fallback split (whose files are links to the raw Kvasir-SEG, which stays).
    None (the reason printed) when gdown is missing or Drive refuses again."""
    with tempfile.TemporaryDirectory(prefix=".pranet-retry.", dir=root) as scratch:
        fetched = _download_pranet(Path(scratch), cache, progress, fallback="the Kvasir-SEG "
                                   "split already here (run this cell again later)")
        if fetched is None:
            return None
        with _exclusive(root, "replacing the Kvasir-SEG fallback split", DataError):
            old = Path(scratch) / "fallback"  # deleted with the scratch folder
            old.mkdir()
            for name in (TRAIN_SET, *TEST_SETS):
                target = root / DATASETS[name].folder
                source = Path(scratch) / DATASETS[name].folder
                if not source.exists():  # a set the archive lacked: whatever is here stays
                    continue
                if name in (TRAIN_SET, "Kvasir") and target.exists():  # the fallback's own
                    os.replace(target, old / name)
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(source, target)
            os.replace(Path(scratch) / "MANIFEST.json", root / "MANIFEST.json")
    print("PraNet's full benchmark came from Google Drive this time: it replaces the Kvasir-SEG "
          "fallback split", flush=True)
    return find_layout(root)
