"""Transfer-set experiment: does distillation pay when the teacher brings images the labels lack?

Every earlier experiment computed the distillation term on the student's own labelled images,
which the teacher had mostly trained on. Here (docs/RESULTS.md, "Transfer set: pre-registration")
the teacher also brings a set U of images whose labels the student never sees. One fixed split
of PraNet's 1450 training images (``kdas_lite/data/splits/transfer_set.json``,
experiments/transfer_split.py): the teachers train on T (≈ 700), the transfer set U (≈ 500) is
disjoint from T, the students' labelled set L ⊂ T has 200 (or 50) images.

Two EfficientNet-Lite2 teachers (seeds 0 and 1, ``T_train``, validated on ``T_val``), then per
teacher, label budget and student seed the EfficientNet-Lite0 arms, every one the same number
of optimiser steps (``--steps``; epochs = steps / batches of L):

====  =========================================================================================
arm   objective (α = 0.3, T = 2; batch 8 from L, plus batch 8 from U where the arm uses U)
====  =========================================================================================
A     the student alone on L: ``ΣL_seg``
B     oracle: ``ΣL_seg`` on the L batch and on the U batch with U's true masks (the ceiling)
C     self-training: ``ΣL_seg`` on L, and on U against the teacher's hard pseudo-labels
      σ(P1_t + P2_t) > 0.5 (computed once, un-augmented, then augmented with the image)
D-*   Eq. 6 on the L batch, and the KD term alone (weight α) on the U batch, whose masks are
      never read: ``kdas`` (L_AT + L_SGM), ``cwd``, ``pixel``, ``at`` (L_AT alone)
E     KDAS with its KD term on L only (today's design, same steps)
====  =========================================================================================

Records: ``--records``/``teacher-t<T>.json`` and ``L<n>/t<T>/<arm>-s<seed>.json`` (committed;
the teacher's SHA-256, the library versions, the ids of the training, validation and transfer
images, each test image's Dice); a finished run is skipped when the command runs again, an
interrupted training resumes from its last epoch. The runs are interleaved so that a partial
result stays balanced: per label budget (200 first), per seed, per teacher, the primary arms
first (A, C, D-kdas, D-cwd, D-pixel, D-at, E, B). After every run ``--json``
(docs/results/transfer_set.json) and the ``transfer-set`` block of ``--docs`` are rewritten
(:mod:`kdas_lite.transfer_results`); ``--report-only`` only rewrites them.

Usage (two processes side by side, one per teacher)::

    KDAS_DATA=../shared/data .venv/bin/python experiments/transfer_set.py --threads 1 --teachers 0
    KDAS_DATA=../shared/data .venv/bin/python experiments/transfer_set.py --threads 1 --teachers 1
    # the teachers only
    KDAS_DATA=../shared/data .venv/bin/python experiments/transfer_set.py --teachers 0 \\
        --stage teachers
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from lab_experiment import save_json

from kdas_lite.config import TrainConfig, encoder_pair, get_preset
from kdas_lite.data import find_layout, find_shared_data, load_split
from kdas_lite.data.io import file_sha256
from kdas_lite.evaluate import evaluate
from kdas_lite.train import train_teacher

SPLIT = "kdas_lite/data/splits/transfer_set.json"  # relative to the repository root
DATA_LABEL = "shared/data"
ALPHA = 0.3
#: every arm's switches (TrainConfig fields) on top of the student settings
ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "A": ("A: student alone on L", {"use_at": False, "use_sgm": False}),
    "C": ("C: L + teacher's hard pseudo-labels on U", {
        "use_at": False, "use_sgm": False, "transfer_target": "pseudo"}),
    "D-kdas": ("D: KDAS (L_AT + L_SGM), KD on L ∪ U", {"transfer_target": "kd"}),
    "D-cwd": ("D: CWD, KD on L ∪ U", {"use_at": False, "use_sgm": False, "baseline": "cwd",
                                      "transfer_target": "kd"}),
    "D-pixel": ("D: pixel KD, KD on L ∪ U", {"use_at": False, "use_sgm": False,
                                             "baseline": "pixel", "transfer_target": "kd"}),
    "D-at": ("D: L_AT alone, KD on L ∪ U", {"use_sgm": False, "transfer_target": "kd"}),
    "E": ("E: KDAS, KD on L only", {}),
    "B": ("B: oracle, L ∪ U with true labels", {
        "use_at": False, "use_sgm": False, "transfer_target": "labels"}),
}
LIBRARIES = ("torch", "torchvision", "timm", "numpy", "albumentations", "opencv-python-headless",
             "pillow", "scipy")


def versions() -> dict[str, str]:
    """Python and the versions of the libraries that change a run's numbers."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def teacher_dir(args: argparse.Namespace, teacher: int) -> Path:
    return args.out / f"teacher-t{teacher}"


def teacher_checkpoint(args: argparse.Namespace, teacher: int) -> Path:
    return teacher_dir(args, teacher) / "teacher" / "best.pth"


def base_config(args: argparse.Namespace, data_root: Path) -> TrainConfig:
    """The lab's settings: the cpu-lab preset, offline pair, 128 px, batch 8, lr 5e-4."""
    return get_preset("cpu-lab").replace(
        **encoder_pair("offline", pretrained=True), data_root=str(data_root),
        image_size=args.size, batch_size=args.batch_size, lr=args.lr, max_train_images=None,
        max_val_images=None, device="cpu", alpha=ALPHA)


