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
import math
import platform
import shlex
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from lab_experiment import atomic_write, save_json

from kdas_lite.config import TrainConfig, encoder_pair, get_preset
from kdas_lite.data import find_layout, find_shared_data, load_split
from kdas_lite.data.io import file_sha256
from kdas_lite.evaluate import evaluate
from kdas_lite.train import distill, train_teacher
from kdas_lite.transfer_results import (
    POOLS,
    analyse,
    figure_ready,
    markdown,
    progress,
    reading,
)
from kdas_lite.viz import transfer_figure

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
TEACHERS = [0, 1]  # the design's teachers (each process may run some of them)
EXTRA_ARMS = ("A", "C", "D-kdas")  # the arms that get --extra-seeds
WARMUP_STEPS = 25  # the lab's one warm-up epoch of 200 images at batch 8
START = "<!-- transfer-set: begin (written by experiments/transfer_set.py) -->"
END = "<!-- transfer-set: end -->"
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
        "_order": {name: sorted(d) for name, d in table.image_dice.items()},
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
    save_order(args, record)
    save_json(path, record)
    kvasir = record["table"]["datasets"]["Kvasir"]["meanDic"]
    print(f"    teacher t{teacher}: Kvasir mDice {kvasir:.3f} "
          f"(train {train_s / 60:.1f} min)", flush=True)


def student_seed(teacher: int, k: int) -> int:
    """Student seeds are nested in teachers: teacher t's k-th seed is 10·t + k."""
    return 10 * teacher + k


def student_config(args: argparse.Namespace, data_root: Path, arm: str, labels: int,
                   teacher: int, k: int) -> TrainConfig:
    """Arm ``arm`` at |L| = ``labels``: ``--steps`` optimiser steps (epochs = steps / batches
    of L, rounded), warm-up over :data:`WARMUP_STEPS`, validation on ``S_val``."""
    batches = math.ceil(labels / args.batch_size)
    overrides = dict(ARMS[arm][1])
    if "transfer_target" in overrides:
        overrides["transfer_subset"] = "U"
    name = f"L{labels}/t{teacher}/{arm}-s{student_seed(teacher, k)}"
    return base_config(args, data_root).replace(
        name=f"transfer-{name.replace('/', '-')}", output_dir=str(args.out / name),
        split_file=args.split, train_subset=f"L{labels}", val_subset="S_val",
        epochs=(epochs := max(1, round(args.steps / batches))),
        warmup_epochs=min(WARMUP_STEPS / batches, epochs / 4),
        seed=student_seed(teacher, k), **overrides)


def record_path(args: argparse.Namespace, arm: str, labels: int, teacher: int, k: int) -> Path:
    return args.records / f"L{labels}" / f"t{teacher}" / f"{arm}-s{student_seed(teacher, k)}.json"


def plan_runs(args: argparse.Namespace) -> list[tuple[str, int, int, int]]:
    """``(arm, labels, teacher, k)`` in the order of importance: |L| = 200 with every arm on
    ``--seeds``, seed by seed, teacher by teacher (primary arms first); then the
    ``--extra-seeds`` of A, C and D-kdas; then |L| = 50 the same way."""
    plan = []
    for labels in args.labels:
        plan += [(arm, labels, t, k) for k in args.seeds for t in args.teachers
                 for arm in args.arms]
        plan += [(arm, labels, t, k) for k in args.extra_seeds for t in args.teachers
                 for arm in EXTRA_ARMS if arm in args.arms]
    return plan


def uses_teacher(arm: str) -> bool:
    return arm not in ("A", "B")


def run_student(args: argparse.Namespace, data_root: Path, arm: str, labels: int,
                teacher: int, k: int) -> dict[str, Any] | None:
    """Train and evaluate one arm (skipped when recorded); return its record."""
    config = student_config(args, data_root, arm, labels, teacher, k)
    path = record_path(args, arm, labels, teacher, k)
    if check_recorded(path, config, args.out):
        return None
    checkpoint = teacher_checkpoint(args, teacher)
    if uses_teacher(arm) and not checkpoint.exists():
        sys.exit(f"transfer_set.py: error: no teacher t{teacher} under {args.out}: train it "
                 "first (--stage teachers)")
    resumed = (config.run_dir / "student" / "last.pth").exists()
    print(f"L{labels} t{teacher} s{config.seed}: {ARMS[arm][0]} ({config.epochs} epochs)"
          f"{' (resumed)' if resumed else ''}", flush=True)
    start = time.perf_counter()
    result = distill(config, checkpoint if uses_teacher(arm) else None, resume=resumed,
                     progress=False)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    table = evaluate(result.model, data_root, size=config.image_size, device="cpu",
                     progress=False, name=f"{ARMS[arm][0]}, L{labels}, t{teacher}")
    batches = math.ceil(labels / config.batch_size)
    record = record_of(
        args, config, result, table, train_s, time.perf_counter() - start, arm=arm,
        label=ARMS[arm][0], labels=labels, teacher=teacher, seed=config.seed, resumed=resumed,
        steps=config.epochs * batches * len(config.train_sizes),
        teacher_sha256=file_sha256(checkpoint) if uses_teacher(arm) else None)
    save_order(args, record)
    save_json(path, record)
    print(f"    Kvasir mDice {record['table']['datasets']['Kvasir']['meanDic']:.3f} (train "
          f"{train_s / 60:.1f} min)", flush=True)
    return record


