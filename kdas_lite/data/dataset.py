"""PyTorch datasets for polyp segmentation: training pairs, test folders, and a decode cache.

What this module teaches:

- **Training samples** (:class:`PolypDataset`) are ``(image, mask)`` tensors at one square size:
  image ``float32 (3, size, size)`` normalised with the encoder's mean/std, mask
  ``float32 (1, size, size)`` in {0, 1} (in [0, 1] with ``soft_masks=True``: resized
  bilinearly, fractional along the edges, as the public KDAS script's masks).
- **Test samples** (:class:`PolypTestDataset`) keep the mask at its **original** resolution:
  the evaluation protocol of PraNet / Polyp-PVT / KDAS resizes the *prediction* up to the
  mask, never the mask down to the prediction, so small polyps are scored honestly.
- **Model selection uses a validation split of the training set** (:func:`train_val_split`);
  the five test sets are reported, never used to pick an epoch.
- **Decoding is the CPU bottleneck.** A 1000-px JPEG takes milliseconds to decode, far more than
  the augmentation of a 352-px image. With ``cache="memory"`` or ``"disk"`` every pair is
  decoded once, resized to exactly ``size × size`` (image bilinear, mask nearest) and kept as
  one ``uint8 (N, size, size, 4)`` array (RGB + mask). Because the transforms resize to
  ``size`` as their *first* step, the cached path gives bit-identical samples to the uncached
  one; a bigger cache would not add detail either, since multi-scale training rescales the
  batch tensor afterwards. Memory cost: ``N · size² · 4`` bytes (≈ 0.7 GB for the 1450
  training images at 352 px). ``"disk"`` stores the array as one ``.npy`` file, memory-mapped,
  named by a hash of the files' *content* and ``size``: changing any file's bytes invalidates
  it. See ``docs/bench/data_cache.md`` for the speed-up.
- **Test sets are decoded once too.** ``PolypTestDataset(..., cache_dir=...)`` keeps the
  decoded masks at their original resolution (bit-packed) and the images resized to ``size``
  in two files under the cache folder (never in the data folder), named by the same kind of
  hash; samples are bit-identical to the uncached ones. See ``docs/bench/eval.md``.
- **Caches never go stale or break a run** (:mod:`kdas_lite.data.cache_files`): named by the
  content hashes of the data files, checked against a checksum on every read, rebuilt with a
  warning when unreadable, written with ``fsync`` and the umask's permissions, and skipped
  with a warning when the cache folder cannot be written.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info
from tqdm.auto import tqdm

from kdas_lite.data.cache_files import (
    content_hashes,
    default_cache_dir,
    read_cache_file,
    usable_cache_dir,
    write_cache_file,
)
from kdas_lite.data.io import pair_files, read_pair
from kdas_lite.data.registry import image_mask_dirs, training_source
from kdas_lite.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_eval_transform,
    build_resize,
    build_train_transform,
)
from kdas_lite.errors import DataError

__all__ = ["CacheMode", "PolypDataset", "PolypTestDataset", "collate_test", "default_cache_dir",
           "load_split", "split_pairs", "subsample", "train_val_split"]

CacheMode = Literal["none", "memory", "disk"]
Pair = tuple[Path, Path]
_CACHE_FORMAT = 2  # bump when the cached content or its naming changes meaning


def train_val_split(pairs: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
                    val_fraction: float = 0.1, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """Split training pairs into train and validation parts, reproducibly.

    The pairs are sorted by path first, so the split depends only on the file names, the
    fraction and the seed, never on the order the file system lists files in.

    Args:
        pairs: ``(image, mask)`` paths, e.g. from :func:`~kdas_lite.data.pair_files`.
        val_fraction: share of pairs for validation, in ``[0, 1)``; rounded, and at least one
            pair when positive and there are two or more pairs.
        seed: seed of the random permutation.

    Returns:
        ``(train_pairs, val_pairs)``, each sorted by path.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ordered = sorted((Path(image), Path(mask)) for image, mask in pairs)
    if not ordered:
        raise DataError("train_val_split got no pairs: the training folder is empty.")
    n_val = round(len(ordered) * val_fraction)
    if val_fraction > 0 and len(ordered) >= 2:
        n_val = min(max(n_val, 1), len(ordered) - 1)
    chosen = set(np.random.default_rng(seed).permutation(len(ordered))[:n_val].tolist())
    train = [pair for k, pair in enumerate(ordered) if k not in chosen]
    val = [pair for k, pair in enumerate(ordered) if k in chosen]
    return train, val