def teacher_config(args: argparse.Namespace, data_root: Path, teacher: int) -> TrainConfig:
    return base_config(args, data_root).replace(
        name=f"transfer-teacher-t{teacher}", output_dir=str(teacher_dir(args, teacher)),
        split_file=args.split, train_subset="T_train", val_subset="T_val",
        epochs=args.teacher_epochs, warmup_epochs=1.0, seed=teacher)


def portable(config: dict[str, Any], out: Path) -> dict[str, Any]:
    """A config dict without machine paths (the data root as :data:`DATA_LABEL`)."""
    output = Path(config["output_dir"]) if config.get("output_dir") else None
    if output is not None:
        try:
            output = output.resolve().relative_to(out.resolve())
        except ValueError:
            output = Path(output.name)
    return {**config, "data_root": DATA_LABEL,
            "output_dir": None if output is None else output.as_posix()}


def image_ids(config: TrainConfig) -> dict[str, list[str]]:
    """The ids of the run's training, validation and transfer images (from the split)."""
    lists = load_split(config.split_file)
    out = {"train": lists[config.train_subset], "val": lists[config.val_subset]}
    if config.transfer_subset is not None:
        out["transfer"] = lists[config.transfer_subset]
    return out


def record_of(args: argparse.Namespace, config: TrainConfig, result: Any, table: Any,
              train_s: float, eval_s: float, **extra: Any) -> dict[str, Any]:
    """The committed record of one run (each test image's Dice in sorted-stem order)."""
    return {
        **extra, "train_s": train_s, "eval_s": eval_s, "best_epoch": result.best_epoch,
        "best_val_dice": result.best_val_dice,
        "table": table.to_dict(), "average": table.average(),
        "config": portable(config.to_dict(), args.out), "versions": versions(),
        "machine": f"CPU ({platform.machine()}), {torch.get_num_threads()} torch thread(s)",
        "image_ids": image_ids(config), "history": result.history,
        "image_dice": {name: [round(d[stem], 5) for stem in sorted(d)]
                       for name, d in table.image_dice.items()},
    }


def check_recorded(path: Path, config: TrainConfig, out: Path) -> bool:
    """True when ``path`` exists; stops the script when it was made with other settings."""
    if not path.exists():
        return False
    recorded = json.loads(path.read_text(encoding="utf-8"))["config"]
    expected = portable(config.to_dict(), out)
    recorded = {**expected, **recorded, "output_dir": expected["output_dir"]}
    if TrainConfig.from_dict({**recorded, "data_root": None, "output_dir": None}) != \
            TrainConfig.from_dict({**expected, "data_root": None, "output_dir": None}):
        sys.exit(f"transfer_set.py: error: {path} was made with other settings than this "
                 "command's; use another --records and --out folder to run with new settings")
    return True


def run_teacher(args: argparse.Namespace, data_root: Path, teacher: int) -> None:
    """Train (or resume) teacher ``teacher`` on T_train and write its record."""
    config = teacher_config(args, data_root, teacher)
    path = args.records / f"teacher-t{teacher}.json"
    if check_recorded(path, config, args.out):
        return
    resumed = (config.run_dir / "teacher" / "last.pth").exists()
    print(f"teacher t{teacher}: {config.epochs} epochs on T_train"
          f"{' (resumed)' if resumed else ''}", flush=True)
    start = time.perf_counter()
    result = train_teacher(config, resume=resumed, progress=False)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    table = evaluate(result.model, data_root, size=config.image_size, device="cpu",
                     progress=False, name=f"transfer teacher t{teacher}")
    record = record_of(args, config, result, table, train_s, time.perf_counter() - start,
                       arm="teacher", teacher=teacher, resumed=resumed,
                       teacher_sha256=file_sha256(teacher_checkpoint(args, teacher)))
    save_json(path, record)
    kvasir = record["table"]["datasets"]["Kvasir"]["meanDic"]
    print(f"    teacher t{teacher}: Kvasir mDice {kvasir:.3f} "
          f"(train {train_s / 60:.1f} min)", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/transfer-set"))
    parser.add_argument("--records", type=Path, default=Path("docs/results/transfer_runs"))
    parser.add_argument("--json", type=Path, default=Path("docs/results/transfer_set.json"))
    parser.add_argument("--docs", type=Path, default=Path("docs/RESULTS.md"))
    parser.add_argument("--split", default=SPLIT)
    parser.add_argument("--teachers", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--stage", choices=["teachers", "all"], default="all",
                        help="teachers: train the teachers only")
    parser.add_argument("--teacher-epochs", type=int, default=40)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    args.command = shlex.join(["python", "experiments/transfer_set.py", *(
        f"<outside the repository>/{Path(a).name}" if a.startswith("/") else a
        for a in (sys.argv[1:] if argv is None else argv) if a != "--report-only")])
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data_root = find_shared_data()
    if data_root is None or not find_layout(data_root).test:
        sys.exit("transfer_set.py: error: no real PraNet data: set KDAS_DATA to its root")
    args.out.mkdir(parents=True, exist_ok=True)
    for teacher in [] if args.report_only else args.teachers:
        run_teacher(args, data_root, teacher)


if __name__ == "__main__":
    main()
