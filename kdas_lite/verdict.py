"""The course's verdict: what the committed runs say once the many comparisons are accounted for.

Notebook 04 reads about a hundred paired comparisons (every lab row on every test set, each
sweep's methods at each budget, the two teachers, the L_SGM interventions). At 95 % each one
alone, some would look "better" or "worse" by chance, so the words of this module follow
**Holm-adjusted** p-values, within each *family* of comparisons (Holm 1979):

===========  ==========================================================================
family       comparisons (paired Δ per seed, two-sided one-sample t-test of mean Δ = 0)
===========  ==========================================================================
lab          every row of ``real_lab.json`` but the student alone and the teacher, on every
             test set and on all images, against the student alone
sweep        one family per ``budget_sweep*.json``: each method at each budget, on Kvasir and
             on all images, against the student alone of the same budget
trend        per sweep: each method's ``Δ(largest budget) − Δ(smallest)``, seed by seed
teacher      the same students distilled from the two sweeps' teachers (stronger − weaker)
mechanism    every row of ``sgm_mechanism.json`` against the student alone on every set, and
             each intervention against + L_SGM on all images
transfer     ``transfer_set.json`` (a teacher that never saw the students' images), when run
===========  ==========================================================================

Holm: sort the m raw p-values ``p_(1) ≤ … ≤ p_(m)``; ``p̃_(k) = max_{j ≤ k} min(1, (m − j + 1)
p_(j))``. A comparison is "above" or "below" the student alone only when ``p̃ < 0.05``; otherwise
"no measurable difference" (not "no difference": three to five seeds cannot show equality).
When a summary already stores adjusted values (a ``p_holm`` beside ``per_seed``, as issue 28
adds), those are used instead of recomputing them.

Every statement names its teacher by its Kvasir mDice, read from the file it belongs to: the
lab's rows (``real_lab.json``: the re-run rows and, for the rows kept from 2026-12-01, that
day's teacher), each sweep's ``teacher_check`` and the mechanism's ``teacher``.

Example::

    from kdas_lite.lab_results import load_lab, load_mechanism, load_sweep
    from kdas_lite.verdict import verdict_box
    print(verdict_box(load_lab(), load_sweep(), None, load_mechanism(), None))
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from scipy import stats

from kdas_lite.lab_results import (
    Interval,
    paired_against,
    paired_intervals,
    sweep_rows,
    t_interval,
    teacher_effect,
)

__all__ = [
    "LEVEL",
    "REGIME_KEYS",
    "SEEN_SETS",
    "Comparison",
    "exercise3_answer",
    "full_lab_plan",
    "holm",
    "lab_comparisons",
    "lab_rows_table",
    "lab_set_lines",
    "live_lines",
    "load_transfer",
    "lost_polyp_table",
    "mechanism_comparisons",
    "mechanism_table",
    "paired_p",
    "regime_note",
    "run_reading",
    "set_labels",
    "sgm_form_reading",
    "sign_word",
    "sweep_comparisons",
    "sweep_table",
    "takeaways",
    "teacher_comparisons",
    "teacher_kvasir",
    "teacher_table",
    "time_note",
    "trend_comparisons",
    "verdict_box",
]

#: The family-wise error level of every verdict word.
LEVEL = 0.05
#: The test sets whose other images the students train on (PraNet's TrainDataset is drawn from
#: Kvasir-SEG and CVC-ClinicDB); the others are unseen.
SEEN_SETS = ("Kvasir", "CVC-ClinicDB")
_HEADLINE = ("sgm", "at", "kdas", "cwd")
_WORDS = {1: "above", -1: "below", 0: "no measurable difference"}


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------
def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (``nan`` stays ``nan`` and does
    not count towards m)."""
    order = sorted((i for i, p in enumerate(pvalues) if not math.isnan(p)),
                   key=lambda i: pvalues[i])
    out = [math.nan] * len(pvalues)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - k) * pvalues[i]))
        out[i] = running
    return out


def paired_p(deltas: Sequence[float]) -> float:
    """Two-sided p of the paired t-test (mean of the per-seed ``deltas`` = 0); ``nan`` with
    fewer than two seeds or no spread."""
    if len(deltas) < 2 or statistics.pstdev(deltas) == 0:
        return math.nan
    return float(stats.ttest_1samp([float(d) for d in deltas], 0.0).pvalue)


