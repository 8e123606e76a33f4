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
==================  ==========================================================================

Every model is scored on the five PraNet test sets with the paper protocol
(:func:`kdas_lite.evaluate.evaluate`: inputs at the model's training size, metrics at each
mask's native resolution); each set carries its status label (CVC-300 inferred, ETIS a subset).

The run is incremental: each finished run writes ``<out>/results/<run>.json`` (config, table,
wall times, history) and is skipped when the same command runs again (a record made with other
settings stops the script); an interrupted training resumes from its last completed epoch;
``--budget-minutes`` stops before a run that would not finish in time. The runs go in order of
importance: the headline rows for every seed first, then the baselines, then the α sweep. After
every run the tables are rewritten to ``<out>/results.md``, the block between the
``real-lab`` markers of ``--docs`` (docs/RESULTS.md) and ``--json`` (docs/results/real_lab.json).

Usage (the command of docs/RESULTS.md; the defaults are its settings)::

    .venv/bin/python benchmarks/real_lab.py --threads 1
    # pipeline check at a tiny size (a few minutes; writes nothing under docs/)
    .venv/bin/python benchmarks/real_lab.py --dry-run --out /tmp/real-lab-dry
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
from lab_experiment import Row, floor_scores, machine, record_done, save_json, spread

from kdas_lite.config import TrainConfig, encoder_pair, get_preset
from kdas_lite.data import TEST_SETS, find_layout, find_shared_data
from kdas_lite.evaluate import evaluate
from kdas_lite.train import distill, train_teacher

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
}
PHASES: list[list[str]] = [  # run order: each phase for every seed before the next phase
    ["alone", "sgm", "at", "kdas", "cwd"],
    ["kdas-fixed", "alone-x0.7", "pixel"],
    ["kdas-a0.1", "kdas-a0.5", "alone-x0.5"],
    ["kdas-fixed-a0.1", "kdas-fixed-a0.5"],
]
START = "<!-- real-lab: begin (written by benchmarks/real_lab.py) -->"
END = "<!-- real-lab: end -->"


# ---------------------------------------------------------------------------------------------
# Configs and runs
# ---------------------------------------------------------------------------------------------
def run_name(row: str, seed: int | None) -> str:
    """``teacher`` (one model for every seed) or ``seed<S>/<row>``."""
    return "teacher" if row == "teacher" else f"seed{seed}/{row}"


def run_config(args: argparse.Namespace, data_root: Path, row: str, seed: int) -> TrainConfig:
    """The cpu-lab preset with the offline pair; students differ only in their row's switches
    (and the seed); the teacher has its own size, epochs, image counts and seed."""
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
        device="cpu", **{"alpha": ALPHA, **ROWS[row].overrides})


def run_one(args: argparse.Namespace, data_root: Path, row: str, seed: int) -> dict[str, Any]:
    """Train and evaluate one run; write and return its record."""
    config = run_config(args, data_root, row, seed)
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
    record = {
        "row": row, "label": ROWS[row].label, "seed": None if row == "teacher" else seed,
        "resumed": resumed, "train_s": train_s, "eval_s": time.perf_counter() - start,
        "best_epoch": result.best_epoch, "best_val_dice": result.best_val_dice,
        "table": table.to_dict(), "average": table.average(), "config": config.to_dict(),
        "image_dice": table.image_dice,
        "history": result.history,
    }
    save_json(args.out / "results" / f"{run_name(row, seed)}.json", record)
    return record


def teacher_checkpoint(args: argparse.Namespace) -> Path:
    return args.out / "runs" / "teacher" / "teacher" / "best.pth"


def load_records(out: Path) -> list[dict[str, Any]]:
    """Every finished run under ``out``, the teacher first."""
    paths = sorted((out / "results").glob("teacher.json")) + sorted(
        (out / "results").glob("seed*/*.json"))
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


