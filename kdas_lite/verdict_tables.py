"""Where the verdict comes from: notebook 04's tables and readings of the committed runs.

:mod:`kdas_lite.verdict` states the verdict; this module shows the evidence, generated from
the same families (:mod:`kdas_lite.lab_families`, Holm within each) and the same verdict words
(:attr:`~kdas_lite.lab_stats.PairedTest.verdict`):

- the lab: :func:`lab_rows_table` (every row, every set, ``*`` where the Holm-adjusted p is
  below 0.05) and :func:`exercise3_answer` (seen vs unseen sets);
- this run beside the lab: :func:`run_reading` (:func:`regime_note`, :func:`live_lines`,
  :func:`lab_set_lines`, :func:`time_note`) and :func:`full_lab_plan`;
- the sweeps and the teacher comparison: :func:`sweep_table`, :func:`teacher_table`;
- L_SGM's mechanism: :func:`mechanism_table`, :func:`sgm_form_reading` (σ(P) form beside the
  logit form) and :func:`lost_polyp_table` (where + L_SGM loses the polyp);
- the transfer set: :func:`transfer_reading` (what has run, the split, the reading and the
  tables of :mod:`kdas_lite.transfer_results`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kdas_lite.course_text import SEEN_SETS
from kdas_lite.lab_families import (
    lab_tests,
    mechanism_tests,
    sweep_rows,
    sweep_tests,
    teacher_tests,
    trend_tests,
)
from kdas_lite.lab_results import all_images_label, mechanism_effect, paired_intervals, set_labels
from kdas_lite.lab_stats import PairedTest
from kdas_lite.transfer_results import markdown, paired, progress, reading
from kdas_lite.verdict import HEADLINE, and_join, named_teacher

__all__ = [
    "REGIME_KEYS",
    "exercise3_answer",
    "full_lab_plan",
    "lab_rows_table",
    "lab_set_lines",
    "live_lines",
    "lost_polyp_table",
    "mechanism_table",
    "regime_note",
    "row_labels",
    "run_reading",
    "sgm_form_reading",
    "sweep_table",
    "teacher_table",
    "time_note",
    "transfer_reading",
]

#: The settings that make a run the lab's regime (compared by :func:`regime_note`).
REGIME_KEYS = ("teacher_encoder", "student_encoder", "pretrained", "image_size", "epochs",
               "max_train_images", "batch_size")


def row_labels(lab: Mapping[str, Any]) -> dict[str, str]:
    """Row → its label as the summary records it (the forest plot's rows)."""
    return {row: info.get("label", row) for row, info in lab["rows"].items()}


def _cell(test: PairedTest | None) -> str:
    """``+0.084 [-0.036, +0.204] · Holm 1.00``, bold where the adjusted p is below 0.05."""
    if test is None:
        return "—"
    holm = "—" if test.p_holm is None else f"{test.p_holm:.3f}"
    return (f"**{test.format()}**" if test.sign else test.format()) + f" · Holm {holm}"


def _set_name(doc: Mapping[str, Any], test_set: str,
              labels: Mapping[str, str] | None = None) -> str:
    return all_images_label(dict(doc)) if test_set == "avg" else (labels or {}).get(test_set,
                                                                                    test_set)


# ---------------------------------------------------------------------------------------------
# The lab
# ---------------------------------------------------------------------------------------------
def lab_rows_table(lab: Mapping[str, Any]) -> str:
    """Markdown: **every** row of the lab summary (its own labels), per test set the mean paired
    Δ against the student alone with its 95 % t-interval, ``*`` where the Holm-adjusted p of the
    lab family is below 0.05 (the teacher is outside the family: its interval alone); the rows
    kept from earlier runs name their teacher."""
    labels, tests = set_labels(dict(lab)), lab_tests(dict(lab))
    sets = [s for s in lab["test_sets"] if s != "avg"] + ["avg"]
    lines = ["| lab row | seeds | " + " | ".join(labels.get(s, s) for s in sets) + " |",
             "| --- | ---: |" + " ---: |" * len(sets)]
    for row, info in lab["rows"].items():
        if row == "alone":
            continue
        ivs = paired_intervals(dict(lab), row)
        n = max((iv.n for iv in ivs.values()), default=0)
        cells = [(tests[(row, s)].format() + ("*" if tests[(row, s)].sign else ""))
                 if (row, s) in tests else ivs[s].format() if s in ivs else "—" for s in sets]
        name = info.get("label", row) + (
            f" (earlier runs, from the {named_teacher(lab, 'teacher of 2026-12-01', True)})"
            if info.get("rerun") is False else "")
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def exercise3_answer(lab: Mapping[str, Any], rows: Sequence[str] = HEADLINE) -> str:
    """The answer to notebook 04's exercise 3, from the lab's own numbers: per headline row,
    its mean Δ over the seen sets (:data:`~kdas_lite.course_text.SEEN_SETS`) and over the
    unseen ones, beside the teacher's own lead over the student alone on each group."""
    def group_mean(row: str, seen: bool) -> float | None:
        ivs = paired_intervals(dict(lab), row)
        vals = [iv.mean for s, iv in ivs.items() if s != "avg" and (s in SEEN_SETS) == seen]
        return statistics.fmean(vals) if vals else None
    parts, gains = [], {}
    for row in rows:
        if row not in lab["rows"]:
            continue
        seen, unseen = group_mean(row, True), group_mean(row, False)
        if seen is None or unseen is None:
            continue
        least = "seen" if abs(seen) < abs(unseen) else "unseen"
        parts.append(f"{lab['rows'][row].get('label', row)} {seen:+.3f} on the seen sets, "
                     f"{unseen:+.3f} on the unseen ones (smaller effect on the {least})")
        if seen > 0 and unseen > 0:
            gains[lab["rows"][row].get("label", row)] = "seen" if seen < unseen else "unseen"
    text = "Mean Δ per group of sets: " + "; ".join(parts) + "."
    if "teacher" in lab["rows"]:
        seen, unseen = group_mean("teacher", True), group_mean("teacher", False)
        if seen is not None and unseen is not None:
            more = "unseen" if unseen > seen else "seen"
            text += (f" The {named_teacher(lab, 'lab teacher')} leads the student alone by "
                     f"{seen:+.3f} on the seen sets and {unseen:+.3f} on the unseen ones: it "
                     f"has more to give on the {more} sets, which is where a method that only "
                     "imitates it can gain most. (The unseen group counts CVC-ColonDB and "
                     "CVC-300, its frames 149–208, as two sets: not independent evidence.)")
    for where in ("seen", "unseen"):
        names = [name for name, least in gains.items() if least == where]
        if names:
            text += (f" **So in this lab the methods that gain on both groups "
                     f"({and_join(names)}) gain least on the {where} sets.** These are means, "
                     "not tests: the table's `*` says which survive Holm.")
    return text


# ---------------------------------------------------------------------------------------------
# Notebook 04's own run beside the lab
# ---------------------------------------------------------------------------------------------
def full_lab_plan(lab: Mapping[str, Any]) -> tuple[list[str], list[int]]:
    """The rows and seeds that ``full_lab = True`` re-trains: the lab's re-run student rows
    (``rerun_rows`` without the teacher) and the student alone's seeds, as the summary holds
    them."""
    rows = [r for r in lab.get("rerun_rows", lab["rows"]) if r != "teacher" and r in lab["rows"]]
    seeds = [int(r["seed"]) for r in lab["rows"]["alone"]["runs"]]
    return rows, seeds


def regime_note(lab: Mapping[str, Any], config: Any) -> str:
    """Whether ``config`` (a :class:`~kdas_lite.config.TrainConfig`) trains the lab's regime
    (:data:`REGIME_KEYS`, compared with the lab's student alone's settings)."""
    lab_config = lab["rows"]["alone"]["runs"][0]["config"]
    differ = [f"`{k}` {lab_config.get(k)!r} in the lab, {getattr(config, k)!r} here"
              for k in REGIME_KEYS if lab_config.get(k) != getattr(config, k)]
    if not differ:
        return ("**Regime.** This run trains the lab's regime; its numbers differ from the lab's "
                "only by seed-to-seed noise and machine.")
    return ("**Regime.** This run is **not** the lab's regime (" + "; ".join(differ)
            + "): compare the two only qualitatively.")


def live_lines(lab: Mapping[str, Any], scores: Mapping[str, Sequence[float]],
               teacher_score: float, test_set: str, label: str,
               lab_row_of: Callable[[str], str | None]) -> list[str]:
    """One line per variant of this run: its paired Δ against this run's student alone, beside
    the lab's test of the same row on ``test_set`` (interval, raw and Holm p, verdict, range of
    seeds). ``label`` names this runtime's ``test_set``; the lab's values carry the lab's own
    label (:func:`~kdas_lite.lab_results.set_labels`: the data they were computed on)."""
    if "student alone" not in scores:
        return []
    tests = lab_tests(dict(lab))
    alone = [float(x) for x in scores["student alone"]]
    teacher = paired_intervals(dict(lab), "teacher").get(test_set) if "teacher" in lab["rows"] \
        else None
    lines = [f"- *Teacher*: {teacher_score:.3f} on {label}, "
             f"{teacher_score - statistics.fmean(alone):+.3f} above the student alone here"
             + (f"; lab {teacher.format()}." if teacher else ".")]
    for name, values in scores.items():
        if name == "student alone":
            continue
        d = [float(v) - a for v, a in zip(values, alone, strict=True)]
        mean = statistics.fmean(d)
        line = f"- *{name}*: {mean:+.3f}" + (
            f", positive on {sum(x > 0 for x in d)} of {len(d)} seeds" if len(d) > 1
            else " (one seed)") + " vs the student alone here"
        row = lab_row_of(name)
        t = tests.get((row, test_set)) if row else None
        if t is not None:
            per_seed = list(lab["rows"][row]["delta_vs_alone"][test_set]["per_seed"].values())
            inside = min(per_seed) <= mean <= max(per_seed)
            line += (f"; lab on {set_labels(dict(lab)).get(test_set, test_set)} {t.format()} "
                     f"({t.format_p()}): {t.verdict}, positive on "
                     f"{sum(v > 0 for v in per_seed)} of {len(per_seed)} seeds; this run lies "
                     f"{'inside' if inside else 'outside'} the lab's range of seeds "
                     f"[{min(per_seed):+.3f}, {max(per_seed):+.3f}]")
        lines.append(line + ".")
    return lines


def lab_set_lines(lab: Mapping[str, Any], rows: Sequence[str] = ("sgm", "kdas", "cwd")
                  ) -> list[str]:
    """Per headline row of the lab: its lowest and highest mean Δ over the test sets (labels
    from the summary) and its all-images test with its verdict."""
    labels, tests = set_labels(dict(lab)), lab_tests(dict(lab))
    lines = []
    for row in rows:
        mine = {s: t for (r, s), t in tests.items() if r == row and s != "avg"}
        if not mine:
            continue
        low = min(mine, key=lambda s: mine[s].mean)
        high = max(mine, key=lambda s: mine[s].mean)
        every = tests.get((row, "avg"))
        lines.append(f"- Lab, {lab['rows'][row].get('label', row)} on every test set: lowest Δ "
                     f"on {labels.get(low, low)} ({mine[low].mean:+.3f}), highest on "
                     f"{labels.get(high, high)} "
                     f"({mine[high].mean:+.3f})"
                     + (f"; on {labels['avg']} {every.format()} ({every.format_p()}): "
                        f"{every.verdict}." if every else "."))
    return lines


def time_note(lab: Mapping[str, Any], minutes_here: Sequence[float]) -> str:
    """This run's training minutes per run beside the lab's (its ``machine``)."""
    lab_min = [r["train_s"] / 60 for row, info in lab["rows"].items() if row != "teacher"
               for r in info["runs"] if "train_s" in r]
    return (f"**Time.** Each run trained in {min(minutes_here):.1f}–{max(minutes_here):.1f} min "
            f"here ({len(minutes_here)} runs, this machine); the lab's runs took "
            f"{min(lab_min):.1f}–{max(lab_min):.1f} min "
            f"({lab.get('machine') or 'machine not recorded'}).")


def run_reading(lab: Mapping[str, Any], config: Any, scores: Mapping[str, Sequence[float]],
                teacher_score: float, test_set: str, label: str,
                lab_row_of: Callable[[str], str | None], minutes_here: Sequence[float]) -> str:
    """Notebook 04 section 7: this run read beside the committed lab (Markdown):
    :func:`regime_note`, :func:`live_lines`, :func:`lab_set_lines` and :func:`time_note`."""
    return "\n".join([regime_note(lab, config), "",
                      *live_lines(lab, scores, teacher_score, test_set, label, lab_row_of), "",
                      *lab_set_lines(lab), "", time_note(lab, minutes_here)])


# ---------------------------------------------------------------------------------------------
# The sweeps and the teacher comparison
# ---------------------------------------------------------------------------------------------
def sweep_table(sweep: Mapping[str, Any], name: str = "sweep teacher") -> str:
    """Markdown: one budget sweep — per method and set, its paired Δ against the student alone
    of each budget (:func:`~kdas_lite.lab_families.sweep_tests`) and its trend Δ(last) −
    Δ(first) (:func:`~kdas_lite.lab_families.trend_tests`), with the Holm-adjusted p of each
    family (bold where below 0.05); the teacher named by its Kvasir mDice."""
    doc = dict(sweep)
    tests, trends = sweep_tests(doc), trend_tests(doc)
    budgets = sorted({e for _, e, _ in tests})
    sets = list(dict.fromkeys(s for _, _, s in tests))
    check = sweep.get("teacher_check") or {}
    ahead = "" if check.get("clearly_ahead", True) else (
        f"; this teacher is **not** clearly ahead of the student alone at "
        f"{check['at_epochs']} epochs ({check['margin']:+.3f} on Kvasir)")
    lines = [f"From the {named_teacher(sweep, name)}{ahead}; {len(tests)} comparisons, "
             f"{len(trends)} trends (two families, Holm within each):", "",
             "| method | set | " + " | ".join(f"{e} epochs" for e in budgets)
             + f" | trend Δ({budgets[-1]}) − Δ({budgets[0]}) |",
             "| --- | --- |" + " ---: |" * (len(budgets) + 1)]
    for s in sets:
        levels = []
        for e in budgets:
            alone = sweep["budgets"][str(e)].get("alone", {}).get("mDice", {}).get(s)
            levels.append(f"{statistics.fmean(alone.values()):.3f}" if alone else "—")
        lines.append(f"| student alone (level) | {_set_name(sweep, s)} | " + " | ".join(levels)
                     + " | |")
    for row in sweep_rows(doc):
        for s in sets:
            label = sweep.get("labels", {}).get(row, row)
            lines.append(f"| {label} | {_set_name(sweep, s)} | "
                         + " | ".join(_cell(tests.get((row, e, s))) for e in budgets)
                         + f" | {_cell(trends.get((row, s)))} |")
    return "\n".join(lines)


def teacher_table(sweep: Mapping[str, Any], weaker: Mapping[str, Any]) -> str:
    """Markdown: each student distilled from ``sweep``'s teacher minus itself distilled from
    ``weaker``'s, per method, set and budget, with the Holm-adjusted p of the teacher
    comparison (:func:`~kdas_lite.lab_families.teacher_tests`)."""
    tests = teacher_tests(dict(sweep), dict(weaker))
    budgets = sorted({e for _, e, _ in tests})
    lines = [f"The {named_teacher(sweep, 'sweep teacher')} minus the "
             f"{named_teacher(weaker, 're-trained lab teacher')}, each student against itself; "
             f"{len(tests)} comparisons:", "",
             "| method | set | " + " | ".join(f"{e} epochs" for e in budgets) + " |",
             "| --- | --- |" + " ---: |" * len(budgets)]
    for row in sweep_rows(dict(sweep)):
        for s in dict.fromkeys(s for _, _, s in tests):
            lines.append(f"| {sweep.get('labels', {}).get(row, row)} | {_set_name(sweep, s)} | "
                         + " | ".join(_cell(tests.get((row, e, s))) for e in budgets) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# L_SGM's mechanism, from the committed runs
# ---------------------------------------------------------------------------------------------
def mechanism_table(mech: Mapping[str, Any], test_set: str = "avg",
                    labels: Mapping[str, str] | None = None) -> str:
    """Markdown: each mechanism row against + L_SGM and against the student alone on
    ``test_set`` (:func:`~kdas_lite.lab_families.mechanism_tests`, Holm within the mechanism),
    and what the change does to the harm
    (:func:`~kdas_lite.lab_results.mechanism_effect`: "removes" needs equivalence with the
    student alone)."""
    tests = mechanism_tests(dict(mech))
    lines = [f"From the {named_teacher(mech, 'mechanism teacher')}; {len(tests)} comparisons; "
             f"{_set_name(mech, test_set, labels)}:", "",
             "| row | Δ vs + L_SGM | Δ vs the student alone | after Holm |",
             "| --- | ---: | ---: | --- |"]
    for row, info in mech["rows"].items():
        if row == "alone":
            continue
        vs_sgm, vs_alone = tests.get(("sgm", row, test_set)), tests.get(("alone", row, test_set))
        if row == "sgm":
            effect = f"{vs_alone.verdict} (vs the student alone)" if vs_alone else "—"
        else:
            effect = mechanism_effect(vs_sgm, vs_alone) + " on the harm" * (
                vs_sgm is not None and not vs_sgm.sign)
        lines.append(f"| {info.get('label', row)} | {_cell(vs_sgm)} | {_cell(vs_alone)} | "
                     f"{effect} |")
    return "\n".join(lines)


def sgm_form_reading(mech: Mapping[str, Any]) -> str:
    """The σ(P) form of L_SGM beside the logit form, from the mechanism rows: each against the
    student alone on all distinct images, and σ(P) against + L_SGM, with raw and Holm-adjusted
    p (mechanism family); the teacher's and the student's mean logits on polyp pixels from the
    map statistics."""
    tests = mechanism_tests(dict(mech))
    avg = all_images_label(dict(mech))
    lines = []
    maps = (mech.get("map_statistics") or {}).get("per_seed", {})
    if maps:
        fg = {m: statistics.fmean(s["all"]["logits"][f"{m}/p1/fg"]["mean"] for s in maps.values())
              for m in ("teacher", "alone", "sgm")}
        lines.append(f"- On polyp pixels the {named_teacher(mech, 'mechanism teacher')}'s P1 "
                     f"averages {fg['teacher']:+.2f}, the student alone's {fg['alone']:+.2f}, "
                     f"+ L_SGM's {fg['sgm']:+.2f} (mean over {len(maps)} seeds, all test "
                     "images): the logit form asks the student to match values "
                     f"{fg['teacher'] / fg['alone']:.1f}× its own.")
    for row, form in (("sgm", "logit form (the paper's L_SGM)"), ("sgm-prob", "σ(P) form")):
        t = tests.get(("alone", row, "avg"))
        if t is not None:
            lines.append(f"- **{form}** vs the student alone, {avg}: {t.format()} "
                         f"({t.format_p()}) → {t.verdict}.")
    vs_sgm = tests.get(("sgm", "sgm-prob", "avg"))
    if vs_sgm is not None:
        word = {1: "better", -1: "worse"}.get(vs_sgm.sign, vs_sgm.verdict)
        lines.append(f"- σ(P) form vs the logit form, same seeds, {avg}: {vs_sgm.format()} "
                     f"({vs_sgm.format_p()}) → {word} after Holm over the {len(tests)} "
                     "mechanism comparisons.")
    return "\n".join(lines)


def lost_polyp_table(mech: Mapping[str, Any], test_set: str = "all") -> str:
    """Markdown: per seed of ``map_statistics`` (``experiments/sgm_map_stats.py``) and region,
    the share of pixels, the mean change of σ(P1 + P2) from the student alone to + L_SGM, and
    the positive rate at 0.5 of the teacher, the student alone and + L_SGM — where the polyp is
    lost (band: near the polyp's edge; interior: inside it)."""
    maps = mech.get("map_statistics")
    if not maps:
        return "No map statistics in the mechanism summary (experiments/sgm_map_stats.py)."
    lines = [f"Band: within {maps.get('band_px', '?')} px of the polyp's edge at "
             f"{maps.get('size', '?')} px; interior: inside the polyp, beyond the band "
             f"({test_set if test_set != 'all' else 'all test images'}).", "",
             "| seed | region | pixel share | mean Δp (+ L_SGM − alone) | positive rate: "
             "teacher / alone / + L_SGM |", "| ---: | --- | ---: | ---: | --- |"]
    for seed, per_set in maps["per_seed"].items():
        found = per_set[test_set]
        rates = found["error_rates"]
        for region, key in (("band", "positive_rate_band"), ("interior", "fn_rate_interior")):
            r = found["regions"][region]
            values = [rates[m][key] for m in ("teacher", "alone", "sgm")]
            if key.startswith("fn_"):
                values = [1 - v for v in values]  # the interior's positive rate
            lines.append(f"| {seed} | {region} | {r['pixel_share']:.3f} | "
                         f"{r['mean_delta_p']:+.4f} | "
                         + " / ".join(f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines)


def transfer_reading(transfer: Mapping[str, Any] | None) -> str:
    """Notebook 04's transfer-set section (Markdown): what has run of the plan, the split's
    sizes, the generated reading (:func:`kdas_lite.transfer_results.reading`) and every
    family's table (:func:`~kdas_lite.transfer_results.markdown`); or that it has not run."""
    if transfer is None:
        return ("The transfer-set experiment has not been run yet: no "
                "`kdas_lite/lab_data/transfer_set.json` ships with this installation.")
    sizes = ", ".join(f"{name} {sum(counts.values())}"
                      for name, counts in transfer["split_counts"].items())
    parts = [progress(transfer),
             f"Split (`{transfer['split_file']}`, images per list): {sizes}.",
             "**Generated reading** (`kdas_lite.transfer_results.reading`):\n\n"
             + reading(transfer)]
    if not paired(transfer):
        parts.append("No paired contrast yet: a contrast needs the same unit (teacher and "
                     "student seed) in both of its arms.")
    return "\n\n".join([*parts, markdown(transfer)])
