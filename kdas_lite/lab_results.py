"""Reading the real-data lab: paired differences against the student alone, with intervals.

The lab (``experiments/real_lab.py``, docs/RESULTS.md §1) trains every student row with the
same seeds; its summary ``docs/results/real_lab.json`` holds, per row, the per-seed paired
difference ``Δ_s = mDice(row, seed s) − mDice(student alone, seed s)`` on each test set and on
all test images (``"avg"``). This module turns those into statements a course can defend:

- :func:`paired_intervals`: per test set, the mean Δ over the n seeds with its 95 % Student-t
  interval ``mean ± t_{0.975, n−1} · sd / √n`` (the seeds are the replicates; the interval
  says how much the mean would move with other seeds of the same design).
- :func:`bootstrap_all_images`: for the all-images column, a paired bootstrap over the test
  images: each image's Δ (its Dice in the row minus in the student alone, averaged over the
  seeds both have) is resampled with replacement *within its test set* (the set sizes stay
  as designed), 95 % percentile interval of the image-weighted mean. It measures the
  uncertainty from *which test images* were scored, given these seeds; it needs the per-run
  records with each image's Dice (``docs/results/lab_runs/``).
- :func:`interval_table` and :func:`reading`: a Markdown table and a short generated reading
  (which rows beat the student alone where the interval excludes 0), so no number about the
  runs is typed by hand.
- :func:`sweep_reading` (``docs/results/budget_sweep.json``): per method, its Δ at each
  student budget and whether its sign changes as the student trains longer;
  :func:`teacher_strength_reading`: the same sweep from a weaker teacher
  (``docs/results/budget_sweep_lab_teacher.json``), paired seed by seed.
- :func:`mechanism_reading` (``docs/results/sgm_mechanism.json``): per change to L_SGM, its
  Δ against + L_SGM and against the student alone, and which property causes the harm.

Works on the summary schema written since 2026-12-01 (rows → ``runs`` and ``delta_vs_alone``
→ test set → ``per_seed``); the fields added later (``records``, ``rerun``) are optional.

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

__all__ = [
    "SGM_PROPERTIES",
    "Interval",
    "bootstrap_all_images",
    "interval_table",
    "load_lab",
    "load_mechanism",
    "load_records",
    "load_sweep",
    "mechanism_conclusion",
    "mechanism_effect",
    "mechanism_reading",
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
    "t_interval",
    "t_quantile",
    "takeaway",
    "teacher_effect",
    "teacher_strength_reading",
]

# Two-sided 95 % Student-t quantiles t_{0.975, df} (the usual table; df > 30 interpolates
# towards the normal 1.960).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
         16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074,
         23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045,
         30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


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
        def f(x: float) -> str:
            return f"{round(x, digits) + 0.0:+.{digits}f}"
        if self.lo is None or self.hi is None:
            return f(self.mean)
        return f"{f(self.mean)} [{f(self.lo)}, {f(self.hi)}]"


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
                         seed: int = 0) -> Interval | None:
    """Paired bootstrap over the test images of the all-images Δ of ``row`` vs ``baseline``.

    Each image's Δ is its Dice in ``row`` minus its Dice in ``baseline``, averaged over the
    seeds both rows have records for; the images are resampled with replacement within each
    test set ``n_boot`` times; the interval is the 2.5 and 97.5 percentiles of the resampled
    image-weighted means. None when the per-image records are missing (rows kept from runs
    whose records were lost).

    Args:
        lab: :func:`load_lab`'s dict (its ``records`` field names the records folder).
        row, baseline: row names.
        records: the records folder, if not the one ``lab`` names.
        n_boot: resamples.
        seed: of the resampling.
    """
    folder = _records_dir(lab, records)
    if folder is None or not folder.is_dir():
        return None
    runs, base = load_records(folder, row), load_records(folder, baseline)
    seeds = sorted(set(runs) & set(base))
    if not seeds:
        return None
    sets = [s for s in runs[seeds[0]]["image_dice"]]
    per_set = []
    for test_set in sets:
        diffs = [np.asarray(runs[s]["image_dice"][test_set], dtype=float)
                 - np.asarray(base[s]["image_dice"][test_set], dtype=float) for s in seeds]
        if len({len(d) for d in diffs}) != 1:
            raise ValueError(f"{row} and {baseline} records hold different numbers of "
                             f"{test_set} images")
        per_set.append(np.mean(diffs, axis=0))
    total = sum(len(d) for d in per_set)
    rng = np.random.default_rng(seed)
    sums = np.zeros(n_boot)
    for d in per_set:
        idx = rng.integers(0, len(d), size=(n_boot, len(d)))
        sums += d[idx].sum(axis=1)
    boot = sums / total
    mean = float(sum(d.sum() for d in per_set) / total)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return Interval(mean, float(lo), float(hi), total, "bootstrap over test images")


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
    labels["avg"] = "all images"
    return labels


def _sets(lab: dict[str, Any]) -> list[str]:
    sets = lab.get("test_sets")
    names = list(sets) if isinstance(sets, (dict, list)) else []
    return [s for s in names if s != "avg"] + ["avg"]


def _compared_rows(lab: dict[str, Any], rows: Sequence[str] | None) -> list[str]:
    return [r for r in (rows or lab["rows"]) if r in lab["rows"] and r != "alone"
            and lab["rows"][r].get("delta_vs_alone")]


def interval_table(lab: dict[str, Any], rows: Sequence[str] | None = None,
                   records: str | os.PathLike[str] | None = None) -> str:
    """Markdown: per row, the seeds, and per test set the mean paired Δ against the student
    alone with its 95 % t-interval over seeds; the last column is the bootstrap interval over
    test images of the all-images Δ ("—" without per-image records)."""
    sets, labels = _sets(lab), set_labels(lab)
    lines = ["| row | seeds | " + " | ".join(labels.get(s, s) for s in sets)
             + " | all images, bootstrap over images |",
             "|---|---:|" + "---:|" * (len(sets) + 1)]
    for row in _compared_rows(lab, rows):
        intervals = paired_intervals(lab, row)
        n = max((i.n for i in intervals.values()), default=0)
        boot = bootstrap_all_images(lab, row, records) if row != "teacher" else None
        lines.append(f"| {lab['rows'][row]['label']} | {n} | " + " | ".join(
            intervals[s].format() if s in intervals else "—" for s in sets)
            + f" | {boot.format() if boot else '—'} |")
    return "\n".join(lines)


def reading(lab: dict[str, Any], rows: Sequence[str] | None = None,
            records: str | os.PathLike[str] | None = None) -> str:
    """A short generated Markdown reading: for each row, where its 95 % interval against the
    student alone lies above 0, below 0, or straddles 0, per test set and on all images."""
    sets, labels = _sets(lab), set_labels(lab)
    lines = []
    for row in _compared_rows(lab, rows):
        if row == "teacher":
            continue
        intervals = paired_intervals(lab, row)
        n = max((i.n for i in intervals.values()), default=0)
        above = [labels.get(s, s) for s in sets if s in intervals and intervals[s].excludes_zero
                 and intervals[s].mean > 0]
        below = [labels.get(s, s) for s in sets if s in intervals and intervals[s].excludes_zero
                 and intervals[s].mean < 0]
        label = lab["rows"][row]["label"]
        if lab["rows"][row].get("rerun") is False:
            label += " — earlier runs, 2026-12-01"
        kvasir, avg = intervals.get("Kvasir"), intervals.get("avg")
        detail = "; ".join(f"{labels.get(k, k)} Δ {iv.format()}" for k, iv in
                           (("Kvasir", kvasir), ("avg", avg)) if iv is not None)
        boot = bootstrap_all_images(lab, row, records)
        if boot is not None:
            detail += (f"; over the test images (bootstrap, {boot.n} images): "
                       f"{boot.format()}")
        if n < 2:
            lines.append(f"- **{label}** ({n} seed): no t-interval yet ({detail}).")
            continue
        parts = []
        if above:
            parts.append("above the student alone on " + ", ".join(above))
        if below:
            parts.append("below it on " + ", ".join(below))
        rest = [labels.get(s, s) for s in sets if s in intervals
                and not intervals[s].excludes_zero]
        if rest:
            parts.append("not distinguishable from it on " + ", ".join(rest))
        lines.append(f"- **{label}** ({n} seeds): " + "; ".join(parts)
                     + f" (95 % t-intervals over seeds: {detail}).")
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


def sign(interval: Interval | None) -> int:
    """+1 / −1 when the 95 % interval lies above / below 0, else 0 (not distinguishable)."""
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


def sweep_rows(sweep: dict[str, Any]) -> list[str]:
    """The distilled rows of a budget sweep (every row but the student alone), in the order
    they first appear, smallest budget first."""
    return list(dict.fromkeys(r for e in sorted(sweep["budgets"], key=int)
                              for r in sweep["budgets"][e] if r != "alone"))


def sign_trend(signs: Sequence[int]) -> str:
    """How a method's sign against the student alone (:func:`sign`, smallest budget first)
    changes, in words: "changes sign", "stays above", or the path, e.g. "above →
    indistinguishable (no sign change)"."""
    if not signs:
        return "not measured"
    if 1 in signs and -1 in signs:
        return "changes sign (" + " → ".join(_SIGN_WORDS[x] for x in signs) + ")"
    if len(set(signs)) == 1:
        return f"stays {_SIGN_WORDS[signs[0]]}"
    return " → ".join(_SIGN_WORDS[x] for x in signs) + " (no sign change)"


