"""Which polyp datasets exist, how many images each holds, and where they live on disk.

What this module teaches: a benchmark is only reproducible when everybody uses the *same*
files. Polyp segmentation papers since PraNet (Fan et al., MICCAI 2020), including Polyp-PVT
and KDAS, share one split, the **PraNet layout**::

    <root>/TrainDataset/images/*.png      1450 = 900 Kvasir-SEG + 550 CVC-ClinicDB
    <root>/TrainDataset/masks/*.png
    <root>/TestDataset/Kvasir/{images,masks}              100
    <root>/TestDataset/CVC-ClinicDB/{images,masks}         62
    <root>/TestDataset/CVC-ColonDB/{images,masks}         380
    <root>/TestDataset/CVC-300/{images,masks}              60   (EndoScene test split)
    <root>/TestDataset/ETIS-LaribPolypDB/{images,masks}   196

Kvasir and CVC-ClinicDB test images come from the same sources as the training images
("seen" domains); CVC-ColonDB, CVC-300 and ETIS are never seen in training and measure
cross-dataset generalisation. The raw Kvasir-SEG release (1000 images, one folder pair) is
also accepted: training on it leaves out the 100 images of the PraNet Kvasir test set
(:func:`pranet_kvasir_test_names`, shipped with the package), and
:func:`kdas_lite.data.prepare_kvasir_split` turns it into the PraNet layout.

**Complete, partial, inferred, synthetic.** A course or a mirror often has only part of a
test set (ETIS 20 of 196, say). Such a set still loads and evaluates, but its score is not
comparable with a published full-set number, so every set carries a :class:`SetStatus`
(pairs found / pairs in the benchmark, and a status) whose :attr:`~SetStatus.label`, e.g.
``ETIS-LaribPolypDB (20/196)``, is what tables, CSV files and figures show. The status comes
from a ``MANIFEST.json`` in the data root when there is one (``../shared/data`` has one),
otherwise from the counts: fewer pairs than the benchmark → ``partial``; more → an error that
names the extra files. Data written by :func:`kdas_lite.data.make_synthetic_dataset` is
``synthetic`` everywhere.

:data:`DATASETS` records, for every dataset, its image count (checked by the real-data tests),
its folder in the layout, where to get it and its licence. :func:`find_layout` inspects a data
root and tells which datasets are present; :func:`resolve_data_root` picks the root from an
argument, the ``KDAS_DATA`` environment variable or the shared course folder.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from kdas_lite.errors import DataError

__all__ = [
    "DATASETS",
    "MARKER",
    "TEST_SETS",
    "TRAIN_SET",
    "DataLayout",
    "DatasetInfo",
    "SetStatus",
    "find_layout",
    "find_shared_data",
    "find_test_sets",
    "image_mask_dirs",
    "is_dataset_folder",
    "is_synthetic",
    "leaked_test_images",
    "pranet_kvasir_test_names",
    "read_manifest",
    "resolve_data_root",
    "set_status",
    "training_source",
]

MARKER = "SYNTHETIC.txt"  # written by kdas_lite.data.make_synthetic_dataset into its root


def is_synthetic(root: str | os.PathLike[str]) -> bool:
    """True when ``root`` was written by :func:`~kdas_lite.data.make_synthetic_dataset` (has
    ``SYNTHETIC.txt``)."""
    return (Path(root) / MARKER).is_file()


PRANET_TRAIN_URL = "https://drive.google.com/file/d/1YiGHLw4iTvKdvbT6MgwO9zcCv8zJ_Bnb/view"
PRANET_TEST_URL = "https://drive.google.com/file/d/1Y2z7FD5p5y31vkZwQQomXFRB0HutHyao/view"
# (the older files 1lODorfB33jbd-im-qrtUgWnZXxB94F55 / 1o8OfBvYE6K-EpDyvzsmMPndnUMwb540R are the
# fallbacks of kdas_lite.data.pranet.PRANET_DRIVE_FILES)
_PRANET_NOTE = (
    "Part of the PraNet split (github.com/DengPingFan/PraNet, 'Downloading necessary data'); "
    "Google Drive has no stable direct link, so download the zip in a browser (or with gdown) "
    "and unzip it into the data root."
)


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset of the benchmark.

    Attributes:
        name: the key in :data:`DATASETS` (also the folder name of a test set).
        split: ``"train"`` (PraNet training set), ``"test"`` (one of :data:`TEST_SETS`) or
            ``"raw"`` (an original release, not part of the PraNet split).
        num_images: expected number of image/mask pairs.
        folder: where it lives relative to the data root (contains ``images/`` and ``masks/``).
        homepage: where a person gets it (project page or the Google Drive file of the split).
        archive_bytes: approximate size of the zip the dataset comes in (for a PraNet test
            set, the whole ``TestDataset.zip``); :func:`kdas_lite.data.download_dataset`
            refuses to download or unpack more than a few times this
            (:data:`kdas_lite.data.download.SIZE_MARGIN`), so a wrong link cannot fill the disk.
        url: a direct download link usable by :func:`kdas_lite.data.download_dataset`, or
            ``None`` when only a browser download exists.
        sha256: checksum of the file at ``url``; ``None`` when no checksum is published
            (the download is then not verified: pass ``sha256=`` to pin one).
        license: licence / terms-of-use summary; read the homepage before redistributing.
        citation: the paper to cite when using it.
    """

    name: str
    split: Literal["train", "test", "raw"]
    num_images: int
    folder: str
    homepage: str
    archive_bytes: int
    url: str | None = None
    sha256: str | None = None
    license: str = ""
    citation: str = ""


