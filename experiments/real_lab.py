"""Real-data CPU lab: does distillation help a small student on real polyp data?

The question of KDAS asked where a CPU course can answer it: an ImageNet-pretrained
EfficientNet-Lite2 teacher (Polyp-PVT decoder) is trained **once**, longer and on more images
than the students, the way a course runs it (the teacher once, the students many times); it
then serves every student row of every seed. The EfficientNet-Lite0 students all train with the
same budget (image size, epochs, batch, learning-rate schedule) on the same seeded,
source-stratified subset of PraNet's training set per seed (:func:`kdas_lite.data.subsample`)
and differ only in the objective:

==================  ==========================================================================
row                 training objective (α = 0.3, T = 2 unless the row says otherwise)
==================  ==========================================================================
teacher             Lite2, ``ΣL_seg`` (Eq. 1), trained once (``--teacher-*`` settings)
alone               the student alone, ``ΣL_seg``
alone-x0.7          the student alone, ``0.7·ΣL_seg``: the control for Eq. 6's ``(1 − α)``
sgm                 ``(1 − α)·ΣL_seg + α·L_SGM``: what the public code trains (its L_AT has
                    zero gradient)
kdas                ``(1 − α)·ΣL_seg + α·(ΣL_AT + L_SGM)`` with kdas_lite's L_AT (Eq. 6)
kdas-fixed          KDAS with the public code's L_AT repaired only where it is broken
                    (``at_mode="reference-fixed"``)
pixel, cwd          ``(1 − α)·ΣL_seg + α·ΣL_KD``: pixel-wise KD (Hinton) / channel-wise KD
kdas-a0.1 …         KDAS (or ``kdas-fixed``) at another α, and ``alone-x0.5`` the control of
                    α = 0.5
at                  ``(1 − α)·ΣL_seg + α·ΣL_AT``: KDAS without L_SGM
sgm-prob …          the L_SGM mechanism rows: ``sgm`` with one property of L_SGM changed
                    (``sgm_form`` prob / no-transpose / teacher-std,
                    :func:`kdas_lite.losses.sgm_loss`), or ``sgm-equal-grad``: its weight set
                    so that ‖∇α·w·L_SGM‖ = ‖∇(1 − α)·ΣL_seg‖ for the untrained student on the
                    first validation batch (:func:`kdas_lite.gradients.equalizing_weight`)
==================  ==========================================================================

Every model is scored on the five PraNet test sets with the paper protocol
(:func:`kdas_lite.evaluate.evaluate`: inputs at the model's training size, metrics at each
mask's native resolution); each set carries its status label (CVC-300 inferred, ETIS a subset).

The run is incremental: each finished run writes ``<out>/results/<run>.json`` (config, table,
wall times, history, each test image's Dice) and a compact copy that is committed,
``--records``/``<row>-s<seed>.json`` (docs/results/lab_runs/: relative paths only, the data
root as the label ``shared/data``); a run with either record is skipped when the same command
runs again (a record made with other settings stops the script); an interrupted training
resumes from its last completed epoch; ``--budget-minutes`` stops before a run that would not
finish in time. The runs go in order of importance, interleaved by seed so that a partial
result stays balanced: the five headline rows (alone, sgm, at, kdas, cwd) of seed 0, then of
seed 1, …; then any earlier row asked for with ``--rows``. After every run the tables are
rewritten to ``<out>/results.md``, the block between the ``real-lab`` markers of ``--docs``
(docs/RESULTS.md) and ``--json`` (docs/results/real_lab.json: rows re-run now replace their
earlier summary, which is kept under ``earlier``; rows not re-run keep their earlier summary,
marked ``"rerun": false``).

``--mechanism`` runs the L_SGM mechanism part instead: per ``--mechanism-seeds`` seed the
student alone, + L_SGM and the four intervention rows, every distilled row from the teacher
under ``--out`` (its checksum is in each record), records in ``--mechanism-records``
(docs/results/mechanism_runs/), tables in ``<out>/mechanism.md``, ``--mechanism-json``
(docs/results/sgm_mechanism.json) and the ``sgm-mechanism`` block of ``--docs``. It has its own
+ L_SGM runs so that every intervention is compared with + L_SGM from the same teacher.

Usage (the command of docs/RESULTS.md; the defaults are its settings)::

    .venv/bin/python experiments/real_lab.py --threads 1 --out runs/real-lab
    .venv/bin/python experiments/real_lab.py --threads 1 --out runs/real-lab --mechanism
    # pipeline check at a tiny size (a few minutes; writes nothing under docs/)
    .venv/bin/python experiments/real_lab.py --dry-run --out /tmp/real-lab-dry
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from lab_experiment import Row, environment, floor_scores, machine, save_json, spread

from kdas_lite.config import TrainConfig, encoder_pair, get_preset
from kdas_lite.data import TEST_SETS, find_layout, find_shared_data
from kdas_lite.data.io import file_sha256
from kdas_lite.evaluate import evaluate
from kdas_lite.gradients import equalizing_weight
from kdas_lite.lab_results import (
    BLOCK,
    all_images_label,
    annotate_lab,
    annotate_mechanism,
    bootstrap_all_images,
    interval_table,
    mechanism_reading,
    reading,
    t_interval,
)
from kdas_lite.lab_stats import distinct_mean, distinct_sets
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
START = "<!-- real-lab: begin (written by experiments/real_lab.py) -->"
END = "<!-- real-lab: end -->"
MECH_START = "<!-- sgm-mechanism: begin (written by experiments/real_lab.py) -->"
MECH_END = "<!-- sgm-mechanism: end -->"


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


# ---------------------------------------------------------------------------------------------
# Statistics and reports (pure: records in, numbers and text out)
# ---------------------------------------------------------------------------------------------
def mdice(record: dict[str, Any], test_set: str) -> float:
    """mDice of one run on one test set, or for ``"avg"`` its mean over the distinct test
    images (:func:`kdas_lite.lab_stats.distinct_mean`: CVC-300 is ColonDB frames 149–208,
    counted once)."""
    sets = record["table"]["datasets"]
    if test_set == "avg":
        return distinct_mean({s: d["meanDic"] for s, d in sets.items()},
                             {s: d["n_images"] for s, d in sets.items()})
    return sets[test_set]["meanDic"]


def n_distinct(layout: Any) -> int:
    """How many distinct test images the layout's sets hold (a duplicate set counted once)."""
    return sum(layout.status[s].pairs for s in distinct_sets(
        [s for s in TEST_SETS if s in layout.status]))