def sweep_reading(sweep: dict[str, Any], sets: Sequence[str] = ("Kvasir", "avg")) -> str:
    """A generated Markdown reading of the budget sweep: the student-alone and teacher levels,
    then per method its paired Δ at each budget and whether its sign changes as the student
    trains longer (a sign counts only where the 95 % t-interval excludes 0)."""
    labels = sweep.get("labels", {})
    names = {"avg": "all images"}
    budgets = sorted(int(e) for e in sweep["budgets"])
    levels = []
    for epochs in budgets:
        alone = sweep["budgets"][str(epochs)].get("alone")
        if alone:
            levels.append(f"{epochs} epochs " + ", ".join(
                f"{names.get(s, s)} {statistics.fmean(alone['mDice'][s].values()):.3f}"
                for s in sets if s in alone["mDice"]))
    lines = ["- *Student alone* (mean over seeds): " + "; ".join(levels) + "."]
    check = sweep.get("teacher_check")
    if check:
        lines.append(f"- *Teacher* on Kvasir {check['teacher_kvasir']:.3f}: "
                     f"{check['margin']:+.3f} over the student alone at {check['at_epochs']} "
                     "epochs, " + ("clearly ahead (≥ 0.05)." if check["clearly_ahead"] else
                                   "**not** clearly ahead (< 0.05): the comparison at the "
                                   "largest budget has little to transfer."))
    for row in sweep_rows(sweep):
        parts, n = [], 0
        for s in sets:
            intervals = sweep_intervals(sweep, row, s)
            if not intervals:
                continue
            n = max(n, *(iv.n for iv in intervals.values()))
            steps = ", ".join(f"{e} ep {iv.format()}" for e, iv in intervals.items())
            trend = sign_trend([sign(iv) for iv in intervals.values()])
            parts.append(f"{names.get(s, s)}: {steps} — {trend}")
        lines.append(f"- **{labels.get(row, row)}** (Δ vs the student alone, {n} seeds, "
                     "95 % t-intervals): " + "; ".join(parts) + ".")
    return "\n".join(lines)


