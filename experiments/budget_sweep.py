"""Budget sweep of the real-data lab: does each method's sign change as the student gets stronger?

The lab's students train 6 epochs (docs/RESULTS.md §1) and are far from converged.
Segmentation-KD gains are known to shrink or flip as the student's own baseline gets
stronger, so this trains the rows student alone, KDAS, + L_SGM only and CWD for 6, 12 and 24
epochs (``--budgets``; same 200 images per seed, same 128 px, the learning-rate schedule —
one warm-up epoch, cosine decay — stretched over the run's epochs), 3 seeds each, all
distilled from **one** teacher: the one under ``--out``/runs/teacher, trained here when it
is not there (by default 20 epochs on all training images: the lab's teacher — 15 epochs,
320 images — is not 5 points ahead of the 24-epoch student alone). Its record is copied to
``--records``/teacher.json and every distilled record carries its checksum.

Every run writes a compact record ``--records``/``e<E>/<row>-s<seed>.json`` (committed) and is
skipped when the same command runs again; the 6-epoch runs too are trained here, the student
alone included, so that every budget's rows come from one teacher, one code version and one
environment (the lab's own 6-epoch records were made by an earlier training of the teacher and
an earlier environment: see docs/RESULTS.md). An interrupted training resumes from its last
epoch; ``--budget-minutes`` stops before a run that would not end in time. Runs go budget by
budget, seed by seed (a partial sweep stays balanced); ``--budgets``, ``--seeds`` and
``--rows`` split the sweep over processes that share the cores. After every run ``--json`` is
rewritten: per budget and row, the per-seed mDice and the paired Δ against the student alone
of the same budget and seed, with 95 % t-intervals (:mod:`kdas_lite.lab_results`), the
student-alone and teacher levels, and whether the teacher is ≥ 5 mDice points above the
strongest student alone on Kvasir at the largest budget measured; the table and the generated
reading go between the ``--block`` markers of ``--docs``. ``--compare`` names the same sweep
from another teacher (same students alone): the block then adds, per method and budget, the
paired Δ between the two teachers. ``--figure`` draws paired Δ (Kvasir and all images)
against epochs with the intervals.

Usage::

    # the sweep (trains its own teacher first, ~30 min on two threads)
    KDAS_DATA=../shared/data .venv/bin/python experiments/budget_sweep.py --threads 1 \\
        --figure docs/results/budget_sweep.png \\
        --compare docs/results/budget_sweep_lab_teacher.json
    # the same sweep from the lab's teacher (real_lab.py's --out)
    KDAS_DATA=../shared/data .venv/bin/python experiments/budget_sweep.py --threads 1 \\
        --out runs/real-lab --teacher-epochs 15 --teacher-train-images 320 \\
        --records docs/results/budget_runs_lab_teacher \\
        --json docs/results/budget_sweep_lab_teacher.json --block budget-sweep-lab-teacher \\
        --figure docs/results/budget_sweep_lab_teacher.png

Records distilled from another teacher than the one under ``--out`` stop the sweep (their
checksums differ): one sweep, one teacher. The student alone needs no teacher: its records
serve every teacher's sweep of the same budgets and seeds.
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
from lab_experiment import save_json
from real_lab_runs import (
    ROWS,
    compact,
    run_config,
    run_done,
    run_one,
    teacher_checkpoint,
)
from real_lab_summary import (
    check_pairing,
    mdice,
    n_distinct,
    replace_block,
    teacher_overlap,
)

from kdas_lite.data import TEST_SETS, find_layout, find_shared_data
from kdas_lite.data.io import file_sha256
from kdas_lite.lab_results import (
    annotate_sweep,
    sweep_reading,
    sweep_tests,
    t_interval,
    teacher_strength_reading,
)
from kdas_lite.lab_stats import distinct_sets
from kdas_lite.viz import budget_sweep_figure

SWEEP_ROWS = ["alone", "kdas", "sgm", "cwd"]
#: the rows' names in the JSON and the figure (notebook 04's names and colours)
LABELS = {"alone": "student alone", "kdas": "KDAS", "sgm": "+L_SGM", "cwd": "CWD"}
SETS = ["Kvasir", "avg"]


def markers(block: str) -> tuple[str, str]:
    """The begin / end markers of the ``block`` section of ``--docs``."""
    return (f"<!-- {block}: begin (written by experiments/budget_sweep.py) -->",
            f"<!-- {block}: end -->")


def lab_args(args: argparse.Namespace, epochs: int | None) -> argparse.Namespace:
    """The real_lab.py settings of one budget: its defaults with ``epochs`` and the sweep's
    teacher settings; the runs go under ``<out>/e<E>`` (``epochs`` None: the teacher's, under
    ``<out>``)."""
    from real_lab import parse_args

    where = [] if epochs is None else [f"e{epochs}"]
    lab = parse_args(["--out", str(args.out.joinpath(*where)),
                      "--records", str(args.records.joinpath(*where)),
                      "--teacher-epochs", str(args.teacher_epochs),
                      "--teacher-train-images", str(args.teacher_train_images)])
    if epochs is not None:
        lab.epochs = epochs
    return lab


def check_teacher(args: argparse.Namespace, teacher: Path, plan: list[tuple[int, int, str]]
                  ) -> None:
    """Stop when a record under ``--records`` was distilled from another teacher than the one
    under ``--out`` (its checksum differs): one sweep, one teacher."""
    sha = file_sha256(teacher)
    paths = [args.records / "teacher.json"] + [sweep_record_path(args, e, r, s)
                                               for e, s, r in plan if r != "alone"]
    for path in paths:
        if path.exists():
            recorded = json.loads(path.read_text(encoding="utf-8")).get("teacher_sha256")
            if recorded not in (None, sha):
                sys.exit(f"budget_sweep.py: error: {path} was made with another teacher than "
                         f"{teacher} (checksum {recorded[:12]} vs {sha[:12]}): give this "
                         "teacher its own --records and --json")


def sweep_record_path(args: argparse.Namespace, epochs: int, row: str, seed: int) -> Path:
    return args.records / f"e{epochs}" / f"{row}-s{seed}.json"


def summary(args: argparse.Namespace) -> dict[str, Any]:
    """Per budget: each row's per-seed mDice and its paired Δ against the student alone."""
    out: dict[str, Any] = {}
    for epochs in args.budgets:
        runs: dict[str, dict[int, dict[str, Any]]] = {}
        for row in SWEEP_ROWS:
            for seed in args.seeds:
                path = sweep_record_path(args, epochs, row, seed)
                if path.exists():
                    runs.setdefault(row, {})[seed] = json.loads(path.read_text(encoding="utf-8"))
        rows = {}
        for row, by_seed in runs.items():
            entry: dict[str, Any] = {"seeds": sorted(by_seed), "mDice": {
                s: {str(seed): mdice(r, s) for seed, r in sorted(by_seed.items())} for s in SETS}}
            if row != "alone":
                entry["delta_vs_alone"] = {}
                for s in SETS:
                    per_seed = {seed: mdice(r, s) - mdice(runs["alone"][seed], s)
                                for seed, r in by_seed.items() if seed in runs.get("alone", {})}
                    if per_seed:
                        iv = t_interval(list(per_seed.values()))
                        entry["delta_vs_alone"][s] = {
                            "per_seed": {str(k): v for k, v in sorted(per_seed.items())},
                            "mean": iv.mean,
                            "ci95_t": None if iv.lo is None else [iv.lo, iv.hi]}
            rows[row] = entry
        out[str(epochs)] = rows
    return out


