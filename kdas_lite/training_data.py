"""What a training run trains and validates on: the data, its loaders, each epoch's seed.

:func:`find_training_data` finds the dataset (or generates the SYNTHETIC stand-in),
:func:`build_dataloaders` splits the training folder into training and validation images and
builds their loaders, and :func:`epoch_seed` / :func:`seed_augmentation` make every epoch's
shuffling and augmentation a function of ``(config.seed, epoch)``, so that a resumed run sees
the same epochs as an uninterrupted one. Under torchrun (:mod:`kdas_lite.distributed`) each
process loads its own share of every global batch and of the validation images.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm.auto import tqdm

from kdas_lite.config import TrainConfig
from kdas_lite.distributed import SINGLE, Distributed
from kdas_lite.errors import DataError, TrainingError

__all__ = ["build_dataloaders", "data_summary", "epoch_seed", "find_training_data",
           "seed_augmentation"]

def epoch_seed(seed: int, epoch: int, rank: int | None = None) -> int:
    """A 32-bit seed for epoch ``epoch`` of a run seeded with ``seed``; with ``rank``, one for
    that process of a multi-process run (each augments its own images differently)."""
    key = [seed, epoch] if rank is None else [seed, epoch, rank]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def seed_augmentation(dataset: Any, seed: int) -> None:
    """Reseed the dataset's albumentations pipeline, which keeps its own generators.

    This matters with ``num_workers=0``; DataLoader workers reseed it themselves from their
    worker seed, which the loader draws from its (per-epoch seeded) generator.
    """
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def find_training_data(config: TrainConfig) -> Any:
    """The :class:`~kdas_lite.data.DataLayout` a run trains on.

    ``config.data_root`` if given (an error if it holds no dataset); else ``$KDAS_DATA`` or
    the shared data folder (:func:`kdas_lite.data.resolve_data_root`); else, with
    ``config.synthetic``, a synthetic set generated under ``<run_dir>/synthetic-data``
    (``layout.synthetic`` is then True).

    Raises:
        DataError: no dataset found and synthetic data not allowed.
    """
    from kdas_lite.data import find_layout, make_synthetic_dataset, resolve_data_root

    try:
        return find_layout(resolve_data_root(config.data_root))
    except DataError:
        if config.data_root is not None or not config.synthetic:
            raise
    root = config.run_dir / "synthetic-data"
    # Returns at once when the folder already holds this synthetic set (e.g. for the student).
    make_synthetic_dataset(root, n_train=config.synthetic_images,
                           n_test=config.synthetic_test_images, size=config.synthetic_size,
                           seed=config.seed)
    return find_layout(root)


def data_summary(layout: Any, train: Sequence[tuple[Path, Path]],
                 all_train: Sequence[tuple[Path, Path]], val: Sequence[tuple[Path, Path]],
                 all_val: Sequence[tuple[Path, Path]], excluded: int = 0) -> str:
    """The run header's data line: real or SYNTHETIC, and how many of how many images.

    Example: ``data: /data (real data); train 200 of 1305 images (CVC-ClinicDB 76,
    Kvasir-SEG 124), val 40 of 145``; ``excluded`` counts the test images left out of the
    training folder (``layout.exclude``).
    """
    from kdas_lite.data import training_source

    sources = Counter(training_source(image) for image, _ in train)
    mix = f" ({', '.join(f'{k} {v}' for k, v in sorted(sources.items()))})" \
        if layout.kind == "pranet" and not layout.synthetic and len(sources) > 1 else ""
    kind = "SYNTHETIC stand-in" if layout.synthetic else "real data"
    what = "PraNet test images" if layout.kind == "kvasir-seg" else "test images"
    left_out = f"; {excluded} {what} left out" if excluded else ""
    return (f"data: {layout.root} ({kind}); train {len(train)} of {len(all_train)} images{mix}, "
            f"val {len(val)} of {len(all_val)}{left_out}")


def _split(config: TrainConfig, layout: Any) -> tuple[list[Any], ...]:
    """The training pairs, validation pairs, both full splits, the pairs found and those kept
    (``layout.exclude`` dropped): the one place the training images of a run are chosen."""
    from kdas_lite.data import pair_files, split_pairs, subsample, train_val_split
    from kdas_lite.data.registry import image_mask_dirs

    found = pair_files(*image_mask_dirs(layout.train))
    pairs = [pair for pair in found if pair[0].stem not in layout.exclude]
    if config.split_file is not None:  # named lists; the transfer set must not overlap them
        names = [config.train_subset, config.val_subset, *(
            [config.transfer_subset] if config.transfer_subset is not None else [])]
        all_train, all_val = split_pairs(pairs, config.split_file, names, layout.exclude)[:2]
    else:
        all_train, all_val = train_val_split(pairs, val_fraction=config.val_fraction,
                                             seed=config.seed)
    train_pairs = subsample(all_train, config.max_train_images, seed=config.seed)
    val_pairs = subsample(all_val, config.max_val_images, seed=config.seed)
    return train_pairs, val_pairs, all_train, all_val, found, pairs


def training_split(config: TrainConfig) -> dict[str, list[str]]:
    """The file stems of the training and validation images a run of ``config`` uses, chosen
    by the same code as :func:`build_dataloaders` (so a record's image ids can be recomputed
    from its config and the data, and checked): ``{"train": [...], "val": [...]}``, sorted."""
    train_pairs, val_pairs, *_ = _split(config, find_training_data(config))
    return {"train": sorted(image.stem for image, _ in train_pairs),
            "val": sorted(image.stem for image, _ in val_pairs)}


def build_dataloaders(config: TrainConfig, mean: Sequence[float], std: Sequence[float],
                      device: torch.device | None = None, *, progress: bool = True,
                      parallel: Distributed = SINGLE) -> tuple[DataLoader, DataLoader, Any]:
    """Training and validation loaders over the training folder of ``config.data_root``.

    The training folder is split by :func:`kdas_lite.data.train_val_split` (``val_fraction``,
    seeded by ``config.seed``), or into the named lists ``train_subset`` / ``val_subset`` of
    ``config.split_file`` (:func:`kdas_lite.data.split_pairs`: disjoint from each other and
    from ``transfer_subset``); the test sets are not touched, and the files of
    ``layout.exclude`` (test images inside the training folder: the PraNet Kvasir test images
    of a raw Kvasir-SEG folder, or those :func:`kdas_lite.data.leaked_test_images` finds) are
    dropped before the split. ``max_train_images`` / ``max_val_images`` then keep a seeded
    random subset of each split with the sources' proportions
    (:func:`kdas_lite.data.subsample`). Training images are augmented (if ``config.augment``)
    and shuffled with a generator that :func:`kdas_lite.train.fit` reseeds every epoch;
    validation images are only resized and normalised. ``progress`` prints the data line of
    the run header (what is used, of how much) and shows a bar while the decode cache
    (``config.cache``) is filled.

    With several processes (``parallel``), ``config.batch_size`` is the global batch: each
    process loads ``batch_size / world_size`` images of it through a
    :class:`~torch.utils.data.DistributedSampler` (seeded by ``config.seed``;
    :func:`kdas_lite.train.fit` sets its epoch), and its own share of the validation images
    (:meth:`~kdas_lite.distributed.Distributed.shard`). Process 0 finds (or generates) the
    data first.

    Returns:
        ``(train_loader, val_loader, layout)``; ``layout.synthetic`` tells whether the data is
        the synthetic stand-in.
    """
    from kdas_lite.data import PolypDataset

    if config.batch_size % parallel.world_size:
        raise TrainingError(f"batch_size {config.batch_size} is the global batch and must split "
                            f"evenly over the {parallel.world_size} processes: use a multiple "
                            f"of {parallel.world_size} (--batch-size)")
    with parallel.main_first():  # e.g. the synthetic set is generated once
        layout = find_training_data(config)
    train_pairs, val_pairs, all_train, all_val, found, pairs = _split(config, layout)
    if not val_pairs:
        raise DataError(f"the validation split of {layout.train} is empty ({len(pairs)} image(s), "
                        f"val_fraction={config.val_fraction}): training needs at least 2 images")
    if progress:
        tqdm.write(data_summary(layout, train_pairs, all_train, val_pairs, all_val,
                                excluded=len(found) - len(pairs)))
    common = {"size": config.image_size, "mean": tuple(mean), "std": tuple(std),
              "cache": config.cache, "progress": progress}
    train_set = PolypDataset(train_pairs, augment=config.augment, soft_masks=config.soft_masks,
                             **common)
    val_set = PolypDataset(val_pairs, augment=False, **common)
    pin = device is not None and device.type == "cuda"
    sampler = DistributedSampler(train_set, parallel.world_size, parallel.rank, shuffle=True,
                                 seed=config.seed) if parallel.active else None
    train_loader = DataLoader(
        train_set, batch_size=config.batch_size // parallel.world_size, shuffle=sampler is None,
        sampler=sampler, num_workers=config.num_workers, pin_memory=pin,
        generator=torch.Generator().manual_seed(config.seed),
    )
    val_share = Subset(val_set, parallel.shard(range(len(val_set)))) if parallel.active \
        else val_set  # a process may have none of a tiny split: validation_dice sums counts
    val_loader = DataLoader(val_share, batch_size=config.batch_size, shuffle=False,
                            num_workers=config.num_workers, pin_memory=pin)
    return train_loader, val_loader, layout