def teacher_effect(sweep: dict[str, Any], other: dict[str, Any], row: str, test_set: str
                   ) -> dict[int, Interval]:
    """Budget (epochs) → the paired Δ ``mDice(row from sweep's teacher) − mDice(row from
    other's teacher)`` on ``test_set`` over the seeds both sweeps have, with its 95 %
    t-interval. A seed fixes the student's initial weights, its images and their order, so
    the pair differs only in the teacher it distilled from."""
    out = {}
    for epochs, rows in sweep["budgets"].items():
        mine = rows.get(row, {}).get("mDice", {}).get(test_set, {})
        theirs = other["budgets"].get(epochs, {}).get(row, {}).get("mDice", {}).get(test_set, {})
        common = sorted(set(mine) & set(theirs), key=int)
        if common:
            out[int(epochs)] = t_interval([mine[s] - theirs[s] for s in common])
    return dict(sorted(out.items()))


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
    budget (:func:`teacher_effect`), "better" / "worse" only where the 95 % t-interval
    excludes 0."""
    labels = sweep.get("labels", {})
    names = {"avg": "all images"}
    lines = ["- *Teachers* on Kvasir: " + _teacher_line("stronger", sweep) + "; "
             + _teacher_line("weaker", other) + "."]
    lines.append("- *Students alone*: " + (
        "the same runs in both sweeps (equal per-seed scores), so each Δ below is the "
        "teacher's doing." if same_students_alone(sweep, other) else
        "**not** the same runs in both sweeps: a Δ below mixes the teacher with whatever "
        "else differs."))
    words = {1: "better", -1: "worse", 0: "indistinguishable"}
    for row in sweep_rows(sweep):
        parts, n = [], 0
        for s in sets:
            intervals = teacher_effect(sweep, other, row, s)
            if not intervals:
                continue
            n = max(n, *(iv.n for iv in intervals.values()))
            parts.append(f"{names.get(s, s)}: " + ", ".join(
                f"{e} ep {iv.format()} ({words[sign(iv)]})" for e, iv in intervals.items()))
        if parts:
            lines.append(f"- **{labels.get(row, row)}** (stronger − weaker teacher, {n} paired "
                         "seeds, 95 % t-intervals): " + "; ".join(parts) + ".")
    return "\n".join(lines)


#: What each mechanism row changes in L_SGM (experiments/real_lab.py, ``--mechanism``).
SGM_PROPERTIES = {
    "sgm-prob": "the logit scale (the maps compared as probabilities σ(P), bounded)",
    "sgm-no-transpose": "the symmetric pairing P + Pᵀ (the maps compared as P + P: plain "
                        "pooled logit matching)",
    "sgm-teacher-std": "the teacher's per-image logit scale (both maps divided by it)",
    "sgm-equal-grad": "the size of its gradient (weighted to L_seg's at the first step)",
}


def paired_against(lab: dict[str, Any], row: str, reference: str, test_set: str = "avg"
                   ) -> Interval | None:
    """The paired Δ ``mDice(row) − mDice(reference)`` on ``test_set`` over the seeds both rows
    have, with its 95 % t-interval (None when they share no seed)."""
    def by_seed(name: str) -> dict[Any, float]:
        return {r["seed"]: r["mDice"][test_set] for r in lab["rows"].get(name, {}).get("runs", [])
                if test_set in r["mDice"]}
    a, b = by_seed(row), by_seed(reference)
    common = sorted(set(a) & set(b))
    return t_interval([a[s] - b[s] for s in common]) if common else None


def mechanism_effect(vs_sgm: Interval | None, vs_alone: Interval | None) -> str:
    """What one change to L_SGM does to its harm, from its paired Δ against + L_SGM and
    against the student alone: "removes the harm" (better than + L_SGM, not below the student
    alone), "reduces the harm" (better than + L_SGM, still below the student alone), "no
    measurable effect", or "makes it worse"."""
    better = sign(vs_sgm)
    if better > 0:
        return "removes the harm" if sign(vs_alone) >= 0 else "reduces the harm"
    return "makes it worse" if better < 0 else "no measurable effect"