def teacher_check(args: argparse.Namespace, budgets: dict[str, Any]) -> dict[str, Any] | None:
    """The teacher's Kvasir mDice and its margin over the strongest student alone (the
    largest budget with student-alone runs)."""
    teacher = args.records / "teacher.json"
    measured = [e for e in budgets if budgets[e].get("alone")]
    if not teacher.exists() or not measured:
        return None
    kvasir = mdice(json.loads(teacher.read_text(encoding="utf-8")), "Kvasir")
    epochs = max(measured, key=int)
    alone = budgets[epochs]["alone"]["mDice"]["Kvasir"]
    margin = kvasir - statistics.fmean(alone.values())
    return {"teacher_kvasir": kvasir, "at_epochs": int(epochs),
            "alone_kvasir_mean": statistics.fmean(alone.values()), "margin": margin,
            "clearly_ahead": margin >= 0.05}


def markdown(doc: dict[str, Any], other: dict[str, Any] | None = None) -> str:
    """The budget-sweep block of docs/RESULTS.md: per budget and row the mean mDice and the
    paired Δ against the student alone with its 95 % t-interval, then the generated reading;
    with ``other`` (the same sweep from another teacher, ``--compare``), the generated
    teacher-strength reading too."""
    lines = [f"command: `{doc['command']}`", ""]
    if doc["partial"]:
        lines += [f"**PARTIAL**: {len(doc['missing'])} run(s) not done yet: "
                  f"{', '.join(doc['missing'])}. Run the same command again to continue.", ""]
    prov = doc.get("provenance") or {}
    lines += [f"Provenance ({prov.get('status', 'unknown')}): teacher checksum "
              + (f"`{prov['teacher_sha256'][:12]}…`" if prov.get("teacher_sha256") else
                 "**unknown**") + "; environment " + (
                  "; ".join(f"{k} {v}" for k, v in prov["environment"].items())
                  if prov.get("environment") else "**unknown** ("
                  + prov.get("environment_evidence", "library versions not recorded") + ")")
              + ".", ""]
    overlap = doc.get("teacher_overlap")
    if overlap:
        lines += [f"Training images each seed's students share with the teacher's "
                  f"{overlap['teacher_train_images']}: " + ", ".join(
                      f"seed {k} {v} of {overlap['student_train_images']}"
                      for k, v in overlap["shared_per_seed"].items()) + ".", ""]
    tests = sweep_tests(doc)
    lines += ["| epochs | row | seeds | mDice Kvasir | mDice all distinct images | "
              "Δ Kvasir [95 % t] (p, Holm) | Δ all distinct images [95 % t] (p, Holm) |",
              "|---:|---|---:|---:|---:|---:|---:|"]
    for epochs, rows in sorted(doc["budgets"].items(), key=lambda item: int(item[0])):
        for row in SWEEP_ROWS:
            if row not in rows:
                continue
            entry = rows[row]
            cells = [f"{statistics.fmean(entry['mDice'][s].values()):.3f}" for s in SETS]
            for s in SETS:
                test = tests.get((row, int(epochs), s))
                cells.append("—" if test is None else f"{test.format()} ({test.format_p()})")
            lines.append(f"| {epochs} | {doc['labels'][row]} | {len(entry['seeds'])} | "
                         + " | ".join(cells) + " |")
    if doc.get("all_images"):
        lines += ["", f"*All distinct images*: {doc['all_images']}."]
    lines += ["", "Generated reading (`kdas_lite.lab_results.sweep_reading`; verdicts follow "
              "the Holm-adjusted p within this sweep):", "", sweep_reading(doc)]
    if other is not None:
        lines += ["", f"Against the same sweep from another teacher (`{doc['compared_with']}`; "
                  "`kdas_lite.lab_results.teacher_strength_reading`):", "",
                  teacher_strength_reading(doc, other)]
    return "\n".join(lines) + "\n"


