"""Reading the real-data lab: paired differences against the student alone, with intervals.

The lab (``experiments/real_lab.py``, docs/RESULTS.md §1) trains every student row with the
same seeds; its summary ``docs/results/real_lab.json`` holds, per row, the per-seed paired
difference ``Δ_s = mDice(row, seed s) − mDice(student alone, seed s)`` on each test set and on
all test images (``"avg"``). This module turns those into statements a course can defend:

- :func:`paired_intervals`: per test set, the mean Δ over the n seeds with its 95 % Student-t
  interval ``mean ± t_{0.975, n−1} · sd / √n`` (the seeds are the replicates; the interval
  says how much the mean would move with other seeds of the same design).
- :func:`bootstrap_all_images`: for the all-images column, a paired block bootstrap over the
  distinct test images: each image's Δ (its Dice in the row minus in the student alone,
  averaged over the seeds both have) is resampled in circular blocks of :data:`BLOCK`
  consecutive frames *within its test set* (the set sizes stay as designed; ColonDB and
  ClinicDB are video), 95 % percentile interval of the image-weighted mean. It measures the
  uncertainty from *which test images* were scored, given these seeds; it needs the per-run
  records with each image's Dice.
- :func:`interval_table` and :func:`reading`: a Markdown table (intervals with raw and Holm
  p) and a short generated reading (the verdict of each row on each set), so no number about
  the runs is typed by hand.
- :func:`sweep_reading` (``docs/results/budget_sweep.json``): per method, its Δ at each
  student budget with its verdict, and the paired trend test of whether the effect changes as
  the student trains longer;
  :func:`teacher_strength_reading`: the same sweep from a weaker teacher
  (``docs/results/budget_sweep_lab_teacher.json``), paired seed by seed.
- :func:`mechanism_reading` (``docs/results/sgm_mechanism.json``): per change to L_SGM, its
  Δ against + L_SGM and against the student alone, and which property causes the harm.

Every verdict follows the **Holm-adjusted** p within its family (:mod:`kdas_lite.lab_stats`):
:func:`lab_tests` (the lab: every row but the teacher × every test set and all images),
:func:`mechanism_tests` (+ L_SGM and the interventions vs the student alone on every set, the
interventions vs + L_SGM on Kvasir and all images), :func:`sweep_tests` (one sweep: row ×
budget × Kvasir / all images), :func:`trend_tests` (one sweep's trends: ``Δ(largest budget) −
Δ(smallest)`` per row and set, paired by seed) and :func:`teacher_tests` (stronger − weaker
teacher, row × budget × set). "All images" (``"avg"``) is the mean over the distinct test
images (562: CVC-300 is CVC-ColonDB frames 149–208, counted once; ``n_distinct_images``).

Summary schema (``docs/results/*.json``, written by the experiments through
:func:`annotate_lab`, :func:`annotate_mechanism` and :func:`annotate_sweep`). Per row and test
set — ``rows[row]["delta_vs_alone"][set]`` (lab, mechanism), ``rows[row]["delta_vs_sgm"][set]``
(mechanism), ``budgets[epochs][row]["delta_vs_alone"][set]`` (sweep), ``trends[row][set]``
(sweep) and ``teacher_comparison[row][epochs][set]`` (sweep with ``--compare``) — a dict::

    {"per_seed": {"0": Δ, ...},          # absent in teacher_comparison (see the mDice)
     "n": 3, "mean": Δ̄, "ci95_t": [lo, hi],          # 95 % Student-t interval over seeds
     "p": 0.012,                                      # raw two-sided paired-t p
     "p_holm": 0.37, "family": "mechanism", "family_size": 38,   # Holm within the family
     "p_equivalence": 0.4, "p_equivalence_holm": 1.0, "margin": 0.02,   # TOST at ±margin
     "smallest_detectable_effect": 0.09,              # 80 % power at α/family_size
     "verdict": "above" | "below" | "equivalent within ±0.020"
                | "no measurable difference (smallest detectable effect 0.090)"}

and per summary: ``n_distinct_images`` (562), ``family`` (its name), ``provenance``
(``teacher_sha256``, ``environment`` — torch, Python, CPU, the numeric libraries — and
``status``: "recorded", or "unknown" with ``environment_evidence``) and ``teacher_overlap``
(``shared_per_seed``: how many of each seed's training images the teacher trained on).
Readers of older summaries: every field above but ``per_seed`` is recomputed by the functions
here from ``per_seed``, so they need not be present.

Example::

    from kdas_lite.lab_results import load_lab, reading
    print(reading(load_lab("docs/results/real_lab.json")))
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdas_lite.lab_families import (
    SGM_PROPERTIES,
    annotate_lab,
    annotate_mechanism,
    annotate_sweep,
    compared_rows,
    lab_tests,
    mechanism_tests,
    per_seed_against,
    sweep_rows,
    sweep_tests,
    teacher_tests,
    teacher_values,
    trend_per_seed,
    trend_tests,
)
from kdas_lite.lab_stats import (
    PairedTest,
    block_bootstrap,
    distinct_sets,
    format_interval,
    frame_order,
)

__all__ = [
    "BLOCK",
    "SGM_PROPERTIES",
    "Interval",
    "all_images_label",
    "annotate_lab",
    "annotate_mechanism",
    "annotate_sweep",
    "bootstrap_all_images",
    "interval_table",
    "lab_tests",
    "load_lab",
    "load_mechanism",
    "load_records",
    "load_sweep",
    "mechanism_conclusion",
    "mechanism_effect",
    "mechanism_reading",
    "mechanism_tests",
    "paired_against",
    "paired_intervals",
    "reading",
    "same_students_alone",
    "set_labels",
    "sign",
    "sign_trend",
    "sweep_intervals",
    "sweep_reading",
    "sweep_rows",
    "sweep_tests",
    "t_interval",
    "t_quantile",
    "takeaway",
    "teacher_effect",
    "teacher_strength_reading",
    "teacher_tests",
    "trend_per_seed",
    "trend_tests",
]

# Two-sided 95 % Student-t quantiles t_{0.975, df} (the usual table; df > 30 interpolates
# towards the normal 1.960).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
         16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074,
         23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045,
         30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


BLOCK = 25  # frames per block of the image bootstrap (ColonDB, ClinicDB are video frames)


@dataclass(frozen=True)
class Interval:
    """A mean difference and its 95 % interval (``lo``/``hi`` None when ``n`` < 2)."""

    mean: float
    lo: float | None
    hi: float | None
    n: int
    method: str  # "t over seeds" or "bootstrap over test images"

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0."""
        return self.lo is not None and self.hi is not None and (self.lo > 0 or self.hi < 0)

    def format(self, digits: int = 3) -> str:
        """``+0.037 [+0.012, +0.062]`` (the mean alone when there is no interval)."""
        return format_interval(self.mean, self.lo, self.hi, digits)