def _mechanism_effects(mech: dict[str, Any], test_set: str
                       ) -> dict[str, tuple[Interval | None, Interval | None, str]]:
    """Intervention row → (Δ vs + L_SGM, Δ vs the student alone, :func:`mechanism_effect`)."""
    out = {}
    for row in SGM_PROPERTIES:
        if row in mech["rows"]:
            vs_sgm = paired_against(mech, row, "sgm", test_set)
            vs_alone = paired_intervals(mech, row).get(test_set)
            out[row] = (vs_sgm, vs_alone, mechanism_effect(vs_sgm, vs_alone))
    return out


def mechanism_conclusion(mech: dict[str, Any], test_set: str = "avg") -> str:
    """One sentence: which property of L_SGM causes its harm on ``test_set`` — the changes
    that remove it (or only reduce it) — or that none of the four does, or that + L_SGM does
    no harm in these runs."""
    name = "all test images" if test_set == "avg" else test_set
    if "sgm" not in mech["rows"] or "alone" not in mech["rows"]:
        return "the mechanism part has no + L_SGM or student-alone runs yet."
    if sign(paired_intervals(mech, "sgm").get(test_set)) >= 0:
        return (f"in these runs + L_SGM is not below the student alone on {name}, so there "
                "is no harm to explain.")
    effects = {row: e[2] for row, e in _mechanism_effects(mech, test_set).items()}
    removes = [r for r, e in effects.items() if e == "removes the harm"]
    reduces = [r for r, e in effects.items() if e == "reduces the harm"]

    def names(found: list[str]) -> str:
        return "; ".join(SGM_PROPERTIES[r].split(" (")[0] for r in found)
    if removes:
        text = (f"changing {names(removes)} removes the harm: that property of L_SGM causes it"
                + (f"; changing {names(reduces)} only reduces it" if reduces else ""))
    elif reduces:
        text = (f"changing {names(reduces)} reduces the harm but does not remove it: that "
                "property contributes, and none of the four alone explains all of it")
    else:
        text = ("none of the four changes measurably reduces the harm: it is not caused by "
                "any one of these properties alone")
    missing = [r for r in SGM_PROPERTIES if r not in effects]
    if missing:
        text += f" ({len(missing)} intervention(s) not run yet)"
    return text + "."


