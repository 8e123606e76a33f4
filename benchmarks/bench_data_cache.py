"""How much does the decode cache of ``PolypDataset`` speed up a CPU epoch?

Iterates a DataLoader (``num_workers=0``) over SYNTHETIC 512-px JPEG pairs resized to 352 px,
with ``cache="none"`` (decode every JPEG every epoch), ``"memory"`` and ``"disk"``, with and
without augmentation, and prints images/s plus the one-off cost of building the cache, as a
Markdown table (the one in docs/bench/data_cache.md).

    .venv/bin/python benchmarks/bench_data_cache.py            # ~200 pairs, 3 epochs each
    .venv/bin/python benchmarks/bench_data_cache.py --n 50 --epochs 2   # quick look
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from kdas_lite.data import PolypDataset, image_mask_dirs, make_synthetic_dataset, pair_files


def epoch_rate(dataset: PolypDataset, batch_size: int) -> float:
    """Images per second of one pass of a DataLoader over ``dataset``."""
    start = time.perf_counter()
    count = sum(images.shape[0] for images, _ in DataLoader(dataset, batch_size=batch_size))
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of image/mask pairs")
    parser.add_argument("--image-size", type=int, default=512, help="side of the JPEGs")
    parser.add_argument("--size", type=int, default=352, help="training size")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per setting")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (collation runs in this process)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where to write the synthetic data and disk cache (default: temp)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        start = time.perf_counter()
        root = make_synthetic_dataset(work / "synthetic", n_train=args.n, n_test=0,
                                      size=args.image_size)
        print(f"generated {args.n} SYNTHETIC {args.image_size}-px pairs in "
              f"{time.perf_counter() - start:.1f} s")
        pairs = pair_files(*image_mask_dirs(root / "TrainDataset"))
        print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPU(s), "
              f"{platform.python_implementation()} {platform.python_version()}, "
              f"torch {torch.__version__}, torch threads {torch.get_num_threads()}")
        print(f"{args.n} pairs, JPEG {args.image_size} px -> {args.size} px, batch "
              f"{args.batch_size}, num_workers 0, median of {args.epochs} epochs\n")
        print("| cache | augment | cache build (s) | images/s | speed-up |")
        print("| --- | --- | ---: | ---: | ---: |")
        for augment in (False, True):
            baseline = None
            for cache in ("none", "memory", "disk"):
                cache_dir = work / f"cache-{augment}"
                start = time.perf_counter()
                dataset = PolypDataset(pairs, size=args.size, augment=augment, cache=cache,
                                       cache_dir=cache_dir)
                build = time.perf_counter() - start
                rate = statistics.median(epoch_rate(dataset, args.batch_size)
                                         for _ in range(args.epochs))
                baseline = baseline or rate
                print(f"| {cache} | {augment} | {build:.1f} | {rate:.0f} | "
                      f"{rate / baseline:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