# ---------------------------------------------------------------------------------------------
# Statistics and reports (pure: records in, numbers and text out)
# ---------------------------------------------------------------------------------------------
def mdice(record: dict[str, Any], test_set: str) -> float:
    """mDice of one run on one test set, or its image-weighted average for ``"avg"``."""
    if test_set == "avg":
        return record["average"]["meanDic"]
    return record["table"]["datasets"][test_set]["meanDic"]


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
                deltas[test_set] = {
                    "per_seed": {str(s): d for s, d in sorted(per_seed.items())},
                    "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else None}
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
    heads = ["avg (all images)" if s == "avg" else labels.get(s, s) for s in sets]
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
    lines += ["", "The same differences seed by seed (Kvasir; average over all test images):",
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
    """Write ``<out>/results.md``, and (unless ``--dry-run``) the JSON summary and the
    ``real-lab`` block of ``--docs``; return the Markdown."""
    layout = find_layout(data_root)
    labels = {name: status.label for name, status in layout.status.items()}
    stats = summary(records)
    compute_s = sum(r["train_s"] + r["eval_s"] for r in records)
    speed = {r["row"]: (r["table"]["params"], r["table"]["images_per_s"], r["config"]["image_size"])
             for r in records if r["row"] in ("teacher", "alone")}
    lines = [f"command: `{args.command}`", "",
             f"machine: {machine()}", "",
             f"data: {layout.describe()}", "",
             f"runs finished: {len(records)}; their training + evaluation time: "
             f"{compute_s / 60:.1f} min (this invocation: {wall_s / 60:.1f} min wall)", ""]
    if missing:
        lines += [f"**PARTIAL**: {len(missing)} run(s) not done yet: {', '.join(missing)}. "
                  "Run the same command again to continue.", ""]
    lines.append(markdown_tables(stats, labels))
    sets = [s for s in stats["test_sets"] if s in floor]
    lines += ["", "*Floor* (the trivial map \"every pixel is polyp\"): " + ", ".join(
        f"{labels.get(s, s)} {floor[s][0]:.3f}" for s in sets) + "."]
    for row, (params, ips, size) in speed.items():
        lines.append(f"- {ROWS[row].label}: {params / 1e6:.2f} M parameters, {ips:.1f} images/s "
                     f"on the CPU during its evaluation at {size} px (batch 8; shared machine)")
    notes = [status.caveat for name, status in layout.status.items()
             if name in stats["test_sets"] and status.caveat]
    lines += [""] + [f"- {note}" for note in notes]
    text = "\n".join(lines) + "\n"
    (args.out / "results.md").write_text(text, encoding="utf-8")
    if args.dry_run:
        return text
    save_json(args.json, {
        "question": "does distillation help a small student on real polyp data?",
        "command": args.command, "machine": machine(), "partial": bool(missing),
        "missing": missing, "compute_minutes": round(compute_s / 60, 1),
        "data_root": str(data_root),
        "test_sets": {s: {"label": labels.get(s, s), "status": layout.status[s].status,
                          "pairs": layout.status[s].pairs, "expected": layout.status[s].expected}
                      for s in stats["test_sets"] if s in layout.status},
        "floor_mDice": {s: floor[s][0] for s in sets},
        **stats,
    })
    if args.docs is not None:
        replace_block(args.docs, text)
    return text


def replace_block(path: Path, text: str) -> None:
    """Put ``text`` between the ``real-lab`` markers of ``path`` (warn when they are missing)."""
    doc = path.read_text(encoding="utf-8")
    if START not in doc or END not in doc:
        print(f"warning: {path} has no {START} … {END} block; tables not copied there",
              file=sys.stderr)
        return
    head, rest = doc.split(START, 1)
    path.write_text(head + START + "\n" + text + rest[rest.index(END):], encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/real-lab"), help="output folder")
    parser.add_argument("--data", type=Path, help="PraNet data root (default: the shared data)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
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
    parser.add_argument("--docs", type=Path, default=Path("docs/RESULTS.md"),
                        help="Markdown file whose real-lab block gets the tables")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: rewrite the tables and the JSON from the records")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny settings (64 px, 1 epoch, 16 images, seed 0, 3 rows); "
                        "writes only under --out")
    args = parser.parse_args(argv)
    args.command = shlex.join(["python", "benchmarks/real_lab.py",
                               *(sys.argv[1:] if argv is None else argv)])
    if args.dry_run:
        args.size = args.teacher_size = 64
        args.epochs = args.teacher_epochs = 1
        args.train_images = args.teacher_train_images = 16
        args.val_images, args.seeds, args.rows = 4, [0], ["teacher", "alone", "kdas"]
    return args


def missing_runs(args: argparse.Namespace, plan: list[tuple[str, int]]) -> list[str]:
    """The runs of ``plan`` without a record yet."""
    done = {(r["row"], args.teacher_seed if r["row"] == "teacher" else r["seed"])
            for r in load_records(args.out)}
    return [run_name(row, seed) for row, seed in plan if (row, seed) not in done]


def report(args: argparse.Namespace, data_root: Path, plan: list[tuple[str, int]],
           wall_s: float, floor: dict[str, Any]) -> str:
    """Rewrite every output from the records of this command's rows and seeds."""
    records = [r for r in load_records(args.out)
               if r["row"] == "teacher" or (r["row"] in args.rows and r["seed"] in args.seeds)]
    return write_outputs(args, data_root, records, missing_runs(args, plan), wall_s, floor)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data_root = args.data or find_shared_data()
    if data_root is None or find_layout(data_root).synthetic or not find_layout(data_root).test:
        sys.exit("real_lab.py needs the real PraNet data (TrainDataset + TestDataset): pass "
                 "--data or see datasets/README.md; benchmarks/lab_experiment.py runs on "
                 "synthetic data")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"real data: {find_layout(data_root).describe()}", flush=True)
    floor = floor_scores(data_root)
    plan = [("teacher", args.teacher_seed)] + [
        (row, seed) for phase in PHASES for seed in args.seeds for row in phase
        if row in args.rows]
    stopped = False
    for row, seed in [] if args.report_only else plan:
        if record_done(args.out / "results" / f"{run_name(row, seed)}.json",
                       run_config(args, data_root, row, seed)):
            continue
        records = load_records(args.out)
        same_kind = [r["train_s"] + r["eval_s"] for r in records
                     if ROWS[r["row"]].kind == ROWS[row].kind and not r["resumed"]]
        elapsed = time.perf_counter() - started
        if same_kind and elapsed + statistics.fmean(same_kind) > args.budget_minutes * 60:
            print(f"budget: {run_name(row, seed)} would not end within {args.budget_minutes:g} "
                  "min; stopping. Run the same command again to continue.", flush=True)
            stopped = True
            break
        print(f"[{elapsed / 60:6.1f} min] {run_name(row, seed)}: {ROWS[row].label} ...",
              flush=True)
        record = run_one(args, data_root, row, seed)
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