def mechanism_reading(mech: dict[str, Any], test_set: str = "avg") -> str:
    """A generated Markdown reading of the L_SGM interventions: for each, its paired Δ against
    + L_SGM (same teacher, same seeds) and against the student alone on ``test_set``, what it
    does to the harm (:func:`mechanism_effect`), and :func:`mechanism_conclusion`."""
    name = "all test images" if test_set == "avg" else test_set
    rows = mech["rows"]
    lines = []
    if "sgm" in rows and "alone" in rows:
        harm = paired_intervals(mech, "sgm").get(test_set)
        verdict = {1: "above it", -1: "below it", 0: "not distinguishable"}[sign(harm)]
        lines.append(f"- **{rows['sgm']['label']}** (this part's own runs, "
                     f"{harm.n if harm else 0} seeds): Δ vs the student alone on {name} "
                     f"{harm.format() if harm else '—'}: {verdict}.")
        for row, (vs_sgm, vs_alone, effect) in _mechanism_effects(mech, test_set).items():
            lines.append(f"- **{rows[row]['label']}** — changes {SGM_PROPERTIES[row]}: Δ vs "
                         f"+ L_SGM {vs_sgm.format() if vs_sgm else '—'}, vs the student alone "
                         f"{vs_alone.format() if vs_alone else '—'} → **{effect}**.")
    lines.append(f"\n**Conclusion** (on {name}, 95 % t-intervals over seeds; a change counts "
                 f"only where its interval excludes 0): {mechanism_conclusion(mech, test_set)}")
    return "\n".join(lines)


def _and(items: Sequence[str]) -> str:
    """``["6", "12", "24"]`` → ``"6, 12 and 24"``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def takeaway(lab: dict[str, Any], sweep: dict[str, Any] | None = None,
             mech: dict[str, Any] | None = None, weaker: dict[str, Any] | None = None) -> str:
    """What a student should take away from the committed lab, the budget sweep (and, with
    ``weaker``, the same sweep from a weaker teacher) and the L_SGM mechanism, in plain words
    generated from their numbers (all images; a sign counts only where the 95 % t-interval
    over seeds excludes 0)."""
    words = {1: "helps", -1: "hurts", 0: "makes no measurable difference"}
    lines = []
    found = {row: paired_intervals(lab, row).get("avg") for row in ("sgm", "at", "kdas", "cwd")
             if row in lab["rows"]}
    said = [f"{lab['rows'][row]['label']} {words[sign(iv)]} ({iv.format()})"
            for row, iv in found.items() if iv is not None]
    if said:
        lines.append("- **At the lab's budget**, against the student alone on all test images: "
                     + "; ".join(said) + ".")
    if sweep is not None:
        labels = sweep.get("labels", {})
        trends = []
        for row in sweep_rows(sweep):
            intervals = sweep_intervals(sweep, row, "avg")
            if len(intervals) > 1:
                trend = sign_trend([sign(iv) for iv in intervals.values()])
                trends.append(f"{labels.get(row, row)} {trend}")
        if trends:
            budgets = sorted(int(e) for e in sweep["budgets"])
            check = sweep.get("teacher_check") or {}
            caveat = "" if check.get("clearly_ahead", True) else (
                f" At {check['at_epochs']} epochs the teacher is not clearly ahead of the "
                "student alone, so that point has little left to transfer.")
            lines.append(f"- **As the student trains longer** ({', '.join(map(str, budgets))} "
                         "epochs, one teacher), against the student alone of the same budget: "
                         + "; ".join(trends) + "." + caveat + " A gain measured on an "
                         "under-trained student is not a gain on a converged one until it is "
                         "measured there.")
    if sweep is not None and weaker is not None:
        labels = sweep.get("labels", {})
        words = {1: "better", -1: "worse", 0: "no measurable difference"}
        said = []
        for row in sweep_rows(sweep):
            by_word: dict[str, list[str]] = {}
            for epochs, iv in teacher_effect(sweep, weaker, row, "avg").items():
                by_word.setdefault(words[sign(iv)], []).append(str(epochs))
            if by_word:
                said.append(f"{labels.get(row, row)}: " + ", ".join(
                    f"{w} at {_and(es)} epochs" for w, es in by_word.items()))
        strong, weak = sweep.get("teacher_check") or {}, weaker.get("teacher_check") or {}
        if said and strong and weak:
            lines.append(f"- **A stronger teacher** (Kvasir {strong['teacher_kvasir']:.3f} "
                         f"instead of {weak['teacher_kvasir']:.3f}), each student against "
                         "itself distilled from the weaker one, on all test images: "
                         + "; ".join(said) + ".")
    if mech is not None:
        lines.append("- **Why L_SGM hurts** (one property changed at a time): "
                     + mechanism_conclusion(mech))
    return "\n".join(lines)
