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
from lab_experiment import floor_scores
from real_lab_runs import (
    EARLIER,
    HEADLINE,
    MECHANISM,
    ROWS,
    equal_grad_weight,
    load_compact,
    load_records,
    needs_teacher,
    record_name,
    run_config,
    run_done,
    run_name,
    run_one,
    save_compact,
)
from real_lab_summary import (
    mdice,
    write_outputs,
)

from kdas_lite.data import find_layout, find_shared_data


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