@dataclass(frozen=True)
class Comparison:
    """One paired comparison of a family, with its raw and Holm-adjusted p."""

    family: str
    row: str
    label: str
    test_set: str
    interval: Interval
    p: float
    p_holm: float = math.nan
    against: str = "the student alone"
    budget: int | None = None

    @property
    def sign(self) -> int:
        """+1 / −1 when the adjusted p is below :data:`LEVEL` (above / below), else 0."""
        if math.isnan(self.p_holm) or self.p_holm >= LEVEL:
            return 0
        return 1 if self.interval.mean > 0 else -1

    @property
    def word(self) -> str:
        """``"above"``, ``"below"`` or ``"no measurable difference"``."""
        return _WORDS[self.sign]

    def format(self) -> str:
        """``+0.099 [+0.077, +0.122], p < 0.001, Holm 0.017``."""
        def f(p: float) -> str:
            return "—" if math.isnan(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"
        return f"{self.interval.format()}, p {f(self.p)}, Holm {f(self.p_holm)}"


def _family(items: list[tuple[Comparison, float | None]]) -> list[Comparison]:
    """Fill ``p_holm``: the stored adjusted values when every comparison has one, else Holm
    over the family's raw p-values."""
    stored = [s for _, s in items]
    adjusted = stored if stored and all(s is not None for s in stored) else \
        holm([c.p for c, _ in items])
    return [replace(c, p_holm=float(a)) for (c, _), a in zip(items, adjusted, strict=True)]


def _delta_comparison(family: str, row: str, label: str, test_set: str,
                      delta: Mapping[str, Any], **extra: Any) -> tuple[Comparison, float | None]:
    per_seed = [float(v) for v in delta["per_seed"].values()]
    return (Comparison(family, row, label, test_set, t_interval(per_seed), paired_p(per_seed),
                       **extra), delta.get("p_holm"))


def lab_comparisons(lab: Mapping[str, Any], family: str = "lab") -> list[Comparison]:
    """The lab family: every row of a lab summary (``real_lab.json`` schema) but the student
    alone and the teacher, on every test set (and ``"avg"``), against the student alone."""
    items = [_delta_comparison(family, row, info.get("label", row), test_set, delta)
             for row, info in lab["rows"].items() if row not in ("alone", "teacher")
             for test_set, delta in info.get("delta_vs_alone", {}).items()
             if delta.get("per_seed")]
    return _family(items)


def sweep_comparisons(sweep: Mapping[str, Any], family: str = "sweep") -> list[Comparison]:
    """One sweep's family: each method at each budget on each set against the student alone
    of the same budget."""
    labels = sweep.get("labels", {})
    items = [_delta_comparison(family, row, labels.get(row, row), test_set, delta,
                               budget=int(epochs))
             for epochs in sorted(sweep["budgets"], key=int)
             for row, info in sweep["budgets"][epochs].items() if row != "alone"
             for test_set, delta in info.get("delta_vs_alone", {}).items()
             if delta.get("per_seed")]
    return _family(items)


def trend_comparisons(sweep: Mapping[str, Any], family: str = "trend") -> list[Comparison]:
    """Per method and set, the paired trend ``Δ(largest budget) − Δ(smallest budget)`` seed by
    seed (``budget`` holds the largest); < 0: the method loses ground as the student trains
    longer."""
    budgets = sorted(sweep["budgets"], key=int)
    labels = sweep.get("labels", {})
    first, last = sweep["budgets"][budgets[0]], sweep["budgets"][budgets[-1]]
    items = []
    for row in sweep_rows(sweep):
        for test_set, d_last in last.get(row, {}).get("delta_vs_alone", {}).items():
            d_first = first.get(row, {}).get("delta_vs_alone", {}).get(test_set)
            if not d_first:
                continue
            seeds = sorted(set(d_first["per_seed"]) & set(d_last["per_seed"]), key=int)
            diffs = [d_last["per_seed"][s] - d_first["per_seed"][s] for s in seeds]
            if diffs:
                items.append((Comparison(family, row, labels.get(row, row), test_set,
                                         t_interval(diffs), paired_p(diffs),
                                         against=f"itself at {budgets[0]} epochs",
                                         budget=int(budgets[-1])), None))
    return _family(items)


def teacher_comparisons(sweep: Mapping[str, Any], weaker: Mapping[str, Any]
                        ) -> list[Comparison]:
    """The teacher family: each method at each budget, distilled from ``sweep``'s teacher
    minus the same student distilled from ``weaker``'s (seed by seed)."""
    labels = sweep.get("labels", {})
    items = []
    for row in sweep_rows(sweep):
        for test_set in ("Kvasir", "avg"):
            for epochs, iv in teacher_effect(dict(sweep), dict(weaker), row, test_set).items():
                mine = sweep["budgets"][str(epochs)][row]["mDice"][test_set]
                theirs = weaker["budgets"][str(epochs)][row]["mDice"][test_set]
                diffs = [mine[s] - theirs[s] for s in sorted(set(mine) & set(theirs), key=int)]
                items.append((Comparison("teacher", row, labels.get(row, row), test_set, iv,
                                         paired_p(diffs), against="the weaker teacher",
                                         budget=epochs), None))
    return _family(items)


def mechanism_comparisons(mech: Mapping[str, Any]) -> list[Comparison]:
    """The mechanism family: every row against the student alone on every set, and each
    intervention against + L_SGM on all images (same teacher, same seeds)."""
    items = [_delta_comparison("mechanism", row, info.get("label", row), test_set, delta)
             for row, info in mech["rows"].items() if row != "alone"
             for test_set, delta in info.get("delta_vs_alone", {}).items()
             if delta.get("per_seed")]
    for row, info in mech["rows"].items():
        if row in ("alone", "sgm") or "sgm" not in mech["rows"]:
            continue
        by_seed = {name: {r["seed"]: r["mDice"]["avg"] for r in mech["rows"][name]["runs"]}
                   for name in (row, "sgm")}
        seeds = sorted(set(by_seed[row]) & set(by_seed["sgm"]))
        diffs = [by_seed[row][s] - by_seed["sgm"][s] for s in seeds]
        iv = paired_against(dict(mech), row, "sgm", "avg")
        if iv is not None:
            items.append((Comparison("mechanism", row, info.get("label", row), "avg", iv,
                                     paired_p(diffs), against="+ L_SGM"), None))
    return _family(items)


def _find(comparisons: Sequence[Comparison], row: str, test_set: str = "avg",
          budget: int | None = None, against: str = "the student alone") -> Comparison | None:
    return next((c for c in comparisons if c.row == row and c.test_set == test_set
                 and c.against == against and (budget is None or c.budget == budget)), None)


# ---------------------------------------------------------------------------------------------
# Teachers and labels, from the files they belong to
# ---------------------------------------------------------------------------------------------
def teacher_kvasir(doc: Mapping[str, Any], earlier: bool = False) -> float | None:
    """The Kvasir mDice of a summary's teacher: a lab summary's teacher row (``earlier``: the
    teacher of its rows kept from earlier runs), a sweep's ``teacher_check`` or a mechanism
    summary's ``teacher``; None when the file does not say."""
    if "teacher_check" in doc:
        return (doc["teacher_check"] or {}).get("teacher_kvasir")
    row = doc.get("rows", {}).get("teacher")
    if row is not None:
        runs = (row.get("earlier") or {}).get("runs", []) if earlier else row.get("runs", [])
        return runs[0]["mDice"].get("Kvasir") if runs else None
    teacher = doc.get("teacher")
    return teacher.get("Kvasir") if isinstance(teacher, Mapping) else None


def _teacher(doc: Mapping[str, Any], name: str, earlier: bool = False) -> str:
    score = teacher_kvasir(doc, earlier)
    return f"{name} (Kvasir {score:.3f})" if score is not None else f"{name} (score not recorded)"


def set_labels(lab: Mapping[str, Any]) -> dict[str, str]:
    """Test set → its label as the summary records it (``test_set_info``; e.g. "CVC-300
    (inferred)"), ``"avg"`` → "all test images"."""
    info = lab.get("test_set_info") or {}
    labels = {s: (info.get(s) or {}).get("label", s) for s in lab.get("test_sets", [])}
    labels["avg"] = "all test images"
    return labels


def _earlier(lab: Mapping[str, Any], row: str) -> bool:
    return lab["rows"][row].get("rerun") is False


def _and(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _epochs(lab: Mapping[str, Any]) -> int | None:
    runs = lab["rows"].get("alone", {}).get("runs", [])
    return runs[0]["config"].get("epochs") if runs and "config" in runs[0] else None


# ---------------------------------------------------------------------------------------------
# The transfer set (issue 29): a teacher that never saw the students' images
# ---------------------------------------------------------------------------------------------
def load_transfer(path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The transfer-set summary, or None when it has not been run. Default: the shipped
    ``kdas_lite/lab_data/transfer_set.json`` (a link to ``docs/results/``). It is read in the
    lab-summary schema (``rows`` → ``delta_vs_alone`` → test set → ``per_seed``, a ``teacher``
    row or entry with its Kvasir mDice)."""
    if path is None:
        from kdas_lite.lab_data import lab_file

        path = Path(lab_file().parent) / "transfer_set.json"
    path = Path(path)
    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    if "rows" not in doc:
        raise ValueError(f"{path} is not a transfer-set summary (no 'rows'): it should hold "
                         "the lab-summary schema of experiments/real_lab.py")
    doc["_path"] = str(path)
    return doc


# ---------------------------------------------------------------------------------------------
# The verdict box
# ---------------------------------------------------------------------------------------------
def _lab_lines(lab: Mapping[str, Any], found: Sequence[Comparison], regime: str,
               teacher: str = "lab teacher") -> list[str]:
    labels = set_labels(lab)
    epochs = _epochs(lab)
    budget = f"{epochs} student epochs" if epochs else "the lab's budget"
    now, before = _teacher(lab, teacher), _teacher(lab, "teacher of 2026-12-01", True)
    lines = []
    for sign, head in ((1, "Helped"), (-1, "Hurt")):
        said = []
        for row in lab["rows"]:
            mine = [c for c in found if c.row == row and c.sign == sign]
            if not mine:
                continue
            avg = _find(found, row)
            where = [labels.get(c.test_set, c.test_set) for c in mine]
            said.append(f"**{lab['rows'][row].get('label', row)}** from the "
                        f"{before if _earlier(lab, row) else now}: {sign_word(sign)} the "
                        f"student alone on {_and(where)}"
                        + (f" (all test images {avg.format()})" if avg else ""))
        lines.append(f"- *{head}* ({regime}, {budget}): "
                     + ("; ".join(said) if said else "nothing, after Holm") + ".")
    quiet = [lab["rows"][r].get("label", r) for r in lab["rows"]
             if r not in ("alone", "teacher") and not any(c.row == r and c.sign for c in found)]
    if quiet:
        lines.append(f"- *No measurable difference on any set after Holm*: {'; '.join(quiet)}.")
    return lines


def sign_word(sign: int) -> str:
    """+1 → "above", −1 → "below", 0 → "not measurably different from"."""
    return {1: "above", -1: "below", 0: "not measurably different from"}[sign]


def _set_name(test_set: str, labels: Mapping[str, str] | None = None) -> str:
    return "all test images" if test_set == "avg" else (labels or {}).get(test_set, test_set)


def _ahead(sweep: Mapping[str, Any]) -> str:
    check = sweep.get("teacher_check") or {}
    if not check or check.get("clearly_ahead", True):
        return ""
    return (f"; this teacher is **not** clearly ahead of the student alone at "
            f"{check['at_epochs']} epochs ({check['margin']:+.3f} on Kvasir)")


def _sweep_line(sweep: Mapping[str, Any], name: str) -> str:
    found = sweep_comparisons(sweep)
    budgets = sorted({c.budget for c in found if c.budget is not None})
    moved = [f"{c.label} {c.word} at {c.budget} epochs on {_set_name(c.test_set)} "
             f"({c.format()})" for c in found if c.sign]
    trend = [f"{c.label} {'loses' if c.sign < 0 else 'gains'} ground from {budgets[0]} to "
             f"{c.budget} epochs on {_set_name(c.test_set)} ({c.format()})"
             for c in trend_comparisons(sweep) if c.sign]
    return (f"- *As the student trains longer* ({_and([str(b) for b in budgets])} epochs, from "
            f"the {_teacher(sweep, name)}{_ahead(sweep)}; {len(found)} comparisons): "
            + ("; ".join(moved) if moved else "no method measurably above or below the student "
               "alone at any budget")
            + ("; paired trend Δ(last) − Δ(first): " + "; ".join(trend) if trend else
               "; no measurable trend from the first budget to the last") + ".")


def verdict_box(lab: Mapping[str, Any], sweep: Mapping[str, Any] | None,
                weaker: Mapping[str, Any] | None, mech: Mapping[str, Any] | None,
                transfer: Mapping[str, Any] | None) -> str:
    """The verdict of the committed runs as a Markdown box (a block quote): which term helped,
    which hurt, at which student budget, from which teacher (by its Kvasir mDice), with the
    interval and the adjusted p — for the regime where the teacher saw the students' images
    (the lab and the sweeps) and for the transfer set (``None``: "not yet run")."""
    found = lab_comparisons(lab)
    lines = ["**Verdict of the committed runs** (generated from `docs/results/*.json`: mean "
             "paired Δ in mDice against the student alone of the same seed [95 % t-interval "
             "over seeds], raw p and Holm-adjusted p within each family; a word only where the "
             f"adjusted p < {LEVEL:g}).", "",
             "**Same images** — the students train on images their teacher also trained on:",
             *_lab_lines(lab, found, f"the lab, {len(found)} comparisons")]
    for doc, name in ((sweep, "sweep teacher"), (weaker, "re-trained lab teacher")):
        if doc is not None:
            lines.append(_sweep_line(doc, name))
    if sweep is not None and weaker is not None:
        moved = [c for c in teacher_comparisons(sweep, weaker) if c.sign]
        lines.append(f"- *A stronger teacher*: the {_teacher(sweep, 'sweep teacher')} against "
                     f"the {_teacher(weaker, 're-trained lab teacher')}, same students: "
                     + ("; ".join(f"{c.label} {c.word} at {c.budget} epochs ({c.format()})"
                                  for c in moved) if moved else
                        "no student measurably better or worse") + ".")
    if mech is not None:
        lines.append(f"- *Why L_SGM hurts* (from the {_teacher(mech, 'mechanism teacher')}): "
                     + _mechanism_sentence(mechanism_comparisons(mech), set_labels(lab)))
    lines += ["", "**Transfer set** — a teacher that never saw the students' images:"]
    if transfer is None:
        lines.append("- not yet run (`docs/results/transfer_set.json` is absent).")
    else:
        lines += _lab_lines(transfer, lab_comparisons(transfer, "transfer"),
                            "the transfer set", "transfer-set teacher")
    return "\n".join("> " + line if line else ">" for line in lines)


def _mechanism_sentence(found: Sequence[Comparison], labels: Mapping[str, str]) -> str:
    harm = [c for c in found if c.row == "sgm" and c.sign < 0]
    fixes = [c for c in found if c.against == "+ L_SGM" and c.sign > 0]
    best = max((c for c in found if c.against == "+ L_SGM"), key=lambda c: c.interval.mean,
               default=None)
    text = ("+ L_SGM is below the student alone on "
            + _and([_set_name(c.test_set, labels) for c in harm]) if harm else
            "+ L_SGM is not measurably below the student alone on any set")
    if fixes:
        text += "; changing " + _and([c.label for c in fixes]) + " measurably helps it"
    elif best is not None:
        text += (f"; no single change measurably helps it after Holm (largest: {best.label}, "
                 f"{best.format()} against + L_SGM on all test images)")
    return text + f" ({len(found)} comparisons)."


# ---------------------------------------------------------------------------------------------
# Takeaways (each statement names its teacher)
# ---------------------------------------------------------------------------------------------
def _by_word(found: Sequence[Comparison], row: str, test_set: str = "avg") -> str:
    """``"no measurable difference at 6, 12 and 24 epochs"`` (budgets grouped by word)."""
    groups: dict[str, list[str]] = {}
    for c in sorted((c for c in found if c.row == row and c.test_set == test_set),
                    key=lambda c: c.budget or 0):
        groups.setdefault(c.word, []).append(str(c.budget))
    return ", ".join(f"{w} at {_and(b)} epochs" for w, b in groups.items())


def takeaways(lab: Mapping[str, Any], sweep: Mapping[str, Any] | None = None,
              mech: Mapping[str, Any] | None = None, weaker: Mapping[str, Any] | None = None
              ) -> str:
    """The key results in plain words, generated: each statement names its teacher by its
    Kvasir mDice and its budget, and its words follow the Holm-adjusted p (all test images)."""
    found = lab_comparisons(lab)
    said = [f"{c.label} {c.word} ({c.format()})" for row in _HEADLINE
            if (c := _find(found, row)) is not None]
    lines = [f"- **In the lab** ({_epochs(lab)} student epochs, from the "
             f"{_teacher(lab, 'lab teacher')}), against the student alone on all test images: "
             + "; ".join(said) + "."]
    for doc, name in ((sweep, "sweep teacher"), (weaker, "re-trained lab teacher")):
        if doc is None:
            continue
        rows = sweep_comparisons(doc)
        parts = [f"{doc.get('labels', {}).get(row, row)} {_by_word(rows, row)}"
                 for row in sweep_rows(dict(doc))]
        trend = [f"{c.label} loses ground from the first budget to the last on "
                 f"{_set_name(c.test_set)} ({c.format()})"
                 for c in trend_comparisons(doc) if c.sign < 0]
        lines.append(f"- **Trained longer, from the {_teacher(doc, name)}**{_ahead(doc)} (all "
                     "test images, against the student alone of the same budget): "
                     + "; ".join(parts) + "." + (" Paired trend: " + "; ".join(trend) + "."
                                                 if trend else ""))
    if sweep is not None and weaker is not None:
        moved = [c for c in teacher_comparisons(sweep, weaker) if c.sign]
        lines.append(f"- **A stronger teacher** (the {_teacher(sweep, 'sweep teacher')} instead "
                     f"of the {_teacher(weaker, 're-trained lab teacher')}; the lab's own rows "
                     f"use the {_teacher(lab, 'lab teacher')}), each student against itself: "
                     + (_and([f"{c.label} {c.word} at {c.budget} epochs" for c in moved])
                        if moved else "no student measurably better or worse at any budget")
                     + ".")
    if mech is not None:
        lines.append(f"- **Why L_SGM hurts** (from the {_teacher(mech, 'mechanism teacher')}, "
                     "one property changed at a time): "
                     + _mechanism_sentence(mechanism_comparisons(mech), set_labels(lab)))
    lines.append("- A gain measured on an under-trained student is not a gain on a converged one "
                 "until it is measured there; a word here needs its Holm-adjusted p below "
                 f"{LEVEL:g}, so \"no measurable difference\" is not \"no difference\".")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Notebook 04's readings of its own run beside the lab
# ---------------------------------------------------------------------------------------------
#: The settings that make a run the lab's regime (compared by :func:`regime_note`).
REGIME_KEYS = ("teacher_encoder", "student_encoder", "pretrained", "image_size", "epochs",
               "max_train_images", "batch_size")


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
    the lab's Δ of the same row (interval, Holm word, range of seeds) on ``test_set``.
    ``label`` names this runtime's ``test_set``; the lab's values carry the lab's own label
    (:func:`~kdas_lite.lab_results.set_labels`: the data they were computed on)."""
    if "student alone" not in scores:
        return []
    found = lab_comparisons(lab)
    alone = [float(x) for x in scores["student alone"]]
    teacher = t_interval(list(lab["rows"]["teacher"]["delta_vs_alone"][test_set]["per_seed"]
                              .values())) if test_set in lab["rows"].get("teacher", {}).get(
        "delta_vs_alone", {}) else None
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
        c = _find(found, row, test_set) if row else None
        if c is not None:
            per_seed = list(lab["rows"][row]["delta_vs_alone"][test_set]["per_seed"].values())
            inside = min(per_seed) <= mean <= max(per_seed)
            line += (f"; lab {c.format()}: {sign_word(c.sign)} the student alone on "
                     f"{set_labels(lab).get(test_set, test_set)} "
                     f"after Holm, positive on {sum(v > 0 for v in per_seed)} of "
                     f"{len(per_seed)} seeds; this run lies {'inside' if inside else 'outside'}"
                     f" the lab's range of seeds [{min(per_seed):+.3f}, {max(per_seed):+.3f}]")
        lines.append(line + ".")
    return lines


def lab_set_lines(lab: Mapping[str, Any], rows: Sequence[str] = ("sgm", "kdas", "cwd")
                  ) -> list[str]:
    """Per headline row of the lab: its lowest and highest mean Δ over the test sets (labels
    from the summary) and its all-images Δ with the Holm word."""
    labels, found = set_labels(lab), lab_comparisons(lab)
    lines = []
    for row in rows:
        mine = {c.test_set: c for c in found if c.row == row and c.test_set != "avg"}
        if not mine:
            continue
        low = min(mine.values(), key=lambda c: c.interval.mean)
        high = max(mine.values(), key=lambda c: c.interval.mean)
        every = _find(found, row)
        lines.append(f"- Lab, {lab['rows'][row].get('label', row)} on every test set: lowest Δ "
                     f"on {labels[low.test_set]} ({low.interval.mean:+.3f}), highest on "
                     f"{labels[high.test_set]} ({high.interval.mean:+.3f})"
                     + (f"; over all test images {every.format()}: {sign_word(every.sign)} the "
                        "student alone after Holm." if every else "."))
    return lines


def time_note(lab: Mapping[str, Any], minutes_here: Sequence[float]) -> str:
    """This run's training minutes per run beside the lab's (its ``machine``)."""
    lab_min = [r["train_s"] / 60 for row, info in lab["rows"].items() if row != "teacher"
               for r in info["runs"] if "train_s" in r]
    return (f"**Time.** Each run trained in {min(minutes_here):.1f}–{max(minutes_here):.1f} min "
            f"here ({len(minutes_here)} runs, this machine); the lab's runs took "
            f"{min(lab_min):.1f}–{max(lab_min):.1f} min "
            f"({lab.get('machine', 'machine not recorded')}).")


def run_reading(lab: Mapping[str, Any], config: Any, scores: Mapping[str, Sequence[float]],
                teacher_score: float, test_set: str, label: str,
                lab_row_of: Callable[[str], str | None], minutes_here: Sequence[float]) -> str:
    """Notebook 04 section 7: this run read beside the committed lab (Markdown):
    :func:`regime_note`, :func:`live_lines`, :func:`lab_set_lines` and :func:`time_note`."""
    return "\n".join([regime_note(lab, config), "",
                      *live_lines(lab, scores, teacher_score, test_set, label, lab_row_of), "",
                      *lab_set_lines(lab), "", time_note(lab, minutes_here)])


def lab_rows_table(lab: Mapping[str, Any]) -> str:
    """Markdown: **every** row of the lab summary (its own labels), per test set the mean paired
    Δ against the student alone with its 95 % t-interval, ``*`` where the Holm-adjusted p of the
    lab family is below :data:`LEVEL`; the rows kept from earlier runs name their teacher."""
    labels, found = set_labels(lab), lab_comparisons(lab)
    sets = [s for s in lab["test_sets"] if s != "avg"] + ["avg"]
    lines = ["| lab row | seeds | " + " | ".join(labels.get(s, s) for s in sets) + " |",
             "| --- | ---: |" + " ---: |" * len(sets)]
    for row, info in lab["rows"].items():
        if row == "alone":
            continue
        ivs = paired_intervals(dict(lab), row)
        n = max((iv.n for iv in ivs.values()), default=0)
        cells = []
        for s in sets:
            c = _find(found, row, s)
            cells.append((c.interval.format() + ("*" if c.sign else "")) if c else
                         ivs[s].format() if s in ivs else "—")
        name = info.get("label", row) + (
            f" (earlier runs, from the {_teacher(lab, 'teacher of 2026-12-01', True)})"
            if _earlier(lab, row) else "")
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def exercise3_answer(lab: Mapping[str, Any], rows: Sequence[str] = _HEADLINE) -> str:
    """The answer to notebook 04's exercise 3, from the lab's own numbers: per headline row,
    its mean Δ over the seen sets (:data:`SEEN_SETS`) and over the unseen ones, beside the
    teacher's own lead over the student alone on each group."""
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
            text += (f" The {_teacher(lab, 'lab teacher')} leads the student alone by "
                     f"{seen:+.3f} on the seen sets and {unseen:+.3f} on the unseen ones: it "
                     f"has more to give on the {more} sets, which is where a method that only "
                     "imitates it can gain most. (The unseen group counts CVC-ColonDB and "
                     "CVC-300, its frames 149–208, as two sets: not independent evidence.)")
    for where in ("seen", "unseen"):
        names = [name for name, least in gains.items() if least == where]
        if names:
            text += (f" **So in this lab the methods that gain on both groups "
                     f"({_and(names)}) gain least on the {where} sets.**")
    return text


# ---------------------------------------------------------------------------------------------
# L_SGM's mechanism, from the committed runs
# ---------------------------------------------------------------------------------------------
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
        stats_ = per_set[test_set]
        rates = stats_["error_rates"]
        for region, key in (("band", "positive_rate_band"), ("interior", "fn_rate_interior")):
            r = stats_["regions"][region]
            values = [rates[m][key] for m in ("teacher", "alone", "sgm")]
            if key.startswith("fn_"):
                values = [1 - v for v in values]  # the interior's positive rate
            lines.append(f"| {seed} | {region} | {r['pixel_share']:.3f} | "
                         f"{r['mean_delta_p']:+.4f} | "
                         + " / ".join(f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines)


def sgm_form_reading(mech: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> str:
    """The σ(P) form of L_SGM beside the logit form, from the mechanism rows: each against the
    student alone on all images, and σ(P) against + L_SGM, with raw and Holm-adjusted p
    (mechanism family); the teacher's and the student's mean logits on polyp pixels from the
    map statistics."""
    found = mechanism_comparisons(mech)
    logit, prob = _find(found, "sgm"), _find(found, "sgm-prob")
    vs_sgm = _find(found, "sgm-prob", against="+ L_SGM")
    lines = []
    maps = (mech.get("map_statistics") or {}).get("per_seed", {})
    if maps:
        fg = {m: statistics.fmean(s["all"]["logits"][f"{m}/p1/fg"]["mean"] for s in maps.values())
              for m in ("teacher", "alone", "sgm")}
        lines.append(f"- On polyp pixels the {_teacher(mech, 'mechanism teacher')}'s P1 "
                     f"averages {fg['teacher']:+.2f}, the student alone's {fg['alone']:+.2f}, "
                     f"+ L_SGM's {fg['sgm']:+.2f} (mean over {len(maps)} seeds, all test "
                     "images): the logit form asks the student to match values "
                     f"{fg['teacher'] / fg['alone']:.1f}× its own.")
    for c, form in ((logit, "logit form (the paper's L_SGM)"), (prob, "σ(P) form")):
        if c is not None:
            lines.append(f"- **{form}** vs the student alone, all test images: {c.format()} → "
                         f"{c.word}.")
    if vs_sgm is not None:
        word = {1: "better", -1: "worse", 0: "no measurable difference"}[vs_sgm.sign]
        lines.append(f"- σ(P) form vs the logit form, same seeds: {vs_sgm.format()} → {word} "
                     f"after Holm over the {len(found)} mechanism comparisons.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Tables of the sweeps, the teacher comparison and the mechanism (Holm-adjusted)
# ---------------------------------------------------------------------------------------------
def _cell(c: Comparison | None) -> str:
    """``+0.084 [-0.036, +0.204] · Holm 1.000``, bold where the adjusted p is below
    :data:`LEVEL`."""
    if c is None:
        return "—"
    holm_p = "—" if math.isnan(c.p_holm) else f"{c.p_holm:.3f}"
    return (f"**{c.interval.format()}**" if c.sign else c.interval.format()) + f" · Holm {holm_p}"


def sweep_table(sweep: Mapping[str, Any], name: str = "sweep teacher") -> str:
    """Markdown: one budget sweep — per method and set, its paired Δ against the student alone
    of each budget and its trend Δ(last) − Δ(first), with the Holm-adjusted p of the sweep's
    family (bold where below :data:`LEVEL`); the teacher named by its Kvasir mDice."""
    found, trends = sweep_comparisons(sweep), trend_comparisons(sweep)
    budgets = sorted({c.budget for c in found if c.budget is not None})
    alone = {e: sweep["budgets"][str(e)].get("alone", {}).get("mDice", {}) for e in budgets}
    lines = [f"From the {_teacher(sweep, name)}{_ahead(sweep)}; {len(found)} comparisons, "
             f"{len(trends)} trends:", "",
             "| method | set | " + " | ".join(f"{e} epochs" for e in budgets)
             + f" | trend Δ({budgets[-1]}) − Δ({budgets[0]}) |",
             "| --- | --- |" + " ---: |" * (len(budgets) + 1)]
    sets = list(dict.fromkeys(c.test_set for c in found))
    for s in sets:
        levels = [f"{statistics.fmean(alone[e][s].values()):.3f}" if s in alone[e] else "—"
                  for e in budgets]
        lines.append(f"| student alone (level) | {_set_name(s)} | " + " | ".join(levels)
                     + " | |")
    for row in sweep_rows(dict(sweep)):
        for s in sets:
            cells = [_cell(_find(found, row, s, e)) for e in budgets]
            trend = next((c for c in trends if c.row == row and c.test_set == s), None)
            label = sweep.get("labels", {}).get(row, row)
            lines.append(f"| {label} | {_set_name(s)} | " + " | ".join(cells)
                         + f" | {_cell(trend)} |")
    return "\n".join(lines)


def teacher_table(sweep: Mapping[str, Any], weaker: Mapping[str, Any]) -> str:
    """Markdown: each student distilled from ``sweep``'s teacher minus itself distilled from
    ``weaker``'s, per method, set and budget, with the Holm-adjusted p of the teacher family."""
    found = teacher_comparisons(sweep, weaker)
    budgets = sorted({c.budget for c in found if c.budget is not None})
    lines = [f"The {_teacher(sweep, 'sweep teacher')} minus the "
             f"{_teacher(weaker, 're-trained lab teacher')}, each student against itself; "
             f"{len(found)} comparisons:", "",
             "| method | set | " + " | ".join(f"{e} epochs" for e in budgets) + " |",
             "| --- | --- |" + " ---: |" * len(budgets)]
    for row in sweep_rows(dict(sweep)):
        for s in dict.fromkeys(c.test_set for c in found):
            lines.append(f"| {sweep.get('labels', {}).get(row, row)} | {_set_name(s)} | "
                         + " | ".join(_cell(_find(found, row, s, e, "the weaker teacher"))
                                      for e in budgets) + " |")
    return "\n".join(lines)


def mechanism_table(mech: Mapping[str, Any], test_set: str = "avg",
                    labels: Mapping[str, str] | None = None) -> str:
    """Markdown: each mechanism row against + L_SGM (all images) and against the student alone
    on ``test_set``, with the Holm-adjusted p of the mechanism family, and what the change does
    to the harm in words that follow the adjusted p."""
    found = mechanism_comparisons(mech)
    lines = [f"From the {_teacher(mech, 'mechanism teacher')}; {len(found)} comparisons; "
             f"{_set_name(test_set, labels)}:", "",
             "| row | Δ vs + L_SGM | Δ vs the student alone | after Holm |",
             "| --- | ---: | ---: | --- |"]
    for row, info in mech["rows"].items():
        if row == "alone":
            continue
        vs_sgm = _find(found, row, "avg", against="+ L_SGM") if test_set == "avg" else None
        vs_alone = _find(found, row, test_set)
        if row == "sgm":
            effect = f"{sign_word(vs_alone.sign) if vs_alone else '—'} the student alone"
        elif vs_sgm is None or not vs_sgm.sign:
            effect = "no measurable effect on the harm"
        elif vs_sgm.sign > 0:
            effect = ("removes the harm" if vs_alone is not None and vs_alone.sign >= 0
                      else "reduces the harm")
        else:
            effect = "makes it worse"
        lines.append(f"| {info.get('label', row)} | {_cell(vs_sgm)} | {_cell(vs_alone)} | "
                     f"{effect} |")
    return "\n".join(lines)