def t_quantile(df: int) -> float:
    """``t_{0.975, df}``: exact table values for df ≤ 30 (and 40, 60, 120), linear in 1/df
    between them, 1.960 beyond."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be ≥ 1, got {df}")
    if df in _T975:
        return _T975[df]
    if df > 120:
        lo_df, hi_df, hi_t = 120, math.inf, 1.960
    else:
        lo_df = max(k for k in _T975 if k < df)
        hi_df = min(k for k in _T975 if k > df)
        hi_t = _T975[hi_df]
    lo_t = _T975[lo_df]
    w = (1 / lo_df - 1 / df) / (1 / lo_df - (0 if hi_df == math.inf else 1 / hi_df))
    return lo_t + w * (hi_t - lo_t)


def t_interval(values: Sequence[float]) -> Interval:
    """Mean of ``values`` with its 95 % Student-t interval (none for a single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("t_interval needs at least one value")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Interval(mean, None, None, len(values), "t over seeds")
    half = t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, len(values), "t over seeds")


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def load_lab(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The lab summary as a dict, with ``"_path"`` set to where it was read from (the per-run
    records are looked up next to it). Default: the committed ``docs/results/real_lab.json``
    as shipped with the package (:func:`kdas_lite.lab_data.lab_file`), so it loads from any
    working directory and from an installed wheel."""
    if path is None:
        from kdas_lite.lab_data import lab_file

        path = lab_file("real_lab.json").resolve()  # in the source tree: docs/results/
    path = Path(path)
    lab = json.loads(path.read_text(encoding="utf-8"))
    if "rows" not in lab:
        raise ValueError(f"{path} is not a real-lab summary (no 'rows'): written by "
                         "experiments/real_lab.py")
    lab["_path"] = str(path)
    return lab


def _records_dir(lab: dict[str, Any], records: str | os.PathLike[str] | None) -> Path | None:
    if records is not None:
        return Path(records)
    if "_path" in lab and lab.get("records"):
        return Path(lab["_path"]).parent / lab["records"]
    return None


def load_records(records: str | os.PathLike[str], row: str) -> dict[int, dict[str, Any]]:
    """Seed → the per-run record ``<records>/<row>-s<seed>.json`` of every seed present."""
    out = {}
    for path in sorted(Path(records).glob(f"{row}-s*.json")):
        suffix = path.stem[len(row) + 2:]
        if suffix.isdigit():
            out[int(suffix)] = json.loads(path.read_text(encoding="utf-8"))
    return out


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------
def paired_intervals(lab: dict[str, Any], row: str) -> dict[str, Interval]:
    """Test set (and ``"avg"``) → the mean paired Δ of ``row`` against the student alone over
    its seeds, with the 95 % t-interval. Empty for the student alone itself."""
    if row not in lab["rows"]:
        raise KeyError(f"no row {row!r} in the lab summary (rows: {', '.join(lab['rows'])})")
    deltas = lab["rows"][row].get("delta_vs_alone", {})
    return {test_set: t_interval(list(d["per_seed"].values()))
            for test_set, d in deltas.items() if d.get("per_seed")}


def bootstrap_all_images(lab: dict[str, Any], row: str, records: str | os.PathLike[str] |
                         None = None, *, baseline: str = "alone", n_boot: int = 4000,
                         seed: int = 0, block: int = BLOCK) -> Interval | None:
    """Paired block bootstrap over the distinct test images of the all-images Δ of ``row``
    vs ``baseline``.

    Each image's Δ is its Dice in ``row`` minus its Dice in ``baseline``, averaged over the
    seeds both rows have records for; within each test set the images are put in frame order
    (:func:`kdas_lite.lab_stats.frame_order`) and resampled in circular blocks of ``block``
    consecutive frames (ColonDB and ClinicDB are video: neighbouring frames' Δ are
    correlated), ``n_boot`` times; CVC-300 is left out of the pool (it is ColonDB frames
    149–208, :data:`kdas_lite.lab_stats.DUPLICATE_OF`), so the pool is the 562 distinct
    images; the interval is the 2.5 and 97.5 percentiles of the resampled image-weighted
    means. None when the per-image records are missing (rows kept from runs whose records
    were lost).

    Args:
        lab: :func:`load_lab`'s dict (its ``records`` field names the records folder).
        row, baseline: row names.
        records: the records folder, if not the one ``lab`` names.
        n_boot: resamples.
        seed: of the resampling.
        block: frames per block (1: the image-by-image bootstrap).
    """
    folder = _records_dir(lab, records)
    if folder is None or not folder.is_dir():
        return None
    runs, base = load_records(folder, row), load_records(folder, baseline)
    seeds = sorted(set(runs) & set(base))
    if not seeds:
        return None
    order_file = folder / "test_images.json"
    stems = json.loads(order_file.read_text(encoding="utf-8")) if order_file.exists() else {}
    per_set = []
    for test_set in distinct_sets(list(runs[seeds[0]]["image_dice"])):
        diffs = [np.asarray(runs[s]["image_dice"][test_set], dtype=float)
                 - np.asarray(base[s]["image_dice"][test_set], dtype=float) for s in seeds]
        if len({len(d) for d in diffs}) != 1:
            raise ValueError(f"{row} and {baseline} records hold different numbers of "
                             f"{test_set} images")
        mean = np.mean(diffs, axis=0)
        names = stems.get(test_set)
        per_set.append(mean[frame_order(names)] if names and len(names) == len(mean) else mean)
    mean, lo, hi = block_bootstrap(per_set, block=block, n_boot=n_boot, seed=seed)
    return Interval(mean, lo, hi, sum(len(d) for d in per_set),
                    f"block bootstrap over test images ({block} frames)")


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------
def set_labels(lab: dict[str, Any]) -> dict[str, str]:
    """Test set → the label of the data the lab was computed on (its ``test_set_info``, e.g.
    ``"ETIS-LaribPolypDB (20/196)"``), never the current runtime's: a table's columns say what
    its numbers were computed on. ``"avg"`` is ``"all images"``."""
    sets = lab.get("test_set_info") or lab.get("test_sets")
    labels = {s: info.get("label", s) for s, info in sets.items()} if isinstance(sets, dict) \
        else {}
    labels.setdefault("CVC-300", "CVC-300 (inferred)")
    labels.setdefault("ETIS-LaribPolypDB", "ETIS-LaribPolypDB (20/196)")
    labels["avg"] = all_images_label(lab)
    return labels


def all_images_label(doc: dict[str, Any]) -> str:
    """``all 562 distinct images`` (the summary's ``n_distinct_images``; CVC-300 counted once,
    inside CVC-ColonDB), or ``all distinct images`` when the summary does not say."""
    n = doc.get("n_distinct_images")
    return f"all {n} distinct images" if n else "all distinct images"


def _sets(lab: dict[str, Any]) -> list[str]:
    sets = lab.get("test_sets")
    names = list(sets) if isinstance(sets, (dict, list)) else []
    return [s for s in names if s != "avg"] + ["avg"]


def _test_words(tests: Sequence[tuple[str, PairedTest]]) -> str:
    """``Kvasir Δ +0.041 [+0.030, +0.052] (p 0.0012, Holm 0.02)`` for each named test."""
    return "; ".join(f"{name} Δ {t.format()} ({t.format_p()})" for name, t in tests)


def interval_table(lab: dict[str, Any], rows: Sequence[str] | None = None,
                   records: str | os.PathLike[str] | None = None) -> str:
    """Markdown: per row, the seeds, and per test set the mean paired Δ against the student
    alone with its 95 % t-interval over seeds and, under it, the raw and the Holm-adjusted p
    (:func:`lab_tests`); the last column is the block bootstrap over the distinct test images
    of the all-images Δ ("—" without per-image records)."""
    sets, labels = _sets(lab), set_labels(lab)
    tests = lab_tests(lab)
    lines = ["| row | seeds | " + " | ".join(labels.get(s, s) for s in sets)
             + f" | {labels['avg']}, block bootstrap over images |",
             "|---|---:|" + "---:|" * (len(sets) + 1)]
    for row in compared_rows(lab, rows):
        intervals = paired_intervals(lab, row)
        n = max((i.n for i in intervals.values()), default=0)
        boot = bootstrap_all_images(lab, row, records) if row != "teacher" else None
        cells = [intervals[s].format() + (f"<br>{tests[(row, s)].format_p()}"
                                          if (row, s) in tests else "")
                 if s in intervals else "—" for s in sets]
        lines.append(f"| {lab['rows'][row]['label']} | {n} | " + " | ".join(cells)
                     + f" | {boot.format() if boot else '—'} |")
    return "\n".join(lines)


def _family_note(tests: dict[Any, PairedTest]) -> str:
    found = next((t for t in tests.values() if t.family), None)
    if found is None:
        return "no family"
    return (f"Holm within the family \"{found.family}\" of {found.family_size} tests, "
            f"equivalence margin ±{found.margin:.3f}")


def reading(lab: dict[str, Any], rows: Sequence[str] | None = None,
            records: str | os.PathLike[str] | None = None) -> str:
    """A short generated Markdown reading: for each row its verdict against the student alone
    per test set, from the Holm-adjusted p within the summary's family (:func:`lab_tests`):
    above / below (adjusted p < 0.05), equivalent within the margin (adjusted equivalence
    p < 0.05), or no measurable difference with the smallest detectable effect."""
    sets, labels = _sets(lab), set_labels(lab)
    tests = lab_tests(lab)
    lines = [f"Verdicts follow the adjusted p ({_family_note(tests)}). CVC-300 (inferred) is "
             "CVC-ColonDB frames 149–208: the unseen sets are the ColonDB family (counted once) "
             f"and ETIS (20/196); {labels['avg']} count CVC-300 once."]
    for row in compared_rows(lab, rows):
        if row == "teacher":
            continue
        mine = {s: tests[(row, s)] for s in sets if (row, s) in tests}
        n = max((t.n for t in mine.values()), default=0)
        label = lab["rows"][row]["label"]
        if lab["rows"][row].get("rerun") is False:
            label += " — earlier runs, 2026-12-01"
        detail = _test_words([(labels.get(k, k), mine[k]) for k in ("Kvasir", "avg")
                              if k in mine])
        boot = bootstrap_all_images(lab, row, records)
        if boot is not None:
            detail += (f"; {boot.method}, {boot.n} distinct images, given these seeds: "
                       f"{boot.format()}")
        if n < 2:
            lines.append(f"- **{label}** ({n} seed): no test yet ({detail}).")
            continue
        by_verdict: dict[str, list[str]] = {}
        for s, t in mine.items():
            by_verdict.setdefault(t.verdict, []).append(labels.get(s, s))
        parts = [f"{verdict} on {', '.join(names)}" for verdict, names in by_verdict.items()]
        lines.append(f"- **{label}** ({n} seeds) vs the student alone: " + "; ".join(parts)
                     + f" ({detail}).")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The budget sweep and the L_SGM mechanism (docs/results/budget_sweep.json, sgm_mechanism.json)
# ---------------------------------------------------------------------------------------------
def _load_shipped(name: str, path: str | os.PathLike[str] | None, key: str,
                  writer: str) -> dict[str, Any]:
    if path is None:
        from kdas_lite.lab_data import lab_file

        path = lab_file(name).resolve()
    path = Path(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    if key not in doc:
        raise ValueError(f"{path} has no {key!r}: it is written by {writer}")
    doc["_path"] = str(path)
    return doc


def load_sweep(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The budget sweep (default: the shipped ``docs/results/budget_sweep.json``, written by
    ``experiments/budget_sweep.py``): per student budget in epochs, per row, the per-seed mDice
    and the paired Δ against the student alone of the same budget. The same sweep from the
    lab's weaker teacher: ``load_sweep(lab_file("budget_sweep_lab_teacher.json"))``
    (:func:`kdas_lite.lab_data.lab_file`)."""
    return _load_shipped("budget_sweep.json", path, "budgets", "experiments/budget_sweep.py")


def load_mechanism(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The L_SGM mechanism part (default: the shipped ``docs/results/sgm_mechanism.json``,
    written by ``experiments/real_lab.py --mechanism``): the lab-summary schema (rows → runs
    and ``delta_vs_alone``) for the student alone, + L_SGM and the intervention rows."""
    return _load_shipped("sgm_mechanism.json", path, "rows", "experiments/real_lab.py --mechanism")


def sign(interval: Interval | PairedTest | None) -> int:
    """+1 / −1 when the result lies above / below 0, else 0: for a :class:`PairedTest` its
    (Holm-adjusted, when in a family) p below 0.05, for an :class:`Interval` the 95 %
    interval excluding 0 (unadjusted)."""
    if isinstance(interval, PairedTest):
        return interval.sign
    if interval is None or not interval.excludes_zero:
        return 0
    return 1 if interval.mean > 0 else -1


_SIGN_WORDS = {1: "above", -1: "below", 0: "indistinguishable"}


def sweep_intervals(sweep: dict[str, Any], row: str, test_set: str) -> dict[int, Interval]:
    """Budget (epochs) → the paired Δ of ``row`` against the student alone of that budget on
    ``test_set`` (``"Kvasir"`` or ``"avg"``), with its 95 % t-interval over the seeds."""
    out = {}
    for epochs, rows in sweep["budgets"].items():
        delta = rows.get(row, {}).get("delta_vs_alone", {}).get(test_set)
        if delta and delta.get("per_seed"):
            out[int(epochs)] = t_interval(list(delta["per_seed"].values()))
    return dict(sorted(out.items()))


def sign_trend(signs: Sequence[int]) -> str:
    """The path of a method's verdicts over the budgets (:func:`sign`, smallest budget first),
    e.g. "above → indistinguishable". Not a test of a trend: :func:`trend_tests` is."""
    if not signs:
        return "not measured"
    if len(set(signs)) == 1:
        return f"stays {_SIGN_WORDS[signs[0]]}"
    return " → ".join(_SIGN_WORDS[x] for x in signs)


def _seed_signs(sweep: dict[str, Any], row: str, test_set: str) -> str:
    """``6 ep 3/3, 12 ep 1/3, 24 ep 0/3``: at each budget, the seeds whose Δ is above 0."""
    parts = []
    for e in sorted(sweep["budgets"], key=int):
        d = sweep["budgets"][e].get(row, {}).get("delta_vs_alone", {}).get(test_set)
        if d and d.get("per_seed"):
            values = list(d["per_seed"].values())
            parts.append(f"{e} ep {sum(v > 0 for v in values)}/{len(values)}")
    return ", ".join(parts)


def _trend_words(test: PairedTest) -> str:
    words = {1: "the effect grows", -1: "the effect shrinks"}
    return words.get(test.sign, test.verdict.replace("no measurable difference",
                                                     "no measurable change"))


def sweep_reading(sweep: dict[str, Any], sets: Sequence[str] = ("Kvasir", "avg")) -> str:
    """A generated Markdown reading of the budget sweep: the student-alone and teacher levels,
    then per method its paired Δ at each budget with the verdict from the Holm-adjusted p
    within the sweep (:func:`sweep_tests`), the seeds above 0 at each budget, and the trend:
    the paired test of ``Δ(largest) − Δ(smallest)`` (:func:`trend_tests`)."""
    labels = sweep.get("labels", {})
    names = {"avg": all_images_label(sweep)}
    budgets = sorted(int(e) for e in sweep["budgets"])
    levels = []
    for epochs in budgets:
        alone = sweep["budgets"][str(epochs)].get("alone")
        if alone:
            levels.append(f"{epochs} epochs " + ", ".join(
                f"{names.get(s, s)} {statistics.fmean(alone['mDice'][s].values()):.3f}"
                for s in sets if s in alone["mDice"]))
    tests, trends = sweep_tests(sweep), trend_tests(sweep)
    lines = ["- *Student alone* (mean over seeds): " + "; ".join(levels) + "."]
    check = sweep.get("teacher_check")
    if check:
        lines.append(f"- *Teacher* on Kvasir {check['teacher_kvasir']:.3f}: "
                     f"{check['margin']:+.3f} over the student alone at {check['at_epochs']} "
                     "epochs, " + ("clearly ahead (≥ 0.05)." if check["clearly_ahead"] else
                                   "**not** clearly ahead (< 0.05): the comparison at the "
                                   "largest budget has little to transfer."))
    lines.append(f"- *Tests*: Δ at each budget, {_family_note(tests)}; the trend "
                 f"Δ({budgets[-1]}) − Δ({budgets[0]}) per method, paired by seed, "
                 f"{_family_note(trends)}.")
    for row in sweep_rows(sweep):
        parts, n = [], 0
        for s in sets:
            mine = {e: t for (r, e, ts), t in tests.items() if r == row and ts == s}
            if not mine:
                continue
            n = max(n, *(t.n for t in mine.values()))
            steps = ", ".join(f"{e} ep {t.format()} ({t.format_p()}; {t.verdict})"
                              for e, t in sorted(mine.items()))
            trend = trends.get((row, s))
            change = "" if trend is None else (
                f"; trend Δ({budgets[-1]}) − Δ({budgets[0]}) {trend.format()} "
                f"({trend.format_p()}): {_trend_words(trend)}")
            parts.append(f"{names.get(s, s)}: {steps}; seeds above 0: "
                         f"{_seed_signs(sweep, row, s)}{change}")
        lines.append(f"- **{labels.get(row, row)}** (Δ vs the student alone, {n} seeds, "
                     "95 % t-intervals): " + "; ".join(parts) + ".")
    return "\n".join(lines)


def teacher_effect(sweep: dict[str, Any], other: dict[str, Any], row: str, test_set: str
                   ) -> dict[int, Interval]:
    """Budget (epochs) → the paired Δ ``mDice(row from sweep's teacher) − mDice(row from
    other's teacher)`` on ``test_set`` over the seeds both sweeps have, with its 95 %
    t-interval. A seed fixes the student's initial weights, its images and their order, so
    the pair differs only in the teacher it distilled from."""
    return {e: t_interval(v) for e, v in teacher_values(sweep, other, row, test_set).items()}


def same_students_alone(sweep: dict[str, Any], other: dict[str, Any]) -> bool:
    """True when both sweeps hold the same student-alone scores at every budget and seed
    they share (then a method's Δ against the student alone moves only with its teacher)."""
    shared = [e for e in sweep["budgets"] if "alone" in sweep["budgets"][e]
              and "alone" in other["budgets"].get(e, {})]
    return bool(shared) and all(
        sweep["budgets"][e]["alone"]["mDice"] == other["budgets"][e]["alone"]["mDice"]
        for e in shared)


def _teacher_line(name: str, sweep: dict[str, Any]) -> str:
    check = sweep.get("teacher_check")
    if not check:
        return f"{name}: not measured"
    return (f"{name} {check['teacher_kvasir']:.3f} ({check['margin']:+.3f} over the student "
            f"alone at {check['at_epochs']} epochs)")


def teacher_strength_reading(sweep: dict[str, Any], other: dict[str, Any],
                             sets: Sequence[str] = ("Kvasir", "avg")) -> str:
    """A generated Markdown reading of two budget sweeps that differ only in the teacher
    (``sweep``: the stronger one): the two teachers' Kvasir levels, whether the students
    alone are the same runs, and per method the paired Δ stronger − weaker teacher at each
    budget (:func:`teacher_tests`: "better" / "worse" only where the Holm-adjusted p within
    the teacher comparison is below 0.05)."""
    labels = sweep.get("labels", {})
    names = {"avg": all_images_label(sweep)}
    tests = teacher_tests(sweep, other)
    lines = ["- *Teachers* on Kvasir: " + _teacher_line("stronger", sweep) + "; "
             + _teacher_line("weaker", other) + "."]
    lines.append("- *Students alone*: " + (
        "the same runs in both sweeps (equal per-seed scores), so each Δ below is the "
        "teacher's doing." if same_students_alone(sweep, other) else
        "**not** the same runs in both sweeps: a Δ below mixes the teacher with whatever "
        "else differs."))
    lines.append(f"- *Tests*: {_family_note(tests)}.")
    words = {1: "better", -1: "worse"}
    for row in sweep_rows(sweep):
        parts, n = [], 0
        for s in sets:
            mine = {e: t for (r, e, ts), t in tests.items() if r == row and ts == s}
            if not mine:
                continue
            n = max(n, *(t.n for t in mine.values()))
            parts.append(f"{names.get(s, s)}: " + ", ".join(
                f"{e} ep {t.format()} ({t.format_p()}; {words.get(t.sign, t.verdict)})"
                for e, t in sorted(mine.items())))
        if parts:
            lines.append(f"- **{labels.get(row, row)}** (stronger − weaker teacher, {n} paired "
                         "seeds, 95 % t-intervals): " + "; ".join(parts) + ".")
    return "\n".join(lines)


def paired_against(lab: dict[str, Any], row: str, reference: str, test_set: str = "avg"
                   ) -> Interval | None:
    """The paired Δ ``mDice(row) − mDice(reference)`` on ``test_set`` over the seeds both rows
    have, with its 95 % t-interval (None when they share no seed)."""
    values = per_seed_against(lab, row, reference, test_set)
    return t_interval(values) if values else None


def mechanism_effect(vs_sgm: Interval | PairedTest | None,
                     vs_alone: Interval | PairedTest | None) -> str:
    """What one change to L_SGM does to its harm, from its paired Δ against + L_SGM and
    against the student alone (:func:`sign`; for :class:`PairedTest` the adjusted p):
    "removes the harm" (better than + L_SGM and equivalent to the student alone within the
    margin), "reduces the harm" (better than + L_SGM, still below the student alone, or not
    shown equivalent to it), "no measurable effect", or "makes it worse"."""
    better = sign(vs_sgm)
    if better > 0:
        equivalent = isinstance(vs_alone, PairedTest) and vs_alone.verdict.startswith("equiv")
        return "removes the harm" if equivalent else "reduces the harm"
    return "makes it worse" if better < 0 else "no measurable effect"


def _mechanism_effects(mech: dict[str, Any], test_set: str
                       ) -> dict[str, tuple[PairedTest | None, PairedTest | None, str]]:
    """Intervention row → (Δ vs + L_SGM, Δ vs the student alone, :func:`mechanism_effect`)."""
    tests = mechanism_tests(mech)
    out = {}
    for row in SGM_PROPERTIES:
        if row in mech["rows"]:
            vs_sgm = tests.get(("sgm", row, test_set))
            vs_alone = tests.get(("alone", row, test_set))
            out[row] = (vs_sgm, vs_alone, mechanism_effect(vs_sgm, vs_alone))
    return out


def _set_name(doc: dict[str, Any], test_set: str) -> str:
    return all_images_label(doc) if test_set == "avg" else test_set


def mechanism_conclusion(mech: dict[str, Any], test_set: str = "avg") -> str:
    """One sentence: which property of L_SGM causes its harm on ``test_set`` — the changes
    that remove it (or only reduce it) — or that none of the four measurably does, or that
    + L_SGM does no measurable harm in these runs (Holm-adjusted within the mechanism)."""
    name = _set_name(mech, test_set)
    if "sgm" not in mech["rows"] or "alone" not in mech["rows"]:
        return "the mechanism part has no + L_SGM or student-alone runs yet."
    harm = mechanism_tests(mech).get(("alone", "sgm", test_set))
    if harm is None or harm.sign >= 0:
        return (f"in these runs + L_SGM is not measurably below the student alone on {name} "
                "after the adjustment, so there is no harm to explain there.")
    effects = {row: e[2] for row, e in _mechanism_effects(mech, test_set).items()}
    removes = [r for r, e in effects.items() if e == "removes the harm"]
    reduces = [r for r, e in effects.items() if e == "reduces the harm"]

    def names(found: list[str]) -> str:
        return "; ".join(SGM_PROPERTIES[r].split(" (")[0] for r in found)
    if removes:
        text = (f"on {name}, changing {names(removes)} removes the harm: that property of "
                "L_SGM causes it" + (f"; changing {names(reduces)} reduces it" if reduces
                                     else ""))
    elif reduces:
        text = (f"on {name}, changing {names(reduces)} measurably reduces the harm (not shown "
                "to remove it); no change is shown to remove it")
    else:
        text = (f"on {name}, no change measurably reduces the harm after the adjustment: "
                "which property causes it is not established at this power")
    missing = [r for r in SGM_PROPERTIES if r not in effects]
    if missing:
        text += f" ({len(missing)} intervention(s) not run yet)"
    return text + "."


def mechanism_reading(mech: dict[str, Any], test_set: str | None = None) -> str:
    """A generated Markdown reading of the L_SGM interventions on Kvasir and all images (or
    on ``test_set`` alone): for each, its paired Δ against + L_SGM (same teacher, same
    seeds) and against the student alone, with raw and Holm-adjusted p within the
    mechanism's family (:func:`mechanism_tests`), the share of + L_SGM's harm it recovers,
    what it does to the harm (:func:`mechanism_effect`), and :func:`mechanism_conclusion`."""
    rows = mech["rows"]
    tests = mechanism_tests(mech)
    sets = [test_set] if test_set else [s for s in ("Kvasir", "avg")
                                        if ("alone", "sgm", s) in tests] or ["avg"]
    lines = [f"Verdicts follow the adjusted p ({_family_note(tests)})."]
    for s in sets if "sgm" in rows and "alone" in rows else []:
        name = _set_name(mech, s)
        harm = tests.get(("alone", "sgm", s))
        lines.append(f"- *{name}* — **{rows['sgm']['label']}** (this part's own runs, "
                     f"{harm.n if harm else 0} seeds) vs the student alone "
                     f"{harm.format() if harm else '—'} ({harm.format_p() if harm else ''}): "
                     f"{harm.verdict if harm else '—'}.")
        for row, (vs_sgm, vs_alone, effect) in _mechanism_effects(mech, s).items():
            share = "" if vs_sgm is None or harm is None or harm.mean >= 0 else \
                f", {vs_sgm.mean / -harm.mean:.0%} of + L_SGM's harm"
            lines.append(
                f"  - **{rows[row]['label']}** — changes {SGM_PROPERTIES[row]}: vs + L_SGM "
                f"{vs_sgm.format() if vs_sgm else '—'} ({vs_sgm.format_p() if vs_sgm else ''}"
                f"{share}; {vs_sgm.verdict if vs_sgm else '—'}), vs the student alone "
                f"{vs_alone.format() if vs_alone else '—'} "
                f"({vs_alone.format_p() if vs_alone else ''}; "
                f"{vs_alone.verdict if vs_alone else '—'}) → **{effect}**.")
    lines.append("\n**Conclusion** (Holm-adjusted within the mechanism; \"removes\" needs "
                 "equivalence with the student alone): " + " ".join(
                     mechanism_conclusion(mech, s) for s in sets))
    return "\n".join(lines)


def _and(items: Sequence[str]) -> str:
    """``["6", "12", "24"]`` → ``"6, 12 and 24"``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def takeaway(lab: dict[str, Any], sweep: dict[str, Any] | None = None,
             mech: dict[str, Any] | None = None, weaker: dict[str, Any] | None = None) -> str:
    """What a student should take away from the committed lab, the budget sweep (and, with
    ``weaker``, the same sweep from a weaker teacher) and the L_SGM mechanism, in plain words
    generated from their numbers (all distinct images; verdicts from the Holm-adjusted p
    within each family)."""
    lines = []
    tests = lab_tests(lab)
    found = {row: tests.get((row, "avg")) for row in ("sgm", "at", "kdas", "cwd")
             if row in lab["rows"]}
    said = [f"{lab['rows'][row]['label']}: {t.verdict} ({t.format()}, {t.format_p()})"
            for row, t in found.items() if t is not None]
    if said:
        where = " (earlier runs: teacher checkpoint and environment not recorded)" \
            if lab.get("provenance", {}).get("status") == "unknown" else ""
        lines.append(f"- **At the lab's budget**{where}, against the student alone on "
                     f"{all_images_label(lab)}: " + "; ".join(said) + ".")
    if sweep is not None:
        labels = sweep.get("labels", {})
        budgets = sorted(int(e) for e in sweep["budgets"])
        trends = trend_tests(sweep)
        said = [f"{labels.get(row, row)} on {_set_name(sweep, s)} {t.format()} "
                f"({t.format_p()}): {_trend_words(t)}" for (row, s), t in trends.items()]
        if said:
            check = sweep.get("teacher_check") or {}
            caveat = "" if check.get("clearly_ahead", True) else (
                f" At {check['at_epochs']} epochs the teacher is not clearly ahead of the "
                "student alone, so that point has little left to transfer.")
            lines.append(f"- **As the student trains longer** (Δ({budgets[-1]} epochs) − "
                         f"Δ({budgets[0]}), paired by seed, one teacher): " + "; ".join(said)
                         + "." + caveat + " A gain measured on an under-trained student is "
                         "not a gain on a converged one until it is measured there.")
    if sweep is not None and weaker is not None:
        labels = sweep.get("labels", {})
        words = {1: "better", -1: "worse", 0: "no measurable difference"}
        said = []
        for row in sweep_rows(sweep):
            by_word: dict[str, list[str]] = {}
            for (r, epochs, s), t in teacher_tests(sweep, weaker).items():
                if r == row and s == "avg":
                    by_word.setdefault(words[t.sign], []).append(str(epochs))
            if by_word:
                said.append(f"{labels.get(row, row)}: " + ", ".join(
                    f"{w} at {_and(es)} epochs" for w, es in by_word.items()))
        strong, weak = sweep.get("teacher_check") or {}, weaker.get("teacher_check") or {}
        if said and strong and weak:
            lines.append(f"- **A stronger teacher** (Kvasir {strong['teacher_kvasir']:.3f} "
                         f"instead of {weak['teacher_kvasir']:.3f}), each student against "
                         "itself distilled from the weaker one, on all distinct images "
                         "(Holm within the comparison): " + "; ".join(said) + ".")
    if mech is not None:
        tests = mechanism_tests(mech)
        sets = [s for s in ("Kvasir", "avg") if ("alone", "sgm", s) in tests] or ["avg"]
        lines.append("- **Why L_SGM hurts** (one property changed at a time): "
                     + " ".join(mechanism_conclusion(mech, s) for s in sets))
    return "\n".join(lines)