def distinct_avg(entry: dict[str, Any], sizes: dict[str, int]) -> None:
    """Rewrite a summary row's ``"avg"`` (its runs' mDice and its per-seed Δ) as the mean over
    the distinct images, from its per-set values (the mean is linear in them), for summaries
    written before "all images" meant the distinct ones."""
    if not sizes:
        return
    for run in entry.get("runs", []):
        if all(s in run["mDice"] for s in sizes):
            run["mDice"]["avg"] = distinct_mean({s: run["mDice"][s] for s in sizes}, sizes)
    deltas = entry.get("delta_vs_alone", {})
    if deltas and all(s in deltas for s in sizes):
        seeds = deltas[next(iter(sizes))]["per_seed"]
        per_seed = {k: distinct_mean({s: deltas[s]["per_seed"][k] for s in sizes}, sizes)
                    for k in seeds}
        values = list(per_seed.values())
        deltas["avg"] = {"per_seed": per_seed, "mean": statistics.fmean(values),
                         "std": statistics.stdev(values) if len(values) > 1 else None}


def teacher_overlap(args: argparse.Namespace, data_root: Path, records: list[dict[str, Any]]
                    ) -> dict[str, Any] | None:
    """How many of each seed's student training images the teacher trained on: the teacher's
    ids from its record, else from this command's teacher settings
    (:func:`kdas_lite.training_data.training_split`, the code that chose them); the
    students' from their records. None when no student record names its images."""
    if not any(r.get("image_ids") for r in records if r.get("row") != "teacher"):
        return None
    teacher = next((r for r in records if r["row"] == "teacher"), None)
    ids = (teacher or {}).get("image_ids") or training_split(
        run_config(args, data_root, "teacher", args.teacher_seed))
    shared, sizes = {}, set()
    for r in records:
        if r["row"] != "teacher" and r.get("image_ids"):
            shared[str(r["seed"])] = len(set(ids["train"]) & set(r["image_ids"]["train"]))
            sizes.add(len(r["image_ids"]["train"]))
    if not shared:
        return None
    return {"teacher_train_images": len(ids["train"]),
            "teacher_ids_from": "its record" if teacher and teacher.get("image_ids")
            else "the teacher settings of this command",
            "student_train_images": max(sizes),
            "shared_per_seed": dict(sorted(shared.items(), key=lambda kv: int(kv[0])))}


def provenance_lines(doc: dict[str, Any]) -> list[str]:
    """The block's provenance paragraph: teacher checksum, environment, image overlap."""
    prov = doc.get("provenance") or {}
    env = prov.get("environment")
    lines = [f"Provenance ({prov.get('status', 'unknown')}): teacher checksum "
             + (f"`{prov['teacher_sha256'][:12]}…`" if prov.get("teacher_sha256") else
                "**unknown** (not recorded)") + "; environment "
             + ("; ".join(f"{k} {v}" for k, v in env.items()) if env else
                "**unknown** (" + prov.get("environment_evidence",
                                          "library versions not recorded") + ")") + "."]
    overlap = doc.get("teacher_overlap")
    if overlap:
        lines.append(f"Training images each seed's students share with the teacher's "
                     f"{overlap['teacher_train_images']} ({overlap['teacher_ids_from']}): "
                     + ", ".join(f"seed {k} {v} of {overlap['student_train_images']}"
                                 for k, v in overlap["shared_per_seed"].items())
                     + " (teacher familiarity varies with the seed).")
    return lines


