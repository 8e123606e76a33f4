"""The runs of the real-data CPU lab (experiments/real_lab.py): one row × seed at a time.

Each row's :class:`~lab_experiment.Row` (its objective switches), the run's
:class:`~kdas_lite.config.TrainConfig`, training and scoring it (:func:`run_one`), and its two
records: the full ``<out>/results/<run>.json`` and the compact committed copy
(:func:`save_compact`, relative paths only). :mod:`real_lab_summary` turns the records into
the paired statistics and the generated tables; :mod:`real_lab` is the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from lab_experiment import Row, environment, save_json

from kdas_lite.config import TrainConfig, encoder_pair, get_preset
from kdas_lite.data.io import file_sha256
from kdas_lite.evaluate import evaluate
from kdas_lite.gradients import equalizing_weight
from kdas_lite.runs import load_trained
from kdas_lite.train import build_dataloaders, build_model, distill, make_objective, train_teacher
from kdas_lite.training_data import training_split

ALPHA = 0.3  # the paper's α: every distilled row's, unless the row's name gives another

ROWS: dict[str, Row] = {
    "teacher": Row("teacher (Lite2, trained once)", "teacher"),
    "alone": Row("student alone", "alone", {"use_at": False, "use_sgm": False}),
    "alone-x0.7": Row("student alone, loss × 0.7 (control for 1 − α, α = 0.3)", "alone",
                      {"use_at": False, "use_sgm": False, "seg_weight": 0.7}),
    "sgm": Row("student + L_SGM only (= the public code's KDAS)", "distill", {"use_at": False}),
    "at": Row("student + L_AT only (KDAS without L_SGM)", "distill", {"use_sgm": False}),
    "kdas": Row("KDAS, kdas_lite L_AT", "distill"),
    "kdas-fixed": Row("KDAS, public L_AT repaired (reference-fixed)", "distill",
                      {"at_mode": "reference-fixed"}),
    "pixel": Row("pixel KD (Hinton)", "distill",
                 {"use_at": False, "use_sgm": False, "baseline": "pixel"}),
    "cwd": Row("CWD", "distill", {"use_at": False, "use_sgm": False, "baseline": "cwd"}),
    "kdas-a0.1": Row("KDAS, kdas_lite L_AT, α = 0.1", "distill", {"alpha": 0.1}),
    "kdas-a0.5": Row("KDAS, kdas_lite L_AT, α = 0.5", "distill", {"alpha": 0.5}),
    "alone-x0.5": Row("student alone, loss × 0.5 (control for α = 0.5)", "alone",
                      {"use_at": False, "use_sgm": False, "seg_weight": 0.5}),
    "kdas-fixed-a0.1": Row("KDAS, reference-fixed L_AT, α = 0.1", "distill",
                           {"at_mode": "reference-fixed", "alpha": 0.1}),
    "kdas-fixed-a0.5": Row("KDAS, reference-fixed L_AT, α = 0.5", "distill",
                           {"at_mode": "reference-fixed", "alpha": 0.5}),
    "sgm-prob": Row("+ L_SGM on probabilities σ(P)", "distill",
                    {"use_at": False, "sgm_form": "prob"}),
    "sgm-no-transpose": Row("+ L_SGM without the transpose (P + P: pooled logit MSE)",
                            "distill", {"use_at": False, "sgm_form": "no-transpose"}),
    "sgm-teacher-std": Row("+ L_SGM on logits / the teacher's per-image std", "distill",
                           {"use_at": False, "sgm_form": "teacher-std"}),
    "sgm-equal-grad": Row("+ L_SGM weighted to L_seg's gradient norm at the first step",
                          "distill", {"use_at": False}),
}
HEADLINE = ["alone", "sgm", "at", "kdas", "cwd"]
MECHANISM = ["sgm-prob", "sgm-no-transpose", "sgm-teacher-std", "sgm-equal-grad"]
EARLIER = [row for row in ROWS if row not in ("teacher", *HEADLINE, *MECHANISM)]
DATA_LABEL = "shared/data"  # how records name the data root (never a machine path)
EARLIER_NOTE = ("runs of 2026-12-01 (experiments/real_lab.py, the same settings, an earlier "
                "training of the same teacher; their per-run records were lost, only this "
                "summary remains; Δ against that day's student alone)")


# ---------------------------------------------------------------------------------------------
# Configs and runs
# ---------------------------------------------------------------------------------------------
def run_name(row: str, seed: int | None) -> str:
    """``teacher`` (one model for every seed) or ``seed<S>/<row>``."""
    return "teacher" if row == "teacher" else f"seed{seed}/{row}"


def run_config(args: argparse.Namespace, data_root: Path, row: str, seed: int,
               sgm_weight: float | None = None) -> TrainConfig:
    """The cpu-lab preset with the offline pair; students differ only in their row's switches
    (and the seed); the teacher has its own size, epochs, image counts and seed.
    ``sgm_weight`` (the ``sgm-equal-grad`` row's measured factor) overrides the row's."""
    teacher = row == "teacher"
    size = args.teacher_size if teacher else args.size
    epochs = args.teacher_epochs if teacher else args.epochs
    return get_preset("cpu-lab").replace(
        **encoder_pair("offline", pretrained=True),
        name=f"real-lab-{run_name(row, seed).replace('/', '-')}", data_root=str(data_root),
        output_dir=str(args.out / "runs" / run_name(row, seed)), image_size=size, epochs=epochs,
        max_train_images=args.teacher_train_images if teacher else args.train_images,
        max_val_images=args.val_images, batch_size=args.batch_size, lr=args.lr,
        warmup_epochs=min(1.0, epochs / 4), seed=args.teacher_seed if teacher else seed,
        device="cpu", **{"alpha": ALPHA, **ROWS[row].overrides,
                         **({} if sgm_weight is None else {"sgm_weight": sgm_weight})})


def equal_grad_weight(args: argparse.Namespace, data_root: Path, seed: int) -> float:
    """The ``sgm-equal-grad`` row's factor w for ``seed``: ‖∇α·L_SGM‖ scaled to
    ‖∇(1 − α)·ΣL_seg‖ for the untrained student (the seed's initial weights) on its first
    validation batch, the batch on which the gradient probe measures epoch 1. Cached in
    ``<out>/equal_grad/seed<S>.json``."""
    cache = args.out / "equal_grad" / f"seed{seed}.json"
    if cache.exists():
        return float(json.loads(cache.read_text(encoding="utf-8"))["sgm_weight"])
    weight = first_step_weight(run_config(args, data_root, "sgm-equal-grad", seed),
                               teacher_checkpoint(args))
    save_json(cache, {"seed": seed, "sgm_weight": weight,
                      "measured_on": "untrained student, first validation batch"})
    return weight


def first_step_weight(config: TrainConfig, teacher: Path) -> float:
    """:func:`~kdas_lite.gradients.equalizing_weight` of L_SGM for the student that
    ``config`` initialises (``build_model`` seeds it), on the first batch of its validation
    loader (unshuffled; the random state is restored afterwards)."""
    student = build_model(config.student_encoder, config)
    objective = make_objective(config, load_trained(teacher), student)
    with torch.random.fork_rng():
        _, val_loader, _ = build_dataloaders(config, student.input_mean, student.input_std,
                                             progress=False)
        images, masks = next(iter(val_loader))
    return equalizing_weight(student, objective, images, masks, "sgm")


def run_one(args: argparse.Namespace, data_root: Path, row: str, seed: int,
            config: TrainConfig) -> dict[str, Any]:
    """Train and evaluate one run; write its full record under ``<out>/results`` and its
    compact record under ``--records``; return the full one."""
    role = "teacher" if row == "teacher" else "student"
    resumed = (config.run_dir / role / "last.pth").exists()
    start = time.perf_counter()
    if row == "teacher":
        result = train_teacher(config, resume=resumed, progress=False)
    else:
        result = distill(config, teacher_checkpoint(args), resume=resumed, progress=False)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    table = evaluate(result.model, data_root, size=config.image_size, device="cpu",
                     progress=False, name=f"{ROWS[row].label}, seed {config.seed}")
    checkpoint = teacher_checkpoint(args)  # the teacher trained now, or the one distilled
    record = {
        "row": row, "label": ROWS[row].label, "seed": None if row == "teacher" else seed,
        **({"teacher_sha256": file_sha256(checkpoint)} if ROWS[row].kind != "alone" else {}),
        "resumed": resumed, "train_s": train_s, "eval_s": time.perf_counter() - start,
        "best_epoch": result.best_epoch, "best_val_dice": result.best_val_dice,
        "table": table.to_dict(), "average": table.average(), "config": config.to_dict(),
        "image_dice": table.image_dice,
        "history": result.history,
        "environment": environment(),
        "image_ids": training_split(config),
    }
    save_json(args.out / "results" / f"{run_name(row, seed)}.json", record)
    save_compact(args, record)
    return record


def record_name(row: str, seed: int | None) -> str:
    """``teacher`` or ``<row>-s<seed>``: the compact record's file stem."""
    return "teacher" if row == "teacher" else f"{row}-s{seed}"


def portable_config(config: dict[str, Any], out: Path) -> dict[str, Any]:
    """A config dict without machine paths: the data root as :data:`DATA_LABEL`, the output
    folder relative to ``out`` (``runs/seed0/alone``) when it lies under it."""
    output = Path(config["output_dir"]) if config.get("output_dir") else None
    if output is not None:
        try:
            output = output.resolve().relative_to(out.resolve())
        except ValueError:
            output = Path(output.name) if output.is_absolute() else output
    return {**config, "data_root": DATA_LABEL,
            "output_dir": None if output is None else output.as_posix()}


def compact(record: dict[str, Any], out: Path) -> dict[str, Any]:
    """The committed form of a run record: no history of machine paths; each test image's
    Dice as a list in the order of its sorted file stems (``test_images.json``), 5 decimals."""
    return {
        "row": record["row"], "label": record["label"], "seed": record["seed"],
        **({"teacher_sha256": record["teacher_sha256"]} if "teacher_sha256" in record else {}),
        "train_s": record["train_s"], "eval_s": record["eval_s"],
        "best_epoch": record["best_epoch"], "best_val_dice": record["best_val_dice"],
        "table": record["table"], "average": record["average"],
        "config": portable_config(record["config"], out),
        "history": record["history"],
        "environment": record.get("environment"),
        "image_ids": record.get("image_ids"),
        "image_dice": {name: [round(d[stem], 5) for stem in sorted(d)]
                       for name, d in record.get("image_dice", {}).items()},
    }


def save_compact(args: argparse.Namespace, record: dict[str, Any]) -> None:
    """Write the compact record and (once) the image order ``test_images.json``; a different
    image order than the one already written stops the script."""
    order = {name: sorted(d) for name, d in record.get("image_dice", {}).items()}
    index = args.records / "test_images.json"
    if not order:  # a record from before the per-image Dice was kept (the teacher of today)
        pass
    elif index.exists():
        if json.loads(index.read_text(encoding="utf-8")) != order:
            sys.exit(f"{index} lists other test images than this run scored; use another "
                     "--records folder for other data")
    else:
        save_json(index, order)
    path = args.records / f"{record_name(record['row'], record['seed'])}.json"
    if record["row"] == "teacher" and path.exists():
        earlier = json.loads(path.read_text(encoding="utf-8"))
        if earlier["table"] == record["table"]:
            print(f"    the re-trained teacher scores exactly as {path.name} records; kept it",
                  flush=True)
            return
        path = path.with_name("teacher-retrained.json")  # the earlier rows' teacher stays
        print(f"    the re-trained teacher differs from the recorded one (mDice on all images "
              f"{record['average']['meanDic']:.4f} vs {earlier['average']['meanDic']:.4f}); "
              f"its record: {path.name}", flush=True)
    save_json(path, compact(record, args.out))


def run_done(args: argparse.Namespace, row: str, seed: int, config: TrainConfig | None
             ) -> bool:
    """True when the run has a full or a compact record. A record made with other settings
    stops the script; ``config`` None (the equal-grad weight not measured yet) compares
    nothing but the existence of a compact record."""
    full = args.out / "results" / f"{run_name(row, seed)}.json"
    small = args.records / f"{record_name(row, seed)}.json"
    for path in (small, full):
        if not path.exists():
            continue
        if config is None:
            return True
        recorded = TrainConfig.from_dict({**json.loads(path.read_text(encoding="utf-8"))[
            "config"], "data_root": DATA_LABEL, "output_dir": None})
        expected = config.replace(data_root=DATA_LABEL, output_dir=None)
        if recorded.to_dict() != expected.to_dict():  # fields added since: their defaults
            sys.exit(f"{path} was made with other settings than this command's; use another "
                     "--out and --records folder (or delete it) to run with the new settings.")
        return True
    return False


def teacher_checkpoint(args: argparse.Namespace) -> Path:
    return args.out / "runs" / "teacher" / "teacher" / "best.pth"


def needs_teacher(args: argparse.Namespace, plan: list[tuple[str, int]]) -> bool:
    """True when the teacher's checkpoint is not under ``--out`` (a clean clone, another
    machine: its record is committed, its weights are not) while a distilled run of ``plan``
    has no record yet: the teacher is then trained again with the same settings."""
    return not teacher_checkpoint(args).exists() and any(
        ROWS[row].kind == "distill" and not (args.records / f"{record_name(row, seed)}.json"
                                             ).exists() for row, seed in plan)


def load_records(out: Path) -> list[dict[str, Any]]:
    """Every finished run under ``out``, the teacher first."""
    paths = sorted((out / "results").glob("teacher.json")) + sorted(
        (out / "results").glob("seed*/*.json"))
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


def load_compact(records: Path) -> list[dict[str, Any]]:
    """Every compact record under ``records``, the teacher first."""
    paths = sorted(records.glob("teacher.json")) + sorted(
        p for p in records.glob("*-s*.json") if p.stem.rsplit("-s", 1)[-1].isdigit())
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