# Archive sizes. kvasir-seg.zip is ~46 MB (Simula's download page, datasets/README.md).
# PraNet's Google Drive files as Drive lists them: TrainDataset.zip 399.5 MB, TestDataset.zip
# 327.2 MB, rounded up; SIZE_MARGIN absorbs a change upstream.
_PRANET_TRAIN_BYTES = 400 * 10**6
_PRANET_TEST_BYTES = 328 * 10**6
_KVASIR_SEG_BYTES = 46 * 10**6

_RESEARCH_ONLY = "Research and education use only; cite the paper; no redistribution."

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="TrainDataset",
            split="train",
            num_images=1450,
            folder="TrainDataset",
            homepage=PRANET_TRAIN_URL,
            archive_bytes=_PRANET_TRAIN_BYTES,
            license="Union of Kvasir-SEG (900) and CVC-ClinicDB (550) images: their terms "
            "apply. " + _PRANET_NOTE,
            citation="Fan et al., PraNet, MICCAI 2020",
        ),
        DatasetInfo(
            name="Kvasir",
            split="test",
            num_images=100,
            folder="TestDataset/Kvasir",
            homepage=PRANET_TEST_URL,
            archive_bytes=_PRANET_TEST_BYTES,
            license="Kvasir-SEG terms (see kvasir-seg). " + _PRANET_NOTE,
            citation="Jha et al., Kvasir-SEG, MMM 2020",
        ),
        DatasetInfo(
            name="CVC-ClinicDB",
            split="test",
            num_images=62,
            folder="TestDataset/CVC-ClinicDB",
            homepage=PRANET_TEST_URL,
            archive_bytes=_PRANET_TEST_BYTES,
            license=_RESEARCH_ONLY + " " + _PRANET_NOTE,
            citation="Bernal et al., WM-DOVA maps, CMIG 2015",
        ),
        DatasetInfo(
            name="CVC-ColonDB",
            split="test",
            num_images=380,
            folder="TestDataset/CVC-ColonDB",
            homepage=PRANET_TEST_URL,
            archive_bytes=_PRANET_TEST_BYTES,
            license=_RESEARCH_ONLY + " " + _PRANET_NOTE,
            citation="Tajbakhsh et al., IEEE TMI 2015 / Bernal et al., Pattern Recognit. 2012",
        ),
        DatasetInfo(
            name="CVC-300",
            split="test",
            num_images=60,
            folder="TestDataset/CVC-300",
            homepage=PRANET_TEST_URL,
            archive_bytes=_PRANET_TEST_BYTES,
            license=_RESEARCH_ONLY + " (EndoScene test split.) " + _PRANET_NOTE,
            citation="Vázquez et al., EndoScene, J. Healthc. Eng. 2017",
        ),
        DatasetInfo(
            name="ETIS-LaribPolypDB",
            split="test",
            num_images=196,
            folder="TestDataset/ETIS-LaribPolypDB",
            homepage=PRANET_TEST_URL,
            archive_bytes=_PRANET_TEST_BYTES,
            license=_RESEARCH_ONLY + " " + _PRANET_NOTE,
            citation="Silva et al., IJCARS 2014",
        ),
        DatasetInfo(
            name="kvasir-seg",
            split="raw",
            num_images=1000,
            folder="Kvasir-SEG",
            homepage="https://datasets.simula.no/kvasir-seg/",
            archive_bytes=_KVASIR_SEG_BYTES,
            url="https://datasets.simula.no/downloads/kvasir-seg.zip",
            sha256=None,  # not published by Simula; unknown here, so downloads are unverified
            license="Open access for research and education (Simula Research Laboratory); "
            "read the terms on the homepage before any other use and cite the paper.",
            citation="Jha et al., Kvasir-SEG: A Segmented Polyp Dataset, MMM 2020",
        ),
    )
}
"""Every dataset kdas_lite knows, by name."""