def check_pairing(records: list[dict[str, Any]], where: str) -> dict[str, Any]:
    """Stop when ``records`` (one summary's) come from different teachers or environments;
    return the summary's provenance: the teacher's checksum and the environment they share,
    or ``"unknown"`` where no record names it (earlier runs)."""
    teachers = {r.get("teacher_sha256") for r in records
                if r.get("row") in ROWS and ROWS[r["row"]].kind == "distill"}
    envs = {json.dumps(r.get("environment"), sort_keys=True) for r in records}
    if len(teachers) > 1:
        sys.exit(f"{where}: its distilled records name {len(teachers)} teachers "
                 f"({', '.join(str(t)[:12] for t in teachers)}): a summary pairs runs of one "
                 "teacher only; give each teacher its own --records folder")
    if len(envs) > 1:
        sys.exit(f"{where}: its records name {len(envs)} environments: a summary pairs runs "
                 "of one environment only; re-run the others or give them their own --records")
    teacher, env = next(iter(teachers), None), json.loads(next(iter(envs), "null"))
    own = {r.get("teacher_sha256") for r in records if r.get("row") == "teacher"} - {None}
    if teacher and own and own != {teacher}:
        sys.exit(f"{where}: its teacher record's checksum differs from the one its distilled "
                 "records name: they were not distilled from this teacher")
    teacher = teacher or next(iter(own), None)  # no distilled run yet: the teacher's own
    evidence = sorted({r["environment_evidence"] for r in records
                       if r.get("environment_evidence")})
    return {"teacher_sha256": teacher, "environment": env,
            "status": "recorded" if env is not None and (teacher or not teachers)
            else "unknown", **({"environment_evidence": "; ".join(evidence)} if evidence
                               else {})}


