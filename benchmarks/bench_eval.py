"""Where the time of an evaluation goes, before and after issue 21, on the real test sets.

Usage::

    .venv/bin/python benchmarks/bench_eval.py                       # prints the tables
    .venv/bin/python benchmarks/bench_eval.py --write docs/bench/eval.md

One model (the PVTv2-b0 student, random weights, seed 0; the scores do not matter here, the
maps' sizes do) at ``--size`` px over every test set found under ``--data``, split into

- **open**: building each test set's ``PolypTestDataset``: before, listing and pairing its
  files; after, the same plus the cache's content key (the files' remembered SHA-256, issue
  26) and the check of both cache files against their checksums. Hashing every file the first
  time (the cold part of the key) is timed apart, in a fresh hash list;
- **decode**: reading a test set's samples (image resized + normalised, mask at full size):
  before, every file decoded (``PolypTestDataset`` without cache); after, from the test-set
  cache (built once beforehand, its build time reported as "cold");
- **forward**: the model on the batches (the same code before and after);
- **maps**: logits → full-size probability maps (``soft_maps``, the same code);
- **metrics**: the eleven measures of every map: before, the frozen per-image code of main
  before the change (``benchmarks/eval_baseline.py``) in one thread; after,
  ``MetricAccumulator`` with 1 thread and with every core.

Before and after run alternately in the same process, ``--repeat`` times each, and the fastest
of each is kept (the machine may be shared): compare them as ratios. Wall and CPU seconds are
both given; the load average is printed. The scores of before and after are compared too.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_baseline

from kdas_lite.data import TEST_SETS, PolypTestDataset, find_shared_data
from kdas_lite.data.cache_files import content_hashes
from kdas_lite.evaluate import soft_maps
from kdas_lite.metrics import METRIC_NAMES, MetricAccumulator, default_workers
from kdas_lite.metrics._common import _check_pair
from kdas_lite.models import build_student


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall s, CPU s of the whole process, result)."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _decode(datasets: dict[str, PolypTestDataset]) -> list[tuple[str, dict]]:
    return [(name, ds[i]) for name, ds in datasets.items() for i in range(len(ds))]


def _forward(model: torch.nn.Module, samples: list[tuple[str, dict]], batch: int) -> list:
    logits = []
    with torch.inference_mode():
        for start in range(0, len(samples), batch):
            images = torch.stack([s["image"] for _, s in samples[start:start + batch]])
            p1, p2 = model(images)
            logits.append(p1 + p2)
    return logits


def _maps(logits: list, samples: list[tuple[str, dict]], batch: int) -> list[np.ndarray]:
    maps = []
    for k, chunk in enumerate(logits):
        sizes = [s["mask"].shape for _, s in samples[k * batch:(k + 1) * batch]]
        maps += soft_maps(chunk, sizes)
    return maps


def _metrics_before(maps: list, samples: list) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for pred, (name, sample) in zip(maps, samples, strict=True):
        out.setdefault(name, []).append(eval_baseline.score(*_check_pair(pred, sample["mask"])))
    return out


def _metrics_after(maps: list, samples: list, workers: int) -> dict[str, dict]:
    accs: dict[str, MetricAccumulator] = {}
    for pred, (name, sample) in zip(maps, samples, strict=True):
        accs.setdefault(name, MetricAccumulator(workers)).submit(pred, sample["mask"])
    return {name: acc.result() for name, acc in accs.items()}


def _dataset_means(images: list[dict]) -> dict[str, float]:
    """The dataset result of per-image scores, as MetricAccumulator.result computes it."""
    acc = MetricAccumulator()
    acc._images = images  # the same averaging code on the baseline's per-image scores
    return acc.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="data root with TestDataset/ (default: ../shared/data or "
                             "$KDAS_DATA)")
    parser.add_argument("--size", type=int, default=64, help="model input side (default 64)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each phase (fastest kept)")
    parser.add_argument("--write", type=Path, default=None, help="write the Markdown page here")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # the forward pass on one thread: the cores are for the metrics
    root = args.data or find_shared_data()
    if root is None:
        parser.error("no data: pass --data or set KDAS_DATA")
    folders = {n: root / "TestDataset" / n for n in TEST_SETS
               if (root / "TestDataset" / n).is_dir()}
    workers = default_workers()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-eval-cache-") as cache:
        plain = {n: PolypTestDataset(f, size=args.size) for n, f in folders.items()}
        cold = _timed(lambda: {n: PolypTestDataset(f, size=args.size, cache_dir=cache)
                               for n, f in folders.items()})
        cached = cold[2]
        files = [path for ds in plain.values() for pair in ds.pairs for path in pair]
        hashing = _timed(lambda: content_hashes(files, Path(cache) / "fresh-hash-list"))
        model = build_student().eval()
        samples = _decode(cached)
        n_maps = len(samples)
        logits = _forward(model, samples, args.batch)
        maps = _maps(logits, samples, args.batch)
        best: dict[str, tuple[float, float]] = {}
        results: dict[str, Any] = {}

        def keep(key: str, fn: Callable[[], Any]) -> None:
            wall, cpu, out = _timed(fn)
            old = best.get(key, (float("inf"), float("inf")))
            best[key] = (min(old[0], wall), min(old[1], cpu))
            results[key] = out

        for _ in range(args.repeat):  # before and after alternate, so both see the same load
            keep("open before", lambda: {n: PolypTestDataset(f, size=args.size)
                                         for n, f in folders.items()})
            keep("open after", lambda: {n: PolypTestDataset(f, size=args.size, cache_dir=cache)
                                        for n, f in folders.items()})
            keep("decode before", lambda: _decode(plain))
            keep("decode after", lambda: _decode(cached))
            keep("forward", lambda: _forward(model, samples, args.batch))
            keep("maps", lambda: _maps(logits, samples, args.batch))
            keep("metrics before", lambda: _metrics_before(maps, samples))
            keep("metrics after, 1 thread", lambda: _metrics_after(maps, samples, 1))
            keep(f"metrics after, {workers} threads",
                 lambda: _metrics_after(maps, samples, workers))
    load_end = os.getloadavg()

    before = {n: _dataset_means(v) for n, v in results["metrics before"].items()}
    after = results[f"metrics after, {workers} threads"]
    diff = max(abs(before[n][m] - after[n][m]) for n in before for m in METRIC_NAMES)
    same_decode = all(
        torch.equal(a[1]["image"], b[1]["image"]) and np.array_equal(a[1]["mask"], b[1]["mask"])
        for a, b in zip(results["decode before"], results["decode after"], strict=True))

    def row(label: str, key_before: str | None, key_after: str) -> str:
        wall_b, cpu_b = best[key_before] if key_before else best[key_after]
        wall_a, cpu_a = best[key_after]
        return (f"| {label} | {wall_b:.2f} | {wall_a:.2f} | {wall_a / wall_b:.2f} | "
                f"{cpu_b:.2f} | {cpu_a:.2f} | {cpu_a / cpu_b:.2f} |")

    multi = f"metrics after, {workers} threads"

    def total(metrics_after: str, label: str) -> str:
        wall_b, cpu_b = (sum(best[k][i] for k in ("open before", "decode before",
                                                   "metrics before")) for i in (0, 1))
        wall_a, cpu_a = (sum(best[k][i] for k in ("open after", "decode after", metrics_after))
                         for i in (0, 1))
        return (f"| **open + decode + metrics, {label}** | {wall_b:.2f} | {wall_a:.2f} | "
                f"{wall_a / wall_b:.2f} | {cpu_b:.2f} | {cpu_a:.2f} | {cpu_a / cpu_b:.2f} |")

    key_cost = tuple(best["open after"][i] - best["open before"][i] for i in (0, 1))
    default_total = tuple(sum(best[k][i] for k in ("open after", "decode after", multi))
                          for i in (0, 1))
    lines = [
        f"{n_maps} maps from {len(folders)} test sets ({', '.join(folders)}), model input "
        f"{args.size} px, batch {args.batch}; {platform.machine()}, {os.cpu_count()} cores "
        f"({workers} usable), numpy {np.__version__}, torch {torch.__version__}; load average "
        f"{load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end; fastest of "
        f"{args.repeat} alternating runs.",
        "",
        "| phase | before wall (s) | after wall (s) | after / before | before CPU (s) | "
        "after CPU (s) | after / before |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        row("open (after: + content key and checksums, warm)", "open before", "open after"),
        row("decode (cache warm)", "decode before", "decode after"),
        row("forward (same code)", None, "forward"),
        row("maps (same code)", None, "maps"),
        row("metrics, 1 thread", "metrics before", "metrics after, 1 thread"),
        row(f"metrics, {workers} threads", "metrics before", multi),
        total("metrics after, 1 thread", "1 thread"),
        total(multi, f"{workers} threads (evaluate's default)"),
        "",
        f"Cold cache (hash and decode every file once and write the cache): {cold[0]:.2f} s "
        f"wall, {cold[1]:.2f} s CPU, once per test set, size and file version; of it, hashing "
        f"the {len(files)} files ({sum(p.stat().st_size for p in files) / 1e6:.0f} MB) for the "
        f"content key: {hashing[0]:.2f} s wall, {hashing[1]:.2f} s CPU, once per file version.",
        f"Cost of the content key and the checksums (issue 26), per evaluation of these sets "
        f"with a warm cache: {key_cost[0]:.2f} s wall, {key_cost[1]:.2f} s CPU (open after − "
        "before). Open + decode + metrics at evaluate's default: "
        f"{default_total[0]:.2f} s wall, {default_total[1]:.2f} s CPU, "
        f"{'within' if default_total[0] <= 5 else 'above'} the 5 s target at this load.",
        f"Largest difference between the dataset scores before and after: {diff:.1e} "
        f"(all eleven measures, every set); decoded samples bit-identical: {same_decode}.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        page = args.write.read_text() if args.write.is_file() else ""
        start, end = "<!-- bench_eval:start -->", "<!-- bench_eval:end -->"
        if start in page and end in page:
            page = page[:page.index(start) + len(start)] + "\n" + text + "\n" + \
                page[page.index(end):]
        else:
            page += f"\n{start}\n{text}\n{end}\n"
        args.write.write_text(page)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