TRAIN_SET = "TrainDataset"
"""Name of the PraNet training set in :data:`DATASETS`."""

TEST_SETS: tuple[str, ...] = ("Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "CVC-300",
                              "ETIS-LaribPolypDB")
"""The five test sets, in the column order of the KDAS / Polyp-PVT tables."""


def image_mask_dirs(folder: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Return ``(folder/images, folder/masks)`` or raise a DataError saying what is missing."""
    folder = Path(folder)
    images, masks = folder / "images", folder / "masks"
    missing = [p.name + "/" for p in (images, masks) if not p.is_dir()]
    if missing:
        raise DataError(
            f"{folder} has no {' or '.join(missing)} sub-folder. A dataset folder must contain "
            "images/ and masks/ with one mask per image (same file name stem)."
        )
    return images, masks


Status = Literal["complete", "partial", "inferred", "synthetic"]


@dataclass(frozen=True)
class SetStatus:
    """How much of a benchmark set a folder holds, and whether its score is comparable.

    Attributes:
        name: the set, e.g. ``"ETIS-LaribPolypDB"``.
        pairs: image/mask pairs found.
        expected: pairs in the benchmark (None for a set the registry does not know).
        status: ``"complete"``; ``"partial"`` (fewer pairs than the benchmark); ``"inferred"``
            (all pairs, but their identity with the benchmark's files is inferred, not
            checked — the data's MANIFEST.json says so); ``"synthetic"`` (generated).
        note: the manifest's note, if any.
    """

    name: str
    pairs: int
    expected: int | None
    status: Status
    note: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        """What a table shows: ``Kvasir``, ``ETIS-LaribPolypDB (20/196)`` or
        ``CVC-300 (inferred)``."""
        if self.status == "partial":
            return f"{self.name} ({self.pairs}/{self.expected})"
        if self.status == "inferred":
            return f"{self.name} (inferred)"
        return self.name

    @property
    def comparable(self) -> bool:
        """True when a score on this set may stand next to a published full-set number."""
        return self.status in ("complete", "inferred")

    @property
    def caveat(self) -> str:
        """A sentence for table footnotes ('' for a complete or synthetic set)."""
        if self.status == "partial":
            return (f"{self.label}: a subset of {self.pairs} of the {self.expected} benchmark "
                    "images; not comparable with published full-set scores.")
        if self.status == "inferred":
            return (f"{self.label}: all {self.pairs} images, but their identity with the "
                    "benchmark's files is inferred, not checked.")
        return ""


@functools.cache
def pranet_kvasir_test_names() -> frozenset[str]:
    """File stems of the 100 Kvasir-SEG images of the PraNet Kvasir test set.

    They are a fact of the benchmark (PraNet's ``TestDataset/Kvasir``), shipped as package data
    (``kdas_lite/data/splits/kvasir_pranet_test.txt``); the other 900 Kvasir-SEG images are
    PraNet's Kvasir training images.
    """
    text = resources.files("kdas_lite.data").joinpath("splits/kvasir_pranet_test.txt")
    return frozenset(line.strip() for line in text.read_text().splitlines() if line.strip())


def training_source(path: str | os.PathLike[str]) -> str:
    """Which dataset a PraNet training image comes from, by its file name.

    PraNet's ``TrainDataset`` mixes 900 Kvasir-SEG frames (named by a hash, e.g.
    ``cju0qkwl35piu0993l0dewei2``) and 550 CVC-ClinicDB frames (numbered ``1``–``612``).

    Returns:
        ``"CVC-ClinicDB"`` for a numeric stem, else ``"Kvasir-SEG"``.
    """
    return "CVC-ClinicDB" if Path(path).stem.isdigit() else "Kvasir-SEG"


def read_manifest(root: str | os.PathLike[str]) -> dict[str, dict]:
    """The ``sets`` of ``root/MANIFEST.json`` (name → entry with ``pairs``, ``expected``,
    ``status``, ``note``), or ``{}`` when the file is absent.

    Raises:
        DataError: the file exists but is not a manifest (not JSON, or no ``sets`` mapping).
    """
    path = Path(root) / "MANIFEST.json"
    if not path.is_file():
        return {}
    try:
        sets = json.loads(path.read_text(encoding="utf-8"))["sets"]
        if not isinstance(sets, dict):
            raise TypeError("'sets' is not a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a data manifest ({exc}): it needs "
                        '{"sets": {name: {"pairs": N, "expected": N, "status": ...}}}. '
                        "Fix or delete it.") from exc
    return sets


def _manifest_entry(name: str, folder: Path) -> dict:
    """The manifest entry of set ``name`` from the data root above ``folder``, if any."""
    for root in (folder.parent, folder.parent.parent):
        entry = read_manifest(root).get(name)
        if entry is not None:
            return entry
    return {}


def _is_synthetic_folder(folder: Path) -> bool:

    return any(is_synthetic(root) for root in (folder, folder.parent, folder.parent.parent))


def set_status(name: str, folder: str | os.PathLike[str],
               pairs: Sequence[tuple[Path, Path]] | None = None) -> SetStatus:
    """Count the pairs of one set and decide its status (see the module docstring).

    Args:
        name: the set's name (a key of :data:`DATASETS` for a benchmark set).
        folder: the set's folder with ``images/`` and ``masks/``.
        pairs: its pairs when the caller has already listed them (e.g. a
            :class:`~kdas_lite.data.PolypTestDataset`), so the folder is not listed twice.

    Raises:
        DataError: unpaired files (named by :func:`~kdas_lite.data.pair_files`), or more pairs
            than the benchmark holds (the files beyond it are named where the benchmark's
            names are known).
    """
    from kdas_lite.data.io import pair_files  # local import: io is a sibling, kept light

    folder = Path(folder)
    if pairs is None:
        pairs = pair_files(*image_mask_dirs(folder))
    info = DATASETS.get(name)
    expected = info.num_images if info is not None else None
    if _is_synthetic_folder(folder):
        return SetStatus(name, len(pairs), expected, "synthetic")
    entry = _manifest_entry(name, folder)
    if expected is not None and len(pairs) > expected:
        extra = ""
        if name == "Kvasir":
            names = sorted(p[0].name for p in pairs if p[0].stem not in pranet_kvasir_test_names())
            extra = f" Not in the PraNet Kvasir test set: {', '.join(names[:10])}" + (
                f", ... ({len(names) - 10} more)." if len(names) > 10 else ".")
        raise DataError(
            f"{folder} holds {len(pairs)} image/mask pairs but {name} has {expected} in the "
            f"benchmark.{extra} Remove the extra files (or put them in a folder of another "
            "name) so that scores stay comparable."
        )
    status: Status = entry.get("status", "complete" if len(pairs) == expected else "partial")
    if expected is None:
        status = "complete"
    elif len(pairs) < expected and status != "partial":
        status = "partial"  # the folder holds fewer files than its manifest claims
    return SetStatus(name, len(pairs), expected, status, entry.get("note", ""))


@dataclass(frozen=True)
class DataLayout:
    """What :func:`find_layout` found under a data root.

    Attributes:
        root: the data root.
        kind: ``"pranet"`` (TrainDataset + TestDataset) or ``"kvasir-seg"`` (one folder pair).
        train: folder (with ``images/`` and ``masks/``) to train on.
        test: available test sets, name → folder, in :data:`TEST_SETS` order (empty for
            raw Kvasir-SEG: split the training folder with ``train_val_split`` instead).
        synthetic: True when the root was written by ``make_synthetic_dataset``.
        status: set name → :class:`SetStatus` for the training set and every test set found.
        exclude: file stems never to train or validate on (test images must not leak into
            training): for raw Kvasir-SEG, the 100 images of the PraNet Kvasir test set; for
            the PraNet layout, the training images that :func:`leaked_test_images` finds in the
            test sets (none in a correct copy of the split).
    """

    root: Path
    kind: Literal["pranet", "kvasir-seg"]
    train: Path
    test: dict[str, Path] = field(default_factory=dict)
    synthetic: bool = False
    status: dict[str, SetStatus] = field(default_factory=dict)
    exclude: frozenset[str] = frozenset()

    def describe(self) -> str:
        """One line for run headers: real or SYNTHETIC, and each set's label."""
        kind = "SYNTHETIC stand-in" if self.synthetic else "real data"
        sets = ", ".join(status.label for name, status in self.status.items()
                         if name in self.test) or "none"
        return f"{self.root} ({kind}); test sets: {sets}"


def is_dataset_folder(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder`` has both an ``images/`` and a ``masks/`` sub-folder."""
    return (Path(folder) / "images").is_dir() and (Path(folder) / "masks").is_dir()


def find_test_sets(root: str | os.PathLike[str]) -> dict[str, Path]:
    """The test sets of :data:`TEST_SETS` present under ``root`` (name → folder with
    ``images/`` and ``masks/``, in table order). A root with a ``TestDataset/`` and no
    ``TrainDataset/`` is a valid evaluation input."""
    root = Path(root).expanduser()
    return {name: root / DATASETS[name].folder for name in TEST_SETS
            if is_dataset_folder(root / DATASETS[name].folder)}


_NAMED_BY_FRAME_ID = ("Kvasir", "CVC-ClinicDB")
"""Test sets whose file names are frame ids shared with the training set (Kvasir-SEG's
hashes, CVC-ClinicDB's frame numbers): a training file of the same name is the same frame.
CVC-ColonDB, CVC-300 and ETIS number their frames from 1 as well, so a training file ``1.png``
(a ClinicDB frame) is *not* ColonDB's ``1.png``: those sets are compared by content only."""


def leaked_test_images(train_pairs: Sequence[tuple[Path, Path]],
                   test_pairs: Mapping[str, Sequence[tuple[Path, Path]]]) -> dict[str, list[str]]:
    """The training images that are test images, by test set: a test image must never be
    trained on or used for model selection, or its score measures memory.

    Three checks:

    1. by name, the PraNet Kvasir test names shipped with the package
       (:func:`pranet_kvasir_test_names`), whether or not ``TestDataset/Kvasir`` is on disk;
    2. by name, the Kvasir and CVC-ClinicDB test sets given (:data:`_NAMED_BY_FRAME_ID`);
    3. by content, every test set given: a training image whose bytes equal a test image's
       (only files of equal size are hashed, so a clean split costs one ``stat`` per file).

    Args:
        train_pairs: the training folder's ``(image, mask)`` paths.
        test_pairs: test set name → its pairs.

    Returns:
        Test set name → sorted stems of the training images found in it (sets without any
        are left out; an empty dict for a clean split).
    """
    stems = {image.stem for image, _ in train_pairs}
    found: dict[str, set[str]] = {"Kvasir": stems & pranet_kvasir_test_names()}
    for name in _NAMED_BY_FRAME_ID:
        if name in test_pairs:
            found[name] = found.get(name, set()) | (
                stems & {image.stem for image, _ in test_pairs[name]})
    by_size: dict[int, list[Path]] = {}
    for image, _ in train_pairs:
        by_size.setdefault(image.stat().st_size, []).append(image)
    from kdas_lite.data.io import file_sha256  # local import: io is a sibling, kept light

    digest = functools.cache(file_sha256)
    for name, pairs in test_pairs.items():
        for image, _ in pairs:
            same = [c for c in by_size.get(image.stat().st_size, ()) if digest(c) == digest(image)]
            found.setdefault(name, set()).update(c.stem for c in same)
    return {name: sorted(found_stems) for name, found_stems in found.items() if found_stems}


def find_layout(root: str | os.PathLike[str]) -> DataLayout:
    """Recognise the PraNet layout or raw Kvasir-SEG under ``root``.

    Accepted, in this order: ``root/TrainDataset/{images,masks}`` (+ any test sets present
    under ``root/TestDataset/``), ``root/{images,masks}``, ``root/Kvasir-SEG/{images,masks}``.
    Every set found is counted (:func:`set_status`), so unpaired files fail here, before any
    training or evaluation starts. Training images that are test images
    (:func:`leaked_test_images`) go into ``exclude``, with a :class:`~kdas_lite.data.DataWarning`
    that counts them; a root with test sets only is :func:`find_test_sets`'s input.

    Raises:
        DataError: none of these exists (the message shows the expected tree); a set has
            unpaired files, or more pairs than its benchmark (the files are named).
    """

    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"data root {root} does not exist. Pass the folder that holds TrainDataset/ and "
            "TestDataset/ (or set KDAS_DATA), download Kvasir-SEG with "
            "`kdas-lite download kvasir-seg`, or make a synthetic set with "
            "kdas_lite.data.make_synthetic_dataset."
        )
    train = root / DATASETS[TRAIN_SET].folder
    if is_dataset_folder(train):
        from kdas_lite.data.io import DataWarning, pair_files  # local import, as in set_status

        tests = find_test_sets(root)
        folders = {TRAIN_SET: train, **tests}
        pairs = {name: pair_files(*image_mask_dirs(folder)) for name, folder in folders.items()}
        status = {name: set_status(name, folder, pairs[name]) for name, folder in folders.items()}
        leaks = leaked_test_images(pairs[TRAIN_SET], {name: pairs[name] for name in tests})
        exclude = frozenset(stem for stems in leaks.values() for stem in stems)
        if exclude:
            where = "; ".join(f"{name}: {len(stems)}, e.g. {stems[0]}"
                              for name, stems in leaks.items())
            warnings.warn(f"{train} holds {len(exclude)} test images ({where}): they are left "
                          "out of training and validation. Remove them from the training "
                          "folder to silence this.", DataWarning, stacklevel=2)
        return DataLayout(root, "pranet", train, tests, is_synthetic(root), status, exclude)
    for candidate in (root, root / DATASETS["kvasir-seg"].folder):
        if is_dataset_folder(candidate):
            status = {"kvasir-seg": set_status("kvasir-seg", candidate)}
            return DataLayout(root, "kvasir-seg", candidate, {}, is_synthetic(root), status,
                              exclude=pranet_kvasir_test_names())
    raise DataError(
        f"no polyp dataset found under {root}. Expected either the PraNet layout\n"
        f"  {root}/TrainDataset/images, {root}/TrainDataset/masks\n"
        f"  {root}/TestDataset/<Kvasir|CVC-ClinicDB|CVC-ColonDB|CVC-300|ETIS-LaribPolypDB>/"
        "{images,masks}\n"
        f"or raw Kvasir-SEG: {root}/images and {root}/masks (or {root}/Kvasir-SEG/...). "
        "See datasets/README.md for where to download them."
    )


def find_shared_data() -> Path | None:
    """The real-data folder if one is available, else None.

    Looks at ``$KDAS_DATA``, then ``../shared/data`` next to the current directory, then
    ``../shared/data`` next to the repository that holds this package.
    """
    candidates = []
    if os.environ.get("KDAS_DATA"):
        candidates.append(Path(os.environ["KDAS_DATA"]).expanduser())
    candidates.append(Path.cwd().parent / "shared" / "data")
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    return next((path for path in candidates if path.is_dir()), None)


def resolve_data_root(path: str | os.PathLike[str] | None = None) -> Path:
    """Choose the data root: ``path`` if given, else ``$KDAS_DATA``, else the shared folder
    (:func:`find_shared_data`), else ``./data``. The folder is not required to exist yet
    (a download may create it); :func:`find_layout` checks its content."""
    if path is not None:
        return Path(path).expanduser()
    if os.environ.get("KDAS_DATA"):
        return Path(os.environ["KDAS_DATA"]).expanduser()
    return find_shared_data() or Path("data")