def run_seconds(record: dict[str, Any]) -> float:
    """The compute of one run: its median epoch's time × its epochs, plus the evaluation. Not
    ``train_s``, the wall time, which counts the minutes a process was paused (SIGSTOP while
    the pages render) as if the run had trained through them."""
    epochs = [e["time_s"] for e in record["history"]]
    return statistics.median(epochs) * len(epochs) + record["eval_s"]


def expected_seconds(args: argparse.Namespace, times: dict[str, list[float]], arm: str) -> float:
    """One run of ``arm``: the mean of this process's runs of it, else of its committed records
    (so the budget also guards an arm's first run in a process); 0 when neither exists."""
    measured = times.get(arm) or [run_seconds(r) for r in load_records(args) if r["arm"] == arm]
    return statistics.fmean(measured) if measured else 0.0


def load_records(args: argparse.Namespace) -> list[dict[str, Any]]:
    paths = sorted(args.records.glob("teacher-t*.json")) + sorted(
        args.records.glob("L*/t*/*.json"))
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


def check_pairing(records: list[dict[str, Any]]) -> None:
    """Stop when records of one teacher name different checksums, or the records were made
    with different library versions (they would not pair)."""
    sha = {r["teacher"]: r["teacher_sha256"] for r in records if r["arm"] == "teacher"}
    for r in records:
        if r.get("teacher_sha256") and r["teacher_sha256"] != sha.get(r["teacher"]):
            sys.exit(f"transfer_set.py: error: a record of arm {r['arm']} (seed {r['seed']}) "
                     f"was distilled from another teacher t{r['teacher']} than the recorded "
                     "one: one teacher per index")
    if len({json.dumps(r["versions"], sort_keys=True) for r in records}) > 1:
        sys.exit("transfer_set.py: error: the records were made with different library "
                 "versions and do not pair: re-run them in one environment")


def write_outputs(args: argparse.Namespace) -> None:
    """The JSON, the RESULTS block and the figure from every record; what is missing is
    counted over the whole design (both teachers), whichever this process runs."""
    records = load_records(args)
    check_pairing(records)
    order = json.loads((args.records / "test_images.json").read_text(encoding="utf-8")) \
        if (args.records / "test_images.json").exists() else {}
    analysis = analyse(records, order) if records else {
        "families": {}, "context": [], "arms": {}, "teachers": {}}
    plan = plan_runs(argparse.Namespace(**{**vars(args), "teachers": TEACHERS}))  # both
    missing = [f"L{n}/t{t}/{arm}-s{student_seed(t, k)}" for arm, n, t, k in plan
               if not record_path(args, arm, n, t, k).exists()]
    split = json.loads(Path(args.split).read_text(encoding="utf-8"))
    minutes: dict[str, list[float]] = {}
    for r in records:
        if r["arm"] != "teacher" and not r["resumed"]:
            minutes.setdefault(r["arm"], []).append(run_seconds(r) / 60)
    run_minutes = {a: statistics.fmean(minutes[a]) for a in ARMS if a in minutes}
    missing_arms = [arm for arm, n, t, k in plan if not record_path(args, arm, n, t, k).exists()]
    doc = {"question": "does distillation pay when the teacher brings images the labels lack?",
           "command": args.command, "partial": bool(missing), "missing": missing,
           "steps": args.steps, "data_root": DATA_LABEL, "split_file": args.split,
           "split_counts": split["counts"], "split_lists": split["lists"],
           "records": args.records.as_posix() if not args.records.is_absolute()
           else f"<outside the repository>/{args.records.name}",
           "arm_labels": {a: v[0] for a, v in ARMS.items()},
           "pools": {p: list(v) for p, v in POOLS.items()},
           "versions": records[0]["versions"] if records else versions(),
           "compute_minutes": round(sum(run_seconds(r) for r in records) / 60, 1),
           "run_minutes": run_minutes, "minutes_left": {
               "minutes": sum(run_minutes[a] for a in missing_arms if a in run_minutes),
               "runs": sum(a in run_minutes for a in missing_arms),
               "unmeasured": sum(a not in run_minutes for a in missing_arms)},
           **analysis}
    save_json(args.json, doc)
    if args.docs is not None:  # atomically: the two processes rewrite it in turn
        text = args.docs.read_text(encoding="utf-8")
        if START not in text or END not in text:
            print(f"warning: {args.docs} has no transfer-set block; tables not copied there",
                  file=sys.stderr)
        else:
            head, rest = text.split(START, 1)
            atomic_write(args.docs, lambda tmp: tmp.write_text(
                head + START + "\n" + block_text(doc) + rest[rest.index(END):],
                encoding="utf-8"))
    if args.figure is not None and figure_ready(analysis):
        fig = transfer_figure(doc)
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(args.figure, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))