def sweep_records(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The sweep's teacher record and every run record of its budgets, rows and seeds."""
    paths = [args.records / "teacher.json"] + [
        sweep_record_path(args, e, r, s) for e in args.budgets for s in args.seeds
        for r in SWEEP_ROWS]
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths if p.exists()]


def write(args: argparse.Namespace, missing: list[str]) -> dict[str, Any]:
    budgets = summary(args)
    teacher = teacher_check(args, budgets)
    records = sweep_records(args)
    data_root = find_shared_data()
    doc = {"question": "does each method's sign change as the student gets stronger?",
           "command": args.command, "labels": LABELS, "budgets": budgets,
           "teacher_check": teacher,
           "seeds": args.seeds, "partial": bool(missing), "missing": missing,
           "data_root": "shared/data", "all_images": args.all_images,
           "n_distinct_images": getattr(args, "n_distinct", None),
           "family": f"sweep ({args.block})",
           "provenance": check_pairing(records, str(args.records)),
           "teacher_overlap": None if data_root is None or not hasattr(args, "out") else
           teacher_overlap(lab_args(args, None), data_root, records)}
    other = None
    if args.compare is not None:
        doc["compared_with"] = args.compare.as_posix()
        other = json.loads(args.compare.read_text(encoding="utf-8"))
    annotate_sweep(doc, other)
    save_json(args.json, doc)
    if args.docs is not None:
        replace_block(args.docs, markdown(doc, other), *markers(args.block))
    if args.figure is not None and any(r != "alone" for rows in budgets.values() for r in rows):
        fig = budget_sweep_figure(doc, compare=other)
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=120)
    return doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/budget-sweep"),
                        help="real_lab.py's --out: its teacher is used, or trained there "
                        "with --teacher-epochs / --teacher-train-images when it has none")
    parser.add_argument("--budgets", nargs="+", type=int, default=[6, 12, 24])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--records", type=Path, default=Path("docs/results/budget_runs"))
    parser.add_argument("--json", type=Path, default=Path("docs/results/budget_sweep.json"))
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--docs", type=Path, default=Path("docs/RESULTS.md"),
                        help="Markdown file whose --block section gets the table")
    parser.add_argument("--block", default="budget-sweep",
                        help="name of the <!-- NAME: begin … --> / <!-- NAME: end --> section")
    parser.add_argument("--compare", type=Path, default=None,
                        help="another sweep's JSON (same students alone, another teacher): "
                        "the block adds the paired Δ between the two teachers")
    parser.add_argument("--budget-minutes", type=float, default=600.0)
    parser.add_argument("--rows", nargs="+", choices=SWEEP_ROWS, default=SWEEP_ROWS,
                        help="run only these rows (the student alone needs no teacher, so it "
                        "can run while real_lab.py trains the teacher)")
    parser.add_argument("--teacher-epochs", type=int, default=20,
                        help="the teacher's epochs when it is trained here (the lab's: 15)")
    parser.add_argument("--teacher-train-images", type=int, default=1450,
                        help="its training images when trained here (1450: all of them but "
                        "the 10 %% validation hold-out; the lab's: 320)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    args.command = shlex.join(["python", "experiments/budget_sweep.py", *(
        f"<outside the repository>/{Path(a).name}" if a.startswith("/") else a
        for a in (sys.argv[1:] if argv is None else argv)
        if a != "--report-only")])  # the command that made the runs; no machine path
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data_root = find_shared_data()
    if data_root is None or not find_layout(data_root).test:
        sys.exit("budget_sweep.py: error: no real PraNet data: set KDAS_DATA to its root")
    layout = find_layout(data_root)
    tests = [layout.status[name] for name in TEST_SETS if name in layout.status]
    distinct = distinct_sets([s.name for s in tests])
    args.n_distinct = n_distinct(layout)
    args.all_images = (f"the {args.n_distinct} distinct test images of "
                       + ", ".join(s.label for s in tests if s.name in distinct)
                       + ", pooled (\"avg\" in the JSON); CVC-300 (inferred) is CVC-ColonDB "
                       "frames 149–208, counted once")
    plan = [(e, seed, row) for e in args.budgets for seed in args.seeds for row in SWEEP_ROWS]
    teacher_lab = lab_args(args, None)
    teacher = teacher_checkpoint(teacher_lab)
    if not teacher.exists() and not args.report_only and set(args.rows) - {"alone"}:
        print(f"no teacher under {args.out}: training it ({args.teacher_epochs} epochs, "
              f"{args.teacher_train_images} images)", flush=True)
        run_one(teacher_lab, data_root, "teacher", teacher_lab.teacher_seed,
                run_config(teacher_lab, data_root, "teacher", teacher_lab.teacher_seed))
    full_teacher = args.out / "results" / "teacher.json"
    if teacher.exists() and full_teacher.exists() and not (args.records / "teacher.json").exists():
        save_json(args.records / "teacher.json",
                  compact(json.loads(full_teacher.read_text(encoding="utf-8")), args.out))
    if teacher.exists():
        check_teacher(args, teacher, plan)
    times: list[float] = []
    for epochs, seed, row in [] if args.report_only else plan:
        if row not in args.rows:
            continue
        lab = lab_args(args, epochs)
        config = run_config(lab, data_root, row, seed)
        if run_done(lab, row, seed, config):
            continue
        elapsed = time.perf_counter() - started
        if times and elapsed + statistics.fmean(times) * epochs / 6 > args.budget_minutes * 60:
            print("budget: stopping; run the same command again to continue", flush=True)
            break
        print(f"[{elapsed / 60:6.1f} min] {epochs} epochs, seed {seed}: {ROWS[row].label}",
              flush=True)
        # the students of every budget distil from the one teacher of --out
        lab.out.mkdir(parents=True, exist_ok=True)
        teacher_dir = lab.out / "runs" / "teacher" / "teacher"
        if not teacher_dir.is_symlink() and not teacher_dir.exists():
            teacher_dir.parent.mkdir(parents=True, exist_ok=True)
            teacher_dir.symlink_to(teacher.parent.resolve())
        record = run_one(lab, data_root, row, seed, config)
        times.append((record["train_s"] + record["eval_s"]) * 6 / epochs)
        write(args, missing_of(args, plan))
    doc = write(args, missing_of(args, plan))
    print(json.dumps(doc["teacher_check"], indent=1))
    print(f"wall time: {(time.perf_counter() - started) / 60:.1f} min", flush=True)


def missing_of(args: argparse.Namespace, plan: list[tuple[int, int, str]]) -> list[str]:
    return [f"e{e}/seed{s}/{r}" for e, s, r in plan
            if not sweep_record_path(args, e, r, s).exists()]


if __name__ == "__main__":
    main()
