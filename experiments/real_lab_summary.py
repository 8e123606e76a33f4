"""The summaries of the real-data CPU lab (experiments/real_lab.py): paired statistics over
seeds (against the student alone of the same seed, on the 562 distinct test images), the
Markdown tables, the JSON summaries and the generated blocks of docs/RESULTS.md, for the lab and
its L_SGM mechanism part. Reads the records :mod:`real_lab_runs` writes; trains nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from lab_experiment import machine, save_json, spread
from real_lab_runs import (
    DATA_LABEL,
    EARLIER_NOTE,
    MECHANISM,
    ROWS,
    portable_config,
    run_config,
)

from kdas_lite.data import TEST_SETS, find_layout
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
from kdas_lite.training_data import training_split

START = "<!-- real-lab: begin (written by experiments/real_lab.py) -->"
END = "<!-- real-lab: end -->"
MECH_START = "<!-- sgm-mechanism: begin (written by experiments/real_lab.py) -->"
MECH_END = "<!-- sgm-mechanism: end -->"


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