def paired_deltas(records: list[dict[str, Any]], row: str, test_set: str
                  ) -> dict[int, float]:
    """Seed → mDice(row, seed) − mDice(student alone, seed) on ``test_set`` (or ``"avg"``), for
    the seeds both have. The teacher is one model: it is compared with every seed's student."""
    alone = {r["seed"]: mdice(r, test_set) for r in records if r["row"] == "alone"}
    runs = [r for r in records if r["row"] == row]
    if row == "teacher":
        return {seed: mdice(runs[0], test_set) - value for seed, value in alone.items()} \
            if runs else {}
    return {r["seed"]: mdice(r, test_set) - alone[r["seed"]] for r in runs if r["seed"] in alone}


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per row: its runs (seed, mDice per test set and on average, config) and the paired
    differences against the student alone (per seed, mean, sample std), per test set."""
    sets = [s for s in TEST_SETS if any(s in r["table"]["datasets"] for r in records)] + ["avg"]
    rows: dict[str, Any] = {}
    for row in ROWS:
        runs = sorted((r for r in records if r["row"] == row), key=lambda r: r["seed"] or 0)
        if not runs:
            continue
        deltas = {}
        for test_set in sets:
            per_seed = paired_deltas(records, row, test_set)
            if per_seed and row != "alone":
                values = list(per_seed.values())
                interval = t_interval(values)
                deltas[test_set] = {
                    "per_seed": {str(s): d for s, d in sorted(per_seed.items())},
                    "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else None,
                    "ci95_t": None if interval.lo is None else [interval.lo, interval.hi]}
        rows[row] = {
            "label": ROWS[row].label,
            "runs": [{"seed": r["seed"], "mDice": {s: mdice(r, s) for s in sets},
                      "mIoU_avg": r["average"]["meanIoU"], "best_epoch": r["best_epoch"],
                      "train_s": r["train_s"], "eval_s": r["eval_s"],
                      "params": r["table"]["params"], "images_per_s": r["table"]["images_per_s"],
                      "config": r["config"]} for r in runs],
            "delta_vs_alone": deltas,
        }
    return {"test_sets": sets, "rows": rows}


def markdown_tables(stats: dict[str, Any], labels: dict[str, str]) -> str:
    """The results tables: mDice per test set (mean ± std over seeds), the paired differences
    against the student alone, and the per-seed average and Kvasir differences."""
    sets, rows = stats["test_sets"], stats["rows"]
    heads = [labels.get("avg", "all distinct images") if s == "avg" else labels.get(s, s)
             for s in sets]
    seeds = sorted({run["seed"] for row in rows.values() for run in row["runs"]
                    if run["seed"] is not None})
    lines = ["mDice, mean ± std over the student seeds (the teacher: one model):", "",
             "| row | runs | " + " | ".join(heads) + " |", "|---|---:|" + "---:|" * len(sets)]
    for row in rows.values():
        lines.append(f"| {row['label']} | {len(row['runs'])} | " + " | ".join(
            spread([run["mDice"][s] for run in row["runs"]]) for s in sets) + " |")
    lines += ["", "Paired difference against the student alone of the same seed, mean ± std "
              "over seeds (+0.050 = 5 mDice points better than alone):", "",
              "| row | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(sets)]
    for row in rows.values():
        if row["delta_vs_alone"]:
            lines.append(f"| {row['label']} | " + " | ".join(
                spread(list(row["delta_vs_alone"][s]["per_seed"].values()), sign=True)
                if s in row["delta_vs_alone"] else "—" for s in sets) + " |")
    if not seeds:
        return "\n".join(lines)
    lines += ["", "The same differences seed by seed (Kvasir; over the distinct test images):",
              "", "| row | " + " | ".join(f"Kvasir s{s}" for s in seeds) + " | "
              + " | ".join(f"avg s{s}" for s in seeds) + " |",
              "|---|" + "---:|" * (2 * len(seeds))]
    for row in rows.values():
        if row["delta_vs_alone"]:
            cells = [row["delta_vs_alone"].get(s, {}).get("per_seed", {}).get(str(seed))
                     for s in ("Kvasir", "avg") for seed in seeds]
            lines.append(f"| {row['label']} | " + " | ".join(
                "—" if c is None else f"{round(c, 3) + 0.0:+.3f}" for c in cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Writing the report
# ---------------------------------------------------------------------------------------------
def write_outputs(args: argparse.Namespace, data_root: Path, records: list[dict[str, Any]],
                  missing: list[str], wall_s: float, floor: dict[str, Any]) -> str:
    """Write ``<out>/results.md`` and (unless ``--dry-run``) ``--json`` and the ``real-lab``
    block of ``--docs`` (``--mechanism``: ``<out>/mechanism.md``, ``--mechanism-json`` and
    the ``sgm-mechanism`` block); return the Markdown."""
    layout = find_layout(data_root)
    labels = {name: status.label for name, status in layout.status.items()}
    labels["avg"] = f"all {n_distinct(layout)} distinct images"
    compute_s = sum(r["train_s"] + r["eval_s"] for r in records)
    head = [f"command: `{args.command}`", "", f"machine: {machine_of_runs(args)}", "",
            f"data: `{DATA_LABEL}` — {layout.describe().split(' ', 1)[1]}", "",
            f"runs with a record: {len(records)}; their training + evaluation time: "
            f"{compute_s / 60:.1f} min (this invocation: {wall_s / 60:.1f} min wall)", ""]
    if missing:
        head += [f"**PARTIAL**: {len(missing)} run(s) of this command not done yet: "
                 f"{', '.join(missing)}. Run the same command again to continue.", ""]
    if args.mechanism:
        return write_mechanism(args, data_root, records, missing, head, labels)
    provenance = check_pairing(records, str(args.records))
    overlap = teacher_overlap(args, data_root, records)
    lab = lab_summary(args, layout, labels, summary(records), floor, missing, compute_s)
    lab.update(provenance=provenance, teacher_overlap=overlap,
               family="lab" if provenance["status"] == "recorded" else "lab (earlier runs)")
    annotate_lab(lab)
    lab_text = "\n".join(head) + lab_markdown(args, lab, labels, floor, layout)
    (args.out / "results.md").write_text(lab_text, encoding="utf-8")
    if args.dry_run:
        return lab_text
    lab.pop("_path", None)
    save_json(args.json, lab)
    if args.docs is not None:
        replace_block(args.docs, lab_text, f"<!-- {args.block}: begin (written by "
                      "experiments/real_lab.py) -->", f"<!-- {args.block}: end -->")
    return lab_text


def write_mechanism(args: argparse.Namespace, data_root: Path, records: list[dict[str, Any]],
                    missing: list[str], head: list[str], labels: dict[str, str]) -> str:
    """The ``--mechanism`` outputs: ``<out>/mechanism.md``, ``--mechanism-json`` (what
    ``experiments/sgm_map_stats.py`` added to it is kept) and the ``sgm-mechanism`` block."""
    teacher = next((r for r in records if r["row"] == "teacher"), None)
    mech = summary([r for r in records if r["row"] != "teacher"])
    mech.update(provenance=check_pairing(records, str(args.records)),
                teacher_overlap=teacher_overlap(args, data_root, records), family="mechanism",
                n_distinct_images=n_distinct(find_layout(data_root)))
    annotate_mechanism(mech)
    text = "\n".join(head) + "\n".join(provenance_lines(mech)) + "\n\n" + \
        mechanism_markdown(args, mech, labels)
    (args.out / "mechanism.md").write_text(text, encoding="utf-8")
    if args.dry_run:
        return text
    previous = json.loads(args.mechanism_json.read_text(encoding="utf-8")) \
        if args.mechanism_json.exists() else {}
    save_json(args.mechanism_json, {
        **{k: v for k, v in previous.items() if k == "map_statistics"},
        "question": "why does L_SGM lower the student? one property of it changed per row",
        "command": args.command, "machine": machine_of_runs(args), "partial": bool(missing),
        "missing": missing, "data_root": DATA_LABEL,
        "records": relative_records(args, args.mechanism_json), "seeds": args.seeds,
        "teacher": None if teacher is None else {
            "mDice": teacher["average"]["meanDic"], "Kvasir": mdice(teacher, "Kvasir"),
            "checkpoint_sha256": teacher.get("teacher_sha256")},
        "teacher_sha256_of_runs": sorted({r["teacher_sha256"] for r in records
                                          if "teacher_sha256" in r and r["row"] != "teacher"}),
        "equal_grad_weights": equal_grad_weights(args), **mech})
    if args.docs is not None:
        replace_block(args.docs, text, MECH_START, MECH_END)
    return text


def machine_of_runs(args: argparse.Namespace) -> str:
    """The machine the runs were made on: this one, except for ``--report-only``, which runs
    nothing and keeps the machine its summary already names (the environment may have changed
    since)."""
    summary_json = args.mechanism_json if args.mechanism else args.json
    if args.report_only and summary_json.exists():
        recorded = json.loads(summary_json.read_text(encoding="utf-8")).get("machine")
        if recorded:
            return recorded
    return machine()


def relative_records(args: argparse.Namespace, json_path: Path) -> str:
    """The records folder as seen from the JSON's folder (``lab_runs``)."""
    try:
        return args.records.resolve().relative_to(json_path.resolve().parent).as_posix()
    except ValueError:
        return args.records.name