def subsample(pairs: Sequence[Pair], n: int | None, seed: int = 0,
              group: Callable[[Path], str] = training_source) -> list[Pair]:
    """At most ``n`` pairs drawn at random (seeded), keeping each source's share.

    Taking the *first* N files by name would be biased: in PraNet's training set the numbered
    CVC-ClinicDB frames sort before the Kvasir-SEG names, so the first 200 are all ClinicDB.
    Here the pairs are grouped by ``group(image_path)`` (default
    :func:`~kdas_lite.data.training_source`), each group gets its proportional share of ``n``
    (largest remainders first) and the members are drawn with ``seed``.

    Args:
        pairs: ``(image, mask)`` paths.
        n: how many to keep; None (or ≥ ``len(pairs)``) keeps all.
        seed: seed of the draw.
        group: source of a pair, from its image path.

    Returns:
        The kept pairs, sorted by path.
    """
    ordered = sorted(pairs)
    if n is None or n >= len(ordered):
        return ordered
    groups: dict[str, list[Pair]] = {}
    for pair in ordered:
        groups.setdefault(group(pair[0]), []).append(pair)
    exact = {name: n * len(members) / len(ordered) for name, members in groups.items()}
    share = {name: int(value) for name, value in exact.items()}
    for name in sorted(groups, key=lambda g: (share[g] - exact[g], g))[:n - sum(share.values())]:
        share[name] += 1
    rng = np.random.default_rng(seed)
    kept = [members[k] for name, members in sorted(groups.items())
            for k in sorted(rng.permutation(len(members))[:share[name]].tolist())]
    return sorted(kept)


def load_split(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """The named lists of a split file: ``{"lists": {name: [file stem, ...]}}`` (JSON), e.g.
    ``kdas_lite/data/splits/transfer_set.json`` (experiments/transfer_split.py).

    Raises:
        DataError: the file is missing, not JSON, or has no ``lists`` of string lists.
    """
    path = Path(path)
    try:
        lists = json.loads(path.read_text(encoding="utf-8"))["lists"]
        if not all(isinstance(v, list) and all(isinstance(s, str) for s in v)
                   for v in lists.values()):
            raise TypeError
    except FileNotFoundError as exc:
        raise DataError(f"split file {path} not found: give the path of a split JSON "
                        "(e.g. kdas_lite/data/splits/transfer_set.json)") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"split file {path} is not a split: it needs "
                        '{"lists": {"name": ["file stem", ...]}}') from exc
    return lists


def split_pairs(pairs: Sequence[Pair], split_file: str | os.PathLike[str],
                names: Sequence[str], exclude: frozenset[str] = frozenset()
                ) -> list[list[Pair]]:
    """The pairs of each list ``names`` of ``split_file`` (by image file stem), sorted by path.

    Raises:
        DataError: a list is not in the file, two of the lists share an image, an id names
            no training image, or an id is in ``exclude`` (a test image: never trained on).
    """
    lists = load_split(split_file)
    by_stem = {Path(image).stem: (Path(image), Path(mask)) for image, mask in pairs}
    out, seen = [], set()
    for name in names:
        if name not in lists:
            raise DataError(f"split file {split_file} has no list {name!r}; its lists: "
                            f"{', '.join(sorted(lists))}")
        ids = set(lists[name])
        for problem, bad in (("are test images", ids & exclude),
                             ("are not training images of this dataset",
                              ids - set(by_stem) - exclude),
                             ("are in two of the lists " + ", ".join(names), ids & seen)):
            if bad:
                raise DataError(f"split file {split_file}: {len(bad)} id(s) of {name!r} "
                                f"{problem} (e.g. {sorted(bad)[0]}); rebuild the split for "
                                "this dataset")
        seen |= ids
        out.append(sorted(by_stem[stem] for stem in ids))
    return out


def _key(*parts: Any) -> str:
    """A short hash naming a cache file: of the cache format and ``parts``."""
    return hashlib.sha256(json.dumps([_CACHE_FORMAT, *parts]).encode()).hexdigest()[:20]


def _cache_key(pairs: Sequence[Pair], size: int, cache_dir: Path,
               soft_masks: bool = False) -> str:
    """Hash of (the files' content hashes in order, target size, mask kind): changes whenever
    the bytes of any input change."""
    hashes = content_hashes([path for pair in pairs for path in pair], cache_dir)
    return _key(size, hashes, *(["soft"] if soft_masks else []))


