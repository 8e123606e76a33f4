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
   (≈ 46 MB, progress bar), then the split: one test set, Kvasir, and it says so;
4. offline, the SYNTHETIC stand-in (:func:`~kdas_lite.data.make_synthetic_dataset`),
   announced as such.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from kdas_lite.data.download import download_dataset
from kdas_lite.data.io import pair_files
from kdas_lite.data.pranet import fetch_pranet
from kdas_lite.data.registry import (
    DATASETS,
    TRAIN_SET,
    DataLayout,
    find_layout,
    image_mask_dirs,
    is_dataset_folder,
    pranet_kvasir_test_names,
    resolve_data_root,
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


def prepare_kvasir_split(raw: str | os.PathLike[str], root: str | os.PathLike[str]) -> DataLayout:
    """Build the PraNet Kvasir split from a raw Kvasir-SEG folder.

    Writes ``root/TrainDataset/{images,masks}`` (the Kvasir-SEG images that are not PraNet
    test images: 900 for the full release), ``root/TestDataset/Kvasir/{images,masks}`` (the
    PraNet test images found: 100 for the full release) and ``root/MANIFEST.json``. Files are
    hard-linked where the file system allows (no extra space), else copied. The folders appear
    complete or not at all (built in a scratch folder, then renamed). Running it again on a
    root it prepared returns at once.

    Args:
        raw: the Kvasir-SEG folder with ``images/`` and ``masks/`` (e.g. ``data/Kvasir-SEG``).
        root: the data root to write the PraNet layout into (may be ``raw``'s parent).

    Returns:
        The :func:`~kdas_lite.data.find_layout` of ``root``.

    Raises:
        DataError: ``raw`` is not a dataset folder or has unpaired files; ``root`` already holds
            a ``TrainDataset`` or ``TestDataset/Kvasir`` that this function did not write.
    """
    raw, root = Path(raw).expanduser(), Path(root).expanduser()
    manifest = root / "MANIFEST.json"
    train_dir, test_dir = root / DATASETS[TRAIN_SET].folder, root / DATASETS["Kvasir"].folder
    if manifest.is_file() and json.loads(manifest.read_text()).get("made_by") == _MADE_BY:
        return find_layout(root)
    clash = [str(p) for p in (train_dir, test_dir) if p.exists()]
    if clash:
        raise DataError(f"{' and '.join(clash)} already exist(s) and were not written by "
                        f"prepare_kvasir_split: prepare the split into another folder, or move "
                        "them away first.")
    pairs = pair_files(*image_mask_dirs(raw))
    test_names = pranet_kvasir_test_names()
    split = {"train": [p for p in pairs if p[0].stem not in test_names],
             "test": [p for p in pairs if p[0].stem in test_names]}
    if not split["train"] or not split["test"]:
        raise DataError(f"{raw} is not Kvasir-SEG: of its {len(pairs)} images, "
                        f"{len(split['test'])} have the names of the PraNet Kvasir test set "
                        "and the rest would be the training set; both must be non-empty.")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".kvasir-split.", dir=root) as scratch:
        for part, target in (("train", train_dir), ("test", test_dir)):
            staged = Path(scratch) / part
            for sub in ("images", "masks"):
                (staged / sub).mkdir(parents=True)
            for image, mask in split[part]:
                _link_or_copy(image, staged / "images" / image.name)
                _link_or_copy(mask, staged / "masks" / mask.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
    n_train, n_test = len(split["train"]), len(split["test"])
    content = {
        "layout": "PraNet (TrainDataset/{images,masks}, TestDataset/<set>/{images,masks})",
        "made_by": _MADE_BY,
        "source": str(raw),
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
    tmp = manifest.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, manifest)
    return find_layout(root)


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
        cache: a folder that keeps PraNet's downloaded zips for the next run (on Colab, a
            Google Drive folder: :func:`kdas_lite.colab.course_setup`); None: not kept.
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
        if layout is None and (pranet or (pranet is None and url is None)):
            layout = _download_pranet(root, cache, progress)
        if layout is None:
            layout = _download_kvasir(root, url, progress, required=use_synthetic is False)
            if layout is not None:
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


def _download_pranet(root: Path, cache: str | os.PathLike[str] | None, progress: bool
                     ) -> DataLayout | None:
    """PraNet's benchmark from Google Drive into ``root``; None (with the reason printed) when
    gdown is missing or Drive refuses, so that the caller falls back to Kvasir-SEG."""
    try:
        import gdown  # noqa: F401  (the Colab cell installs it; elsewhere it may be absent)
    except ImportError:
        return None
    try:
        return fetch_pranet(root, cache=cache, progress=progress)
    except (KDASError, OSError) as exc:
        print(f"PraNet's benchmark could not be fetched from Google Drive: {exc}\n"
              "falling back to the Kvasir-SEG download", flush=True)
        return None


def _download_kvasir(root: Path, url: str | None, progress: bool,
                     required: bool) -> DataLayout | None:
    """Download Kvasir-SEG into ``root`` and split it; None when the network is unavailable."""
    try:
        raw = download_dataset("kvasir-seg", root, url=url, progress=progress)
    except (KDASError, OSError) as exc:
        if required:
            raise DataError(f"no real polyp data under {root}, and downloading Kvasir-SEG "
                            f"failed: {exc}") from exc
        return None
    return prepare_kvasir_split(raw, root)