def equal_grad_weights(args: argparse.Namespace) -> dict[str, float]:
    """Seed → the ``sgm-equal-grad`` weight: measured under ``--out``, else (a report from
    another folder) as the mechanism summary recorded it."""
    found = {path.stem[4:]: json.loads(path.read_text(encoding="utf-8"))["sgm_weight"]
             for path in sorted((args.out / "equal_grad").glob("seed*.json"))}
    if not found and args.mechanism_json.exists():
        found = json.loads(args.mechanism_json.read_text(encoding="utf-8")).get(
            "equal_grad_weights", {})
    return found


def lab_summary(args: argparse.Namespace, layout: Any, labels: dict[str, str],
                stats: dict[str, Any], floor: dict[str, Any], missing: list[str],
                compute_s: float) -> dict[str, Any]:
    """real_lab.json: the rows with records now (``"rerun": true``; an earlier summary of the
    row moves under ``earlier``), then the rows kept from the earlier summary in ``--json``
    (``"rerun": false``), each with its paired Δ and 95 % t-intervals; and, per re-run row,
    the bootstrap over test images of the all-images Δ."""
    previous = json.loads(args.json.read_text(encoding="utf-8")) if args.json.exists() else {}
    old_rows = previous.get("rows", {})
    rows: dict[str, Any] = {}
    for row, entry in stats["rows"].items():
        old = old_rows.get(row)
        earlier = None if old is None else (old.get("earlier") if old.get("rerun") else {
            "note": EARLIER_NOTE, "delta_vs_alone": old["delta_vs_alone"],
            "runs": [{**run, "config": portable_config(run["config"], args.out)}
                     for run in old["runs"]]})
        rows[row] = {**entry, "rerun": True, **({"earlier": earlier} if earlier else {})}
    for row, old in old_rows.items():
        if row not in rows and row in ROWS:
            rows[row] = {**old, "rerun": old.get("rerun", False),
                         **({} if old.get("rerun") else {"note": EARLIER_NOTE}),
                         "runs": [{**run, "config": portable_config(run["config"], args.out)}
                                  for run in old["runs"]]}
    sizes = {s: layout.status[s].pairs for s in distinct_sets(
        [s for s in TEST_SETS if s in layout.status])}
    for entry in rows.values():  # kept rows: "avg" over the distinct images, from their sets
        if not entry["rerun"]:
            distinct_avg(entry, sizes)
        if entry.get("earlier"):
            distinct_avg(entry["earlier"], sizes)
    for entry in rows.values():  # t-intervals for the kept rows too
        for delta in entry.get("delta_vs_alone", {}).values():
            interval = t_interval(list(delta["per_seed"].values()))
            delta["ci95_t"] = None if interval.lo is None else [interval.lo, interval.hi]
    sets = [s for s in TEST_SETS if s in layout.status]
    lab = {
        "question": "does distillation help a small student on real polyp data?",
        "command": args.command, "machine": machine_of_runs(args), "partial": bool(missing),
        "missing": missing, "compute_minutes": round(compute_s / 60, 1),
        "data_root": DATA_LABEL, "records": relative_records(args, args.json),
        "rerun_rows": [r for r, e in rows.items() if e["rerun"]],
        "test_set_info": {s: {"label": labels.get(s, s), "status": layout.status[s].status,
                              "pairs": layout.status[s].pairs,
                              "expected": layout.status[s].expected} for s in sets},
        "floor_mDice": {s: floor[s][0] for s in sets if s in floor},
        "n_distinct_images": n_distinct(layout),
        "all_images": f"the {n_distinct(layout)} distinct test images: "
                      + ", ".join(labels.get(s, s) for s in sizes) + "; CVC-300 (inferred) is "
                      "CVC-ColonDB frames 149–208, counted once (its own column keeps its label)",
        "test_sets": [*sets, "avg"], "rows": rows, "_path": str(args.json)}
    for row, entry in rows.items():
        if entry["rerun"] and row not in ("alone", "teacher"):
            boot = bootstrap_all_images(lab, row, args.records)
            entry["bootstrap_avg"] = None if boot is None else {
                "mean": boot.mean, "ci95": [boot.lo, boot.hi], "n_images": boot.n,
                "method": f"paired block bootstrap: circular blocks of {BLOCK} consecutive "
                          "frames (file-number order) resampled within each test set, the "
                          "distinct images only (CVC-300 = ColonDB frames), 4000 resamples, "
                          "Δ per image averaged over the seeds both rows have"}
    return lab