def _mask_values(mask: np.ndarray, soft_masks: bool) -> np.ndarray:
    """A boolean mask as uint8: {0, 1}, or {0, 255} for soft masks (room for the fractional
    values that the bilinear resize makes along the edges)."""
    return mask.astype(np.uint8) * (255 if soft_masks else 1)


def _fill_cache(out: np.ndarray, pairs: Sequence[Pair], size: int, progress: bool,
                soft_masks: bool = False) -> None:
    """Decode every pair, resize it to ``size²`` and write RGB + mask into ``out[i]``."""
    resize = build_resize(size, soft_masks)
    bar = tqdm(pairs, desc=f"caching {size}px", leave=False, disable=not progress)
    for i, (image_path, mask_path) in enumerate(bar):
        image, mask = read_pair(image_path, mask_path)
        small = resize(image=image, mask=_mask_values(mask, soft_masks))
        out[i, :, :, :3] = small["image"]
        out[i, :, :, 3] = small["mask"]


def _array_of_shape(shape: tuple[int, ...]) -> Callable[[Path], np.ndarray]:
    """A reader of a memory-mapped ``.npy`` file that must hold a ``shape`` array."""
    def read(path: Path) -> np.ndarray:
        array = np.load(path, mmap_mode="r")
        if array.shape != shape:
            raise ValueError(f"it holds a {array.shape} array, not {shape}")
        return array
    return read


def _disk_cache(pairs: Sequence[Pair], size: int, cache_dir: Path, progress: bool,
                soft_masks: bool = False) -> Path | None:
    """Return the ``.npy`` cache file for ``pairs``, building it safely if needed (None, after
    a warning, if ``cache_dir`` cannot be written: the caller decodes without a cache)."""
    shape = (len(pairs), size, size, 4)
    path = cache_dir / f"polyp-{size}px-{_cache_key(pairs, size, cache_dir, soft_masks)}.npy"
    if read_cache_file(path, _array_of_shape(shape)) is not None:
        return path

    def fill(tmp: Path) -> None:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        _fill_cache(array, pairs, size, progress, soft_masks)
        array.flush()
        del array

    return path if usable_cache_dir(cache_dir) and write_cache_file(path, fill) else None