def block_text(doc: dict[str, Any]) -> str:
    """The generated block: what ran, the teachers, the tables and the reading."""
    lines = [f"command: `{doc['command']} --teachers T`, one process per teacher "
             f"(T = {', '.join(map(str, TEACHERS))}; records: `{doc['records']}`; "
             f"{doc['compute_minutes']} min of compute so far)", ""]
    if doc["partial"]:
        lines += [progress(doc) + " Run the same command again to continue.", ""]
    if doc["run_minutes"]:
        per_arm = ", ".join(f"{a} {m:.0f}" for a, m in doc["run_minutes"].items())
        left = doc["minutes_left"]
        lines += [f"Measured minutes per run (one thread, mean so far; a run is its median "
                  f"epoch × its epochs + evaluation, so a paused process does not count): "
                  f"{per_arm}. Left: ≈ {left['minutes']:.0f} min of one-thread compute for "
                  f"the measured arms' {left['runs']} missing runs"
                  + (f", plus {left['unmeasured']} runs of arms not measured yet"
                     if left["unmeasured"] else "") + ".", ""]
    lines += ["Generated reading (`kdas_lite.transfer_results.reading`):", "",
              reading(doc), markdown(doc)]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/transfer-set"))
    parser.add_argument("--records", type=Path, default=Path("docs/results/transfer_runs"))
    parser.add_argument("--json", type=Path, default=Path("docs/results/transfer_set.json"))
    parser.add_argument("--docs", type=Path, default=Path("docs/RESULTS.md"))
    parser.add_argument("--split", default=SPLIT)
    parser.add_argument("--teachers", nargs="+", type=int, default=TEACHERS)
    parser.add_argument("--stage", choices=["teachers", "all"], default="all",
                        help="teachers: train the teachers only")
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=600,
                        help="optimiser steps of every student arm (the budget sweep's 24 "
                        "epochs of 200 images, batch 8)")
    parser.add_argument("--labels", nargs="+", type=int, default=[200, 50])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="student seeds k per teacher (the seed is 10·teacher + k)")
    parser.add_argument("--extra-seeds", nargs="*", type=int, default=[3, 4],
                        help="more seeds for A, C and D-kdas, after --seeds")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--figure", type=Path, default=Path("docs/results/transfer_set.png"))
    parser.add_argument("--budget-minutes", type=float, default=100000.0,
                        help="stop before a run that would end after this")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    given, kept = sys.argv[1:] if argv is None else argv, []
    for i, a in enumerate(given):  # the command without --report-only and --teachers N …
        if a == "--report-only" or a == "--teachers" or (
                a.isdigit() and "--teachers" in given[:i]
                and all(b.isdigit() for b in given[given.index("--teachers") + 1:i])):
            continue
        kept.append(f"<outside the repository>/{Path(a).name}" if a.startswith("/") else a)
    args.command = shlex.join(["python", "experiments/transfer_set.py", *kept])
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data_root = find_shared_data()
    if data_root is None or not find_layout(data_root).test:
        sys.exit("transfer_set.py: error: no real PraNet data: set KDAS_DATA to its root")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    plan = plan_runs(args)
    for teacher in [] if args.report_only else args.teachers:
        run_teacher(args, data_root, teacher)
    write_outputs(args)
    if args.stage == "teachers":
        return
    times: dict[str, list[float]] = {}
    for arm, labels, teacher, k in [] if args.report_only else plan:
        elapsed = time.perf_counter() - started
        if elapsed + expected_seconds(args, times, arm) > args.budget_minutes * 60:
            print("budget: stopping; run the same command again to continue", flush=True)
            break
        record = run_student(args, data_root, arm, labels, teacher, k)
        if record is None:
            continue
        times.setdefault(arm, []).append(run_seconds(record))
        write_outputs(args)
    write_outputs(args)
    print(f"wall time: {(time.perf_counter() - started) / 60:.1f} min", flush=True)


def save_order(args: argparse.Namespace, record: dict[str, Any]) -> None:
    """Write (once) each test set's image stems, the order of every record's per-image Dice;
    a run that scored other images stops the script."""
    order = record.pop("_order")
    index = args.records / "test_images.json"
    if index.exists() and json.loads(index.read_text(encoding="utf-8")) != order:
        sys.exit(f"{index} lists other test images than this run scored: use another "
                 "--records folder for other data")
    if not index.exists():
        save_json(index, order)


if __name__ == "__main__":
    main()