def lab_markdown(args: argparse.Namespace, lab: dict[str, Any], labels: dict[str, str],
                 floor: dict[str, Any], layout: Any) -> str:
    """The real-lab block: mDice (mean ± std, runs per row), the paired Δ with 95 %
    intervals, the per-seed Δ, the floor and the notes."""
    order = [r for r in ROWS if r in lab["rows"]]
    stats = {"test_sets": lab["test_sets"], "rows": {r: lab["rows"][r] for r in order}}
    rerun = [lab["rows"][r]["label"] for r in order if lab["rows"][r]["rerun"]]
    kept = [lab["rows"][r]["label"] for r in order if not lab["rows"][r]["rerun"]]
    lines = [""]
    if (lab.get("provenance") or {}).get("status") != "recorded":
        lines += ["**EARLIER RUNS** (labelled so wherever they are read): their records name "
                  "no teacher checksum and no library versions, so their pairing with any "
                  "other part of the lab cannot be proved; each comparison below is paired "
                  "within its own day only.", ""]
    lines += [*provenance_lines(lab), ""]
    lines += [f"Rows run by this command (their records in `docs/results/{lab['records']}`): "
              + "; ".join(rerun) + ".", ""]
    if lab.get("all_images"):
        lines += [f"*{all_images_label(lab).capitalize()}*: {lab['all_images']}.", ""]
    if kept:
        lines += ["Rows kept from the runs of 2026-12-01 (3 seeds, records lost, summary "
                  "only; their Δ is against that day's student alone): " + "; ".join(kept)
                  + ".", ""]
    lines.append(markdown_tables(stats, labels))
    repeats = reproduction(lab)
    if repeats:
        lines += ["", "Re-run against the earlier run of the same row and seed (mDice on all "
                  "images; the student alone does not depend on the teacher, the distilled "
                  "rows do): " + "; ".join(repeats) + "."]
    lines += ["", "Paired Δ against the student alone with 95 % intervals: per test set "
              "`mean [lo, hi]` from the t distribution over the seeds (n − 1 degrees of "
              "freedom; the seeds column gives n), under it the paired t-test's raw p and its "
              "Holm-adjusted p within this table's family (every row and set); last column: "
              f"a paired block bootstrap over the distinct test images of the all-images Δ "
              f"(blocks of {BLOCK} consecutive frames resampled within each test set, given "
              "these seeds; rows with per-image records only):", "",
              interval_table(lab, [r for r in order if r != "teacher"], args.records),
              "", "Generated reading (`kdas_lite.lab_results.reading`):", "",
              reading(lab, [r for r in order if r != "teacher"], args.records)]
    sets = [s for s in lab["test_sets"] if s in floor]
    lines += ["", "*Floor* (the trivial map \"every pixel is polyp\"): " + ", ".join(
        f"{labels.get(s, s)} {floor[s][0]:.3f}" for s in sets) + "."]
    notes = [status.caveat for name, status in layout.status.items()
             if name in lab["test_sets"] and status.caveat]
    lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def reproduction(lab: dict[str, Any]) -> list[str]:
    """``label seed s: new vs earlier`` for every re-run whose row and seed the earlier
    summary also has (the teacher: one model)."""
    out = []
    for entry in lab["rows"].values():
        earlier = {run["seed"]: run["mDice"]["avg"]
                   for run in entry.get("earlier", {}).get("runs", [])}
        for run in entry["runs"] if entry.get("rerun") else []:
            if run["seed"] in earlier:
                new, old = run["mDice"]["avg"], earlier[run["seed"]]
                same = " (identical)" if new == old else f" (Δ {new - old:+.4f})"
                seed = "" if run["seed"] is None else f" s{run['seed']}"
                out.append(f"{entry['label']}{seed} {new:.4f} vs {old:.4f}{same}")
    return out