class PolypDataset(Dataset):
    """Training/validation pairs as tensors, with optional augmentation and decode cache.

    Args:
        pairs: ``(image_path, mask_path)`` tuples (see :func:`~kdas_lite.data.pair_files`).
        size: side of the square output (352 in the paper).
        augment: apply :func:`~kdas_lite.data.build_train_transform` (a real bool; a string
            such as ``"True"`` raises ``TypeError``).
        mean, std: normalisation statistics of the encoder (``model.input_mean`` / ``input_std``).
        cache: ``"none"`` (decode every time), ``"memory"`` (decode once into RAM) or
            ``"disk"`` (decode once into a memory-mapped ``.npy`` under ``cache_dir``).
        cache_dir: folder for ``cache="disk"``; default :func:`default_cache_dir`.
        progress: show a progress bar while the cache is filled.
        soft_masks: resize masks bilinearly (also in the augmentation and the cache, which
            then stores them as 0..255) and return them in [0, 1], fractional along the edges,
            like the public KDAS script; False: nearest resize, masks in {0, 1}.

    ``dataset[i]`` returns ``(image float32 (3, size, size), mask float32 (1, size, size))``.

    Augmentations are random but reproducible: the main process seeds them from
    ``torch.initial_seed()``, and every DataLoader worker reseeds from its own worker seed,
    so workers never repeat each other's augmentations.
    """

    def __init__(self, pairs: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
                 size: int = 352, augment: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 cache: CacheMode = "none", cache_dir: str | os.PathLike[str] | None = None,
                 progress: bool = True, soft_masks: bool = False):
        if not isinstance(augment, bool):
            raise TypeError(f"augment must be a bool, got {augment!r} ({type(augment).__name__})")
        if cache not in ("none", "memory", "disk"):
            raise ValueError(f"cache must be 'none', 'memory' or 'disk', got {cache!r}")
        self.pairs: list[Pair] = [(Path(image), Path(mask)) for image, mask in pairs]
        if not self.pairs:
            raise DataError("PolypDataset got no (image, mask) pairs: the dataset is empty.")
        self.size = size
        self.augment = augment
        self.soft_masks = soft_masks
        build = build_train_transform if augment else build_eval_transform
        self.transform = build(size, mean, std, soft_masks)
        self.transform.set_random_seed(torch.initial_seed() % 2**32)
        self._worker_seed: int | None = None
        self.cache = cache
        self.cache_file: Path | None = None
        self._cache: np.ndarray | None = None
        if cache == "memory":
            self._cache = np.empty((len(self.pairs), size, size, 4), dtype=np.uint8)
            _fill_cache(self._cache, self.pairs, size, progress, soft_masks)
        elif cache == "disk":  # an unusable cache folder: decoded every time (a warning)
            directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
            self.cache_file = _disk_cache(self.pairs, size, directory, progress, soft_masks)
            self.cache = "disk" if self.cache_file is not None else "none"

    @classmethod
    def from_folder(cls, root: str | os.PathLike[str], **kwargs: Any) -> PolypDataset:
        """All pairs of ``root/images`` + ``root/masks``; ``kwargs`` go to the constructor."""
        return cls(pair_files(*image_mask_dirs(root)), **kwargs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self.cache_file is not None:
            state["_cache"] = None  # a spawned worker re-opens the memory map instead
        return state

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw sample before augmentation: ``uint8 (H, W, 3)`` and ``uint8 (H, W)``
        in {0, 1} (0..255 with ``soft_masks``), at ``size²`` when cached, else at the file's
        resolution."""
        if self.cache_file is not None and self._cache is None:
            self._cache = np.load(self.cache_file, mmap_mode="r")
        if self._cache is not None:
            rgbm = self._cache[index]
            return np.ascontiguousarray(rgbm[:, :, :3]), np.ascontiguousarray(rgbm[:, :, 3])
        image, mask = read_pair(*self.pairs[index])
        return image, _mask_values(mask, self.soft_masks)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        worker = get_worker_info()
        if worker is not None and worker.seed != self._worker_seed:
            self._worker_seed = worker.seed
            self.transform.set_random_seed(worker.seed % 2**32)
        image, mask = self.load(index)
        out = self.transform(image=image, mask=mask)
        # Cast in numpy: a torch op here would wake torch's thread pool for every sample.
        mask = out["mask"].numpy()[None].astype(np.float32)
        if self.soft_masks:
            mask /= 255
        return out["image"], torch.from_numpy(mask)


def _test_cache_files(pairs: Sequence[Pair], size: int, cache_dir: Path) -> tuple[Path, Path]:
    """The two cache files of a test set: images at ``size`` and masks at full resolution,
    each named by a hash of its own files' content hashes (and of ``size``)."""
    hashes = content_hashes([path for pair in pairs for path in pair], cache_dir)
    images = _key("test-images", size, hashes[0::2])
    masks = _key("test-masks", hashes[1::2])
    return cache_dir / f"test-{size}px-{images}.npy", cache_dir / f"test-masks-{masks}.npz"


def _masks_of(n: int) -> Callable[[Path], dict[str, np.ndarray]]:
    """A reader of a test set's bit-packed masks (``bits``, byte ``offsets``, ``shapes``) that
    must hold ``n`` masks."""
    def read(path: Path) -> dict[str, np.ndarray]:
        with np.load(path) as npz:
            packed = {k: npz[k] for k in ("bits", "offsets", "shapes")}
        if len(packed["shapes"]) != n or len(packed["offsets"]) != n + 1:
            raise ValueError(f"it holds {len(packed['shapes'])} masks, not {n}")
        return packed
    return read


def _build_test_cache(pairs: Sequence[Pair], size: int, images_file: Path | None,
                      masks_file: Path | None, progress: bool) -> bool:
    """Decode every pair once; write the resized images to ``images_file`` and the packed
    masks to ``masks_file`` (each skipped when None). False if a file could not be written
    (its folder is unusable, after a warning)."""
    write_images = images_file is not None
    resize = build_resize(size)
    images = np.empty((len(pairs), size, size, 3), np.uint8) if write_images else None
    chunks, shapes = [], []
    for i, (image_path, mask_path) in enumerate(tqdm(pairs, desc=f"caching {size}px",
                                                     leave=False, disable=not progress)):
        image, mask = read_pair(image_path, mask_path)
        if images is not None:
            images[i] = resize(image=image)["image"]
        chunks.append(np.packbits(mask.ravel()))
        shapes.append(mask.shape)
    if images_file is not None and not write_cache_file(images_file,
                                                        lambda tmp: np.save(tmp, images)):
        return False
    if masks_file is not None:
        offsets = np.cumsum([0, *(len(c) for c in chunks)])
        return write_cache_file(masks_file, lambda tmp: np.savez(
            tmp, bits=np.concatenate(chunks), offsets=offsets, shapes=np.array(shapes)))
    return True


class PolypTestDataset(Dataset):
    """One test set (a folder with ``images/`` and ``masks/``) for evaluation.

    ``dataset[i]`` returns ``{"image": float32 tensor (3, size, size), "mask": bool ndarray
    (H0, W0) at the original resolution, "name": file stem}``. Use :func:`collate_test` as the
    DataLoader's ``collate_fn`` (masks differ in size, so they stay a list).

    Args:
        root: the folder.
        size: side the images are resized to.
        mean, std: normalisation statistics of the encoder.
        cache_dir: if given, decode every pair once and keep the images resized to ``size``
            (uint8, memory-mapped) and the masks (bit-packed) in two files there, named by a
            hash of the files' content (and ``size``): a file with other bytes gets new cache
            files whatever its modification time, and samples are bit-identical to the
            uncached ones. Each cache file is checked against its checksum when opened and
            rebuilt (with a warning) when unreadable; a folder that cannot be written gives a
            warning and the set is decoded without a cache
            (:mod:`~kdas_lite.data.cache_files`). It must lie outside ``root``;
            :func:`default_cache_dir` is the usual choice.
        progress: show a progress bar while the cache is built.

    Attributes:
        name: the folder name, e.g. ``"CVC-ColonDB"``.
        pairs: the sorted ``(image, mask)`` paths.
        cache_files: the ``(images, masks)`` cache files, or None without a cache.
    """

    def __init__(self, root: str | os.PathLike[str], size: int = 352,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 cache_dir: str | os.PathLike[str] | None = None, progress: bool = False):
        self.root = Path(root)
        self.name = self.root.name
        self.pairs: list[Pair] = pair_files(*image_mask_dirs(self.root))
        self.size = size
        self.transform = build_eval_transform(size, mean, std)
        self.cache_files: tuple[Path, Path] | None = None
        self._images: np.ndarray | None = None
        self._masks: dict[str, np.ndarray] | None = None
        if cache_dir is not None:
            directory = Path(cache_dir).expanduser().resolve()
            if directory.is_relative_to(self.root.resolve()):
                raise ValueError(f"cache_dir {directory} lies inside the data folder "
                                 f"{self.root}: choose a folder outside it, e.g. "
                                 f"{default_cache_dir()}")
            images_file, masks_file = _test_cache_files(self.pairs, size, directory)
            self._masks = read_cache_file(masks_file, _masks_of(len(self.pairs)))
            self._images = read_cache_file(images_file,
                                           _array_of_shape((len(self.pairs), size, size, 3)))
            built = (self._masks is not None and self._images is not None) or (
                usable_cache_dir(directory) and _build_test_cache(
                    self.pairs, size, None if self._images is not None else images_file,
                    None if self._masks is not None else masks_file, progress))
            if built and self._masks is None:
                self._masks = read_cache_file(masks_file, _masks_of(len(self.pairs)))
            if built and self._masks is not None:
                self.cache_files = (images_file, masks_file)
            else:  # the folder cannot be written: decode every sample (warned)
                self._images = self._masks = None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_images"] = None  # a worker re-opens the memory map
        return state

    def _cached(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The resized image and the full-resolution mask of pair ``index`` from the cache."""
        assert self.cache_files is not None and self._masks is not None
        if self._images is None:
            self._images = np.load(self.cache_files[0], mmap_mode="r")
        start, end = self._masks["offsets"][index:index + 2]
        h, w = self._masks["shapes"][index]
        mask = np.unpackbits(self._masks["bits"][start:end], count=h * w).view(bool)
        return np.ascontiguousarray(self._images[index]), mask.reshape(h, w)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_path, mask_path = self.pairs[index]
        if self.cache_files is not None:
            image, mask = self._cached(index)
        else:
            image, mask = read_pair(image_path, mask_path)
        return {"image": self.transform(image=image)["image"], "mask": mask,
                "name": image_path.stem}


def collate_test(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`PolypTestDataset` samples: ``{"image": (B, 3, S, S) tensor,
    "mask": list of B bool arrays (H0, W0), "name": list of B str}``."""
    return {
        "image": torch.stack([sample["image"] for sample in batch]),
        "mask": [sample["mask"] for sample in batch],
        "name": [sample["name"] for sample in batch],
    }