def mechanism_markdown(args: argparse.Namespace, mech: dict[str, Any],
                       labels: dict[str, str]) -> str:
    """The sgm-mechanism block: the mechanism rows beside alone and + L_SGM, same seeds."""
    weights = equal_grad_weights(args)
    lines = [f"Seeds {', '.join(map(str, args.seeds))} (rows with fewer runs are "
             "partial); every row is `(1 − α)·ΣL_seg + α·w·L_SGM'` with one property of L_SGM "
             "changed, α = 0.3.", "", markdown_tables(mech, labels)]
    lab = {**mech, "_path": str(args.mechanism_json), "records": args.records.name}
    lines += ["", "Paired Δ against the student alone, 95 % t-intervals over seeds:", "",
              interval_table(lab, [r for r in ("sgm", *MECHANISM) if r in mech["rows"]],
                             args.records), "",
              reading(lab, [r for r in ("sgm", *MECHANISM) if r in mech["rows"]],
                      args.records), "",
              "Each change against + L_SGM of the same seeds (`kdas_lite.lab_results."
              "mechanism_reading`, all test images):", "", mechanism_reading(mech)]
    if weights:
        lines += ["", "Equal-gradient weights w (‖∇α·w·L_SGM‖ = ‖∇(1 − α)·ΣL_seg‖ for the "
                  "untrained student on its first validation batch): " + ", ".join(
                      f"seed {s}: {w:.4f}" for s, w in weights.items()) + "."]
    return "\n".join(lines) + "\n"


def replace_block(path: Path, text: str, start: str = START, end: str = END) -> None:
    """Put ``text`` between the ``start``/``end`` markers of ``path`` (warn when they are
    missing)."""
    doc = path.read_text(encoding="utf-8")
    if start not in doc or end not in doc:
        print(f"warning: {path} has no {start} … {end} block; tables not copied there",
              file=sys.stderr)
        return
    head, rest = doc.split(start, 1)
    path.write_text(head + start + "\n" + text + rest[rest.index(end):], encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/real-lab"),
                        help="output folder (checkpoints, full records)")
    parser.add_argument("--data", type=Path, help="PraNet data root (default: the shared data)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4],
                        help="seeds of the headline rows (and of any earlier row asked for)")
    parser.add_argument("--mechanism-seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="seeds of the L_SGM mechanism rows")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=HEADLINE)
    parser.add_argument("--mechanism", action="store_true",
                        help="the L_SGM mechanism part: alone, sgm and the intervention rows "
                        "for --mechanism-seeds (instead of --rows and --seeds), records in "
                        "--mechanism-records")
    parser.add_argument("--mechanism-records", type=Path,
                        default=Path("docs/results/mechanism_runs"))
    parser.add_argument("--budget-minutes", type=float, default=600.0,
                        help="stop before a run that would end after this")
    parser.add_argument("--size", type=int, default=128, help="students' px (multiple of 32)")
    parser.add_argument("--epochs", type=int, default=6, help="students' epochs")
    parser.add_argument("--train-images", type=int, default=200, help="per student seed")
    parser.add_argument("--val-images", type=int, default=40)
    parser.add_argument("--teacher-size", type=int, default=128)
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--teacher-train-images", type=int, default=320)
    parser.add_argument("--teacher-seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: steadiest when other processes share the "
                        "cores; 2 contended threads trained the teacher ~5x slower)")
    parser.add_argument("--json", type=Path, default=Path("docs/results/real_lab.json"))
    parser.add_argument("--mechanism-json", type=Path,
                        default=Path("docs/results/sgm_mechanism.json"))
    parser.add_argument("--records", type=Path, default=Path("docs/results/lab_runs"),
                        help="folder of the compact per-run records (committed)")
    parser.add_argument("--block", default="real-lab",
                        help="name of the <!-- NAME: begin … --> section of --docs that gets "
                        "the lab's tables (real-lab-rerun: the re-run of 2026-12-03)")
    parser.add_argument("--docs", type=Path, default=Path("docs/RESULTS.md"),
                        help="Markdown file whose real-lab / sgm-mechanism blocks get the tables")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: rewrite the tables and the JSON from the records")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny settings (64 px, 1 epoch, 16 images, seed 0, 3 rows); "
                        "writes only under --out")
    args = parser.parse_args(argv)
    args.command = shlex.join(["python", "experiments/real_lab.py", *(
        f"<outside the repository>/{Path(a).name}" if a.startswith("/") else a
        for a in (sys.argv[1:] if argv is None else argv)
        if a != "--report-only")])  # the command that made the runs; no machine path
    if args.dry_run:
        args.size = args.teacher_size = 64
        args.epochs = args.teacher_epochs = 1
        args.train_images = args.teacher_train_images = 16
        args.val_images, args.seeds, args.mechanism_seeds = 4, [0], [0]
        args.rows = ["alone", "kdas"]
        args.records = args.mechanism_records = args.out / "records"
    if args.mechanism:
        args.rows = ["alone", "sgm-equal-grad"] if args.dry_run else ["alone", "sgm", *MECHANISM]
        args.seeds, args.records = args.mechanism_seeds, args.mechanism_records
    return args


def plan_runs(args: argparse.Namespace) -> list[tuple[str, int]]:
    """Teacher; headline rows interleaved by seed, then any earlier row asked for, by seed
    (``--mechanism``: the teacher, then alone, sgm and the mechanism rows, by seed)."""
    plan = [("teacher", args.teacher_seed)]
    if args.mechanism:
        return plan + [(row, seed) for seed in args.seeds for row in args.rows]
    plan += [(row, seed) for seed in args.seeds for row in HEADLINE if row in args.rows]
    plan += [(row, seed) for seed in args.seeds for row in EARLIER if row in args.rows]
    return plan


def missing_runs(args: argparse.Namespace, plan: list[tuple[str, int]]) -> list[str]:
    """The runs of ``plan`` without a compact record yet."""
    return [run_name(row, seed) for row, seed in plan
            if not (args.records / f"{record_name(row, seed)}.json").exists()]


def report(args: argparse.Namespace, data_root: Path, plan: list[tuple[str, int]],
           wall_s: float, floor: dict[str, Any]) -> str:
    """Rewrite every output from the compact records of this command's rows and seeds."""
    records = [r for r in load_compact(args.records)
               if r["row"] == "teacher" or (r["row"] in args.rows and r["seed"] in args.seeds)]
    return write_outputs(args, data_root, records, missing_runs(args, plan), wall_s, floor)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data_root = args.data or find_shared_data()
    if data_root is None or find_layout(data_root).synthetic or not find_layout(data_root).test:
        sys.exit("real_lab.py needs the real PraNet data (TrainDataset + TestDataset): pass "
                 "--data or see datasets/README.md; experiments/lab_experiment.py runs on "
                 "synthetic data")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"real data: {find_layout(data_root).describe()}", flush=True)
    floor = floor_scores(data_root)
    plan = plan_runs(args)
    stopped = False
    for row, seed in [] if args.report_only else plan:
        weight = None
        if row == "sgm-equal-grad" and not run_done(args, row, seed, None):
            weight = equal_grad_weight(args, data_root, seed)
        config = run_config(args, data_root, row, seed, weight)
        if run_done(args, row, seed, None if row == "sgm-equal-grad" and weight is None
                    else config) and not (row == "teacher" and needs_teacher(args, plan)):
            full = args.out / "results" / f"{run_name(row, seed)}.json"
            small = args.records / f"{record_name(row, seed)}.json"
            if full.exists() and not small.exists():  # a run finished before --records
                save_compact(args, json.loads(full.read_text(encoding="utf-8")))
            continue
        times = [r["train_s"] + r["eval_s"] for r in load_records(args.out)
                 if ROWS[r["row"]].kind == ROWS[row].kind and not r["resumed"]]
        elapsed = time.perf_counter() - started
        if times and elapsed + statistics.fmean(times) > args.budget_minutes * 60:
            print(f"budget: {run_name(row, seed)} would not end within {args.budget_minutes:g} "
                  "min; stopping. Run the same command again to continue.", flush=True)
            stopped = True
            break
        print(f"[{elapsed / 60:6.1f} min] {run_name(row, seed)}: {ROWS[row].label} ...",
              flush=True)
        record = run_one(args, data_root, row, seed, config)
        print(f"    Kvasir mDice {mdice(record, 'Kvasir'):.3f}, avg {mdice(record, 'avg'):.3f} "
              f"(train {record['train_s'] / 60:.1f} min, eval {record['eval_s'] / 60:.1f} min)",
              flush=True)
        report(args, data_root, plan, time.perf_counter() - started, floor)
    text = report(args, data_root, plan, time.perf_counter() - started, floor)
    print("\n" + text + f"\nwall time of this invocation: "
          f"{(time.perf_counter() - started) / 60:.1f} min", flush=True)
    if stopped or missing_runs(args, plan):
        sys.exit(3)


if __name__ == "__main__":
    main()
