"""The course's verdict: what the committed runs say once the many comparisons are accounted for.

Notebook 04 opens with :func:`verdict_box` and ends with :func:`takeaways`; both are generated
from the summaries in ``docs/results/*.json`` and hold no statistics of their own: every
p-value, Holm adjustment, family and verdict word comes from :mod:`kdas_lite.lab_families`
(the families of issue 28) and :mod:`kdas_lite.lab_stats` (:class:`~kdas_lite.lab_stats.
PairedTest`):

===================  ============================================================================
family               comparisons (paired Δ per seed; two-sided paired t-test of mean Δ = 0)
===================  ============================================================================
lab                  :func:`~kdas_lite.lab_families.lab_tests`: every row of ``real_lab.json``
                     but the student alone and the teacher, on every test set and on all images
sweep                :func:`~kdas_lite.lab_families.sweep_tests`: one family per
                     ``budget_sweep*.json``, each method × budget × (Kvasir, all images)
sweep trends         :func:`~kdas_lite.lab_families.trend_tests`: per sweep, each method's
                     ``Δ(largest budget) − Δ(smallest)`` seed by seed, on Kvasir and all images
teacher comparison   :func:`~kdas_lite.lab_families.teacher_tests`: the same students from the two
                     sweeps' teachers (stronger − weaker)
mechanism            :func:`~kdas_lite.lab_families.mechanism_tests`: + L_SGM and each
                     intervention against the student alone on every set, each intervention
                     against + L_SGM on Kvasir and all images
transfer             ``transfer_set.json`` (a teacher that brings images the labels lack): its
                     own families, Holm within each (:mod:`kdas_lite.transfer_results`); the
                     box reads the primary one (:func:`transfer_lines`)
===================  ============================================================================

A word follows the **Holm-adjusted** p (:attr:`~kdas_lite.lab_stats.PairedTest.verdict`):
"above" / "below" where it is below 0.05; "equivalent within ±m" where the adjusted
equivalence test at the margin m says so; otherwise "no measurable difference (smallest
detectable effect X)" — never "no difference". "All images" is the 562 distinct test images
(CVC-300 is CVC-ColonDB frames 149–208, counted once; :func:`~kdas_lite.lab_results.
all_images_label`).

Every statement names its teacher by its Kvasir mDice, read from the file it belongs to
(:func:`teacher_kvasir`). The tables and readings that show where each line comes from are in
:mod:`kdas_lite.verdict_tables`.

Example::

    from kdas_lite.lab_results import load_lab, load_mechanism, load_sweep
    from kdas_lite.verdict import verdict_box
    print(verdict_box(load_lab(), load_sweep(), None, load_mechanism(), None))
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kdas_lite.lab_families import (
    lab_tests,
    mechanism_tests,
    sweep_rows,
    sweep_tests,
    teacher_tests,
    trend_tests,
)
from kdas_lite.lab_results import all_images_label, mechanism_effect, set_labels
from kdas_lite.lab_stats import ALPHA, PairedTest, format_interval, format_p
from kdas_lite.transfer_results import FAMILIES, POOL_LABELS, progress, run_counts

__all__ = [
    "HEADLINE",
    "and_join",
    "key_results",
    "lab_epochs",
    "load_transfer",
    "named_teacher",
    "takeaways",
    "teacher_kvasir",
    "transfer_lines",
    "transfer_takeaway",
    "transfer_word",
    "trend_word",
    "verdict_box",
]

#: The lab rows every reading names first (+ L_SGM, + L_AT, KDAS, CWD).
HEADLINE = ("sgm", "at", "kdas", "cwd")


# ---------------------------------------------------------------------------------------------
# Teachers, labels and words, from the files they belong to
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


def named_teacher(doc: Mapping[str, Any], name: str, earlier: bool = False) -> str:
    """``"lab teacher (Kvasir 0.814)"`` (:func:`teacher_kvasir`), or "(score not recorded)"."""
    score = teacher_kvasir(doc, earlier)
    return f"{name} (Kvasir {score:.3f})" if score is not None else f"{name} (score not recorded)"


def and_join(items: Sequence[str]) -> str:
    """``["6", "12", "24"]`` → ``"6, 12 and 24"``."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def lab_epochs(lab: Mapping[str, Any]) -> int | None:
    """The students' epochs of a lab summary (its student alone's config), None if unrecorded."""
    runs = lab["rows"].get("alone", {}).get("runs", [])
    return runs[0]["config"].get("epochs") if runs and "config" in runs[0] else None


def trend_word(test: PairedTest) -> str:
    """The words of a trend test ``Δ(largest budget) − Δ(smallest)``: "the effect shrinks" /
    "grows" where its Holm-adjusted p is below 0.05, else its verdict (no measurable change,
    with the smallest detectable effect)."""
    if test.sign:
        return "the effect shrinks" if test.sign < 0 else "the effect grows"
    return test.verdict.replace("no measurable difference", "no measurable change")


def _said(test: PairedTest) -> str:
    """``+0.091 [+0.070, +0.112] (p 0.00026, Holm 0.018): above``."""
    return f"{test.format()} ({test.format_p()}): {test.verdict}"


def _family(tests: Mapping[Any, PairedTest]) -> str:
    """``Holm over the 72 tests of "lab (earlier runs)"``."""
    found = next((t for t in tests.values() if t.family), None)
    return (f"Holm over the {found.family_size} tests of \"{found.family}\"" if found
            else "no test")


def _earlier(lab: Mapping[str, Any], row: str) -> bool:
    return lab["rows"][row].get("rerun") is False


# ---------------------------------------------------------------------------------------------
# The transfer set (issue 29): a teacher that never saw the students' images
# ---------------------------------------------------------------------------------------------
def load_transfer(path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The transfer-set summary, or None when it has not been run. Default: the shipped
    ``kdas_lite/lab_data/transfer_set.json`` (a link to ``docs/results/``).

    It is read in the format of :mod:`kdas_lite.transfer_results` (written by
    ``experiments/transfer_set.py``): ``families`` (name → contrasts, each with ``arm``,
    ``reference``, ``labels``, ``pool``, ``estimate``, ``ci95`` / ``ci_holm``, ``p`` /
    ``p_holm``, ``n_units``, ``n_teachers``, ``verdict``), ``context``, ``arms``, ``teachers``
    (name → ``kvasir_mDice`` …), ``partial`` and ``missing``. A bare ``NaN`` (files written
    before contrasts without runs were null) is read as null.

    Raises:
        ValueError: the file is not such a summary (the message names it and the fix).
    """
    if path is None:
        from kdas_lite.lab_data import lab_file

        path = Path(lab_file().parent) / "transfer_set.json"
    path = Path(path)
    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda _name: None)
    lacking = [key for key in ("families", "context", "arms", "teachers") if key not in doc]
    if lacking:
        raise ValueError(f"{path} is not a transfer-set summary (no {lacking[0]!r}): rewrite it "
                         "with `python experiments/transfer_set.py --report-only`")
    doc["_path"] = str(path)
    return doc


def transfer_word(contrast: Mapping[str, Any]) -> str:
    """The words of one transfer-set contrast: "too few runs" below two paired units, else
    the verdict :func:`kdas_lite.transfer_results.verdict` wrote ("above" / "below" only where
    the Holm-adjusted p < 0.05), "not measurable" with its smallest detectable effect."""
    if contrast["n_units"] < 2 or contrast["p_holm"] is None:
        return "too few runs"
    word = contrast["verdict"]
    sde = contrast.get("smallest_detectable")
    if word == "not measurable at this power" and sde is not None:
        word += f" (smallest detectable effect {sde:.3f})"
    return word


def _transfer_teachers(doc: Mapping[str, Any]) -> str:
    """``t0 (Kvasir 0.845) and t1 (Kvasir 0.853)``."""
    named = [f"{name} (Kvasir {t['kvasir_mDice']:.3f})"
             for name, t in sorted(doc["teachers"].items())]
    return and_join(named) if named else "(not recorded yet)"


def _transfer_said(c: Mapping[str, Any]) -> str:
    """``D-kdas +0.050 [+0.031, +0.069] (p 0.00012, Holm 0.0019): above`` (the interval at the
    contrast's Holm step level)."""
    lo, hi = c["ci_holm"] or (None, None)
    return (f"{c['arm']} {format_interval(c['estimate'], lo, hi)} (p {format_p(c['p'])}, Holm "
            f"{format_p(c['p_holm'])}): {transfer_word(c)}")


def _too_few(found: Sequence[Mapping[str, Any]]) -> list[str]:
    """``D-pixel and D-at: too few runs (0 paired units each)``, grouped by unit count."""
    groups: dict[int, list[str]] = {}
    for c in found:
        if transfer_word(c) == "too few runs":
            groups.setdefault(c["n_units"], []).append(c["arm"])
    return [f"{and_join(arms)}: too few runs ({n} paired unit{'' if n == 1 else 's'}"
            f"{' each' if len(arms) > 1 else ''})" for n, arms in sorted(groups.items())]


def transfer_lines(doc: Mapping[str, Any]) -> list[str]:
    """The transfer set in the verdict box: its teachers by their Kvasir mDice, what is still
    missing of the plan, and each primary contrast (D − A and D − C of every D arm on each
    primary pool) with its Holm-level interval, raw and adjusted p and verdict word."""
    labels, pools, _ = FAMILIES["primary"]
    family = doc["families"].get("primary", [])
    tested = sum(c["p"] is not None for c in family)
    holm = (f"Holm over the {tested} tested of the {len(family)} primary contrasts, intervals "
            "at each one's Holm step level" if tested else "no contrast tested yet")
    steps = f", every arm {doc['steps']} optimiser steps" if doc.get("steps") else ""
    lines = [f"- *From the transfer-set teachers* {_transfer_teachers(doc)}, trained without the "
             f"transfer set U; the students have |L| = {labels} labelled images{steps}."]
    if run_counts(doc)[1]:
        lines.append(f"- {progress(doc)} Each verdict here can change as they arrive.")
    what = {"A": "does distilling on images the labels lack beat the student alone?",
            "C": "do soft targets beat the teacher's hard pseudo-labels of the same images?"}
    for pool in pools:
        for ref in ("A", "C"):
            found = [c for c in family if c["pool"] == pool and c["reference"] == ref]
            said = [_transfer_said(c) for c in found if transfer_word(c) != "too few runs"]
            lines.append(f"- *D − {ref}* on the {POOL_LABELS[pool]} — {what[ref]} ({holm}): "
                         + "; ".join(said + _too_few(found)) + ".")
    return lines


def transfer_takeaway(doc: Mapping[str, Any]) -> str:
    """One takeaway line for the transfer set: each D arm's word against A and against C on
    all distinct test images, the teachers by their Kvasir mDice and what is still missing."""
    labels, pools, _ = FAMILIES["primary"]
    family = doc["families"].get("primary", [])
    parts = []
    for ref in ("A", "C"):
        found = [c for c in family if c["pool"] == pools[0] and c["reference"] == ref]
        said = [f"{c['arm']} {format_interval(c['estimate'], *c['ci_holm'])}: {transfer_word(c)}"
                for c in found if transfer_word(c) != "too few runs"]
        if said:
            parts.append(f"D − {ref}: " + "; ".join(said + _too_few(found)))
    done, missing = run_counts(doc)
    return (f"- **A teacher that brings images the labels lack** (the transfer set, from "
            f"{_transfer_teachers(doc)}; |L| = {labels}, the {POOL_LABELS[pools[0]]}, Holm-level "
            "intervals): " + (". ".join(parts) if parts else "too few runs yet for every primary "
                              "contrast (D − A and D − C of each D arm)") + "."
            + (f" Partial: {missing} of the {done + missing} planned student runs are still "
               "missing." if missing else ""))


# ---------------------------------------------------------------------------------------------
# The verdict box
# ---------------------------------------------------------------------------------------------
def _lab_lines(lab: Mapping[str, Any], regime: str, teacher: str = "lab teacher") -> list[str]:
    """Helped / hurt / neither, per row of a lab summary (:func:`lab_tests`)."""
    tests = lab_tests(dict(lab))
    labels = set_labels(dict(lab))
    epochs = lab_epochs(lab)
    budget = f"{epochs} student epochs" if epochs else "the lab's budget"
    now = named_teacher(lab, teacher)
    before = named_teacher(lab, "teacher of 2026-12-01", True)
    lines = []
    for sign, head in ((1, "Helped"), (-1, "Hurt")):
        said = []
        for row in lab["rows"]:
            where = [labels.get(s, s) for (r, s), t in tests.items()
                     if r == row and s != "avg" and t.sign == sign]
            avg = tests.get((row, "avg"))
            if not where and not (avg and avg.sign == sign):
                continue
            said.append(f"**{lab['rows'][row].get('label', row)}** from the "
                        f"{before if _earlier(lab, row) else now}: "
                        f"{'above' if sign > 0 else 'below'} the student alone on "
                        f"{and_join(where) if where else labels['avg']}"
                        + (f" ({labels['avg']} {_said(avg)})" if avg else ""))
        lines.append(f"- *{head}* ({regime}, {budget}; {_family(tests)}): "
                     + ("; ".join(said) if said else "nothing, after Holm") + ".")
    quiet = [f"{lab['rows'][r].get('label', r)} ({labels['avg']} {_said(tests[(r, 'avg')])})"
             for r in lab["rows"] if (r, "avg") in tests
             and not any(t.sign for (row, _), t in tests.items() if row == r)]
    if quiet:
        lines.append("- *Neither, on any set after Holm*: " + "; ".join(quiet) + ".")
    return lines


def _sweep_line(sweep: Mapping[str, Any], name: str) -> str:
    """One sweep: what is above / below the student alone at any budget, and its trends."""
    tests, trends = sweep_tests(dict(sweep)), trend_tests(dict(sweep))
    labels, avg = sweep.get("labels", {}), all_images_label(dict(sweep))
    budgets = sorted({e for _, e, _ in tests})

    def where(s: str) -> str:
        return avg if s == "avg" else s
    moved = [f"{labels.get(r, r)} {t.verdict} at {e} epochs on {where(s)} ({t.format()}, "
             f"{t.format_p()})" for (r, e, s), t in tests.items() if t.sign]
    shown = {k: t for k, t in trends.items() if t.sign}
    if not shown and trends:  # the closest to a trend, with its numbers
        best = min(trends, key=lambda k: trends[k].p_holm or 1.0)
        shown = {best: trends[best]}
    trend = [f"{labels.get(r, r)} on {where(s)} {t.format()} ({t.format_p()}): {trend_word(t)}"
             for (r, s), t in shown.items()]
    others = len(trends) - len(shown)
    check = sweep.get("teacher_check") or {}
    ahead = "" if check.get("clearly_ahead", True) else (
        f"; this teacher is **not** clearly ahead of the student alone at "
        f"{check['at_epochs']} epochs ({check['margin']:+.3f} on Kvasir)")
    return (f"- *As the student trains longer* ({and_join([str(b) for b in budgets])} epochs, "
            f"from the {named_teacher(sweep, name)}{ahead}; {_family(tests)}): "
            + ("; ".join(moved) if moved else "no method measurably above or below the student "
               "alone at any budget")
            + f"; paired trend Δ({budgets[-1]}) − Δ({budgets[0]}) ({_family(trends)}): "
            + "; ".join(trend)
            + (f" (the other {others}: no measurable change)" if others else "") + ".")


def _mechanism_sentence(mech: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """Where + L_SGM is below the student alone, and what the interventions do to it."""
    tests = mechanism_tests(dict(mech))
    harm = [labels.get(s, s) for (ref, r, s), t in tests.items()
            if ref == "alone" and r == "sgm" and t.sign < 0]
    text = ("+ L_SGM is below the student alone on " + and_join(harm) if harm else
            "+ L_SGM is not measurably below the student alone on any set")
    fixes = {k: t for k, t in tests.items() if k[0] == "sgm"}
    helped = [f"{mech['rows'][r].get('label', r)} on {labels.get(s, s)}: "
              f"{mechanism_effect(t, tests.get(('alone', r, s)))}"
              for (_, r, s), t in fixes.items() if t.sign]
    if helped:
        text += "; " + "; ".join(helped)
    elif fixes:
        (_, r, s), t = max(fixes.items(), key=lambda kt: kt[1].mean)
        text += (f"; no single change measurably helps it after Holm (largest: "
                 f"{mech['rows'][r].get('label', r)} against + L_SGM on {labels.get(s, s)}, "
                 f"{_said(t)})")
    return text + f" ({_family(tests)})."


def verdict_box(lab: Mapping[str, Any], sweep: Mapping[str, Any] | None,
                weaker: Mapping[str, Any] | None, mech: Mapping[str, Any] | None,
                transfer: Mapping[str, Any] | None) -> str:
    """The verdict of the committed runs as a Markdown box (a block quote): which term helped,
    which hurt, at which student budget, from which teacher (by its Kvasir mDice), with the
    interval, the raw and the Holm-adjusted p — for the regime where the teacher saw the
    students' images (the lab and the sweeps) and for the transfer set (``None``: "not yet
    run")."""
    labels = set_labels(dict(lab))
    lines = ["**Verdict of the committed runs** (generated from `docs/results/*.json`: mean "
             "paired Δ in mDice against the student alone of the same seed [95 % t-interval "
             "over seeds], raw p and Holm-adjusted p within each family; \"above\" or \"below\" "
             f"only where the adjusted p < {ALPHA:g}; {labels['avg']}: CVC-300 is CVC-ColonDB "
             "frames 149–208, counted once).", "",
             "**Same images** — the students train on images their teacher also trained on:",
             *_lab_lines(lab, "the lab")]
    for doc, name in ((sweep, "sweep teacher"), (weaker, "re-trained lab teacher")):
        if doc is not None:
            lines.append(_sweep_line(doc, name))
    if sweep is not None and weaker is not None:
        tests = teacher_tests(dict(sweep), dict(weaker))
        moved = [f"{sweep.get('labels', {}).get(r, r)} {'better' if t.sign > 0 else 'worse'} "
                 f"at {e} epochs ({t.format()}, {t.format_p()})"
                 for (r, e, _), t in tests.items() if t.sign]
        lines.append(f"- *A stronger teacher*: the {named_teacher(sweep, 'sweep teacher')} "
                     f"against the {named_teacher(weaker, 're-trained lab teacher')}, same "
                     f"students ({_family(tests)}): "
                     + ("; ".join(moved) if moved else
                        "no student measurably better or worse at any budget") + ".")
    if mech is not None:
        lines.append(f"- *Why L_SGM hurts* (from the {named_teacher(mech, 'mechanism teacher')}):"
                     " " + _mechanism_sentence(mech, labels))
    lines += ["", "**Transfer set** — a teacher that brings images the labels lack (it never "
              "saw the transfer set U; the students never see U's labels):"]
    if transfer is None:
        lines.append("- not yet run (`kdas_lite/lab_data/transfer_set.json` is absent): the "
                     "pre-registration is in docs/RESULTS.md, section \"Transfer set\"; this box "
                     "reads the contrasts once they are run.")
    else:
        lines += transfer_lines(transfer)
    return "\n".join("> " + line if line else ">" for line in lines)


# ---------------------------------------------------------------------------------------------
# Takeaways (each statement names its teacher)
# ---------------------------------------------------------------------------------------------
def _by_budget(tests: Mapping[tuple[str, int, str], PairedTest], row: str, test_set: str) -> str:
    """``"no measurable difference at 6, 12 and 24 epochs (smallest detectable effects
    0.080–0.210)"`` (budgets grouped by word)."""
    groups: dict[int, list[PairedTest]] = {}
    budgets: dict[int, list[str]] = {}
    for (r, e, s), t in sorted(tests.items(), key=lambda kt: kt[0][1]):
        if r == row and s == test_set:
            groups.setdefault(t.sign, []).append(t)
            budgets.setdefault(t.sign, []).append(str(e))
    parts = []
    for sign, found in groups.items():
        at = f"at {and_join(budgets[sign])} epochs"
        if sign:
            parts.append(f"{'above' if sign > 0 else 'below'} {at}")
            continue
        sde = [t.sde for t in found if t.sde is not None]
        parts.append(f"no measurable difference {at}" + (
            f" (smallest detectable effect {min(sde):.3f}–{max(sde):.3f})" if sde else ""))
    return ", ".join(parts)


def takeaways(lab: Mapping[str, Any], sweep: Mapping[str, Any] | None = None,
              mech: Mapping[str, Any] | None = None, weaker: Mapping[str, Any] | None = None
              ) -> str:
    """The key results in plain words, generated: each statement names its teacher by its
    Kvasir mDice and its budget, and its words follow the Holm-adjusted p within its family
    (all distinct images; the trends on Kvasir and all images)."""
    tests, labels = lab_tests(dict(lab)), set_labels(dict(lab))
    said = [f"{lab['rows'][row].get('label', row)} {_said(tests[(row, 'avg')])}"
            for row in HEADLINE if (row, "avg") in tests]
    lines = [f"- **In the lab** ({lab_epochs(lab)} student epochs, from the "
             f"{named_teacher(lab, 'lab teacher')}), against the student alone on "
             f"{labels['avg']}: " + "; ".join(said) + "."]
    for doc, name in ((sweep, "sweep teacher"), (weaker, "re-trained lab teacher")):
        if doc is None:
            continue
        found, trends = sweep_tests(dict(doc)), trend_tests(dict(doc))
        names = doc.get("labels", {})
        avg = all_images_label(dict(doc))
        parts = [f"{names.get(row, row)} {_by_budget(found, row, 'avg')}"
                 for row in sweep_rows(dict(doc))]
        budgets = sorted({e for _, e, _ in found})
        trend = [f"{names.get(r, r)} on {avg if s == 'avg' else s} {t.format()} "
                 f"({t.format_p()}): {trend_word(t)}" for (r, s), t in trends.items()
                 if r == "cwd" or t.sign]
        lines.append(f"- **Trained longer, from the {named_teacher(doc, name)}** (against the "
                     f"student alone of the same budget, {avg}): " + "; ".join(parts)
                     + f". Paired trend Δ({budgets[-1]}) − Δ({budgets[0]}) per seed: "
                     + "; ".join(trend) + ".")
    if sweep is not None and weaker is not None:
        moved = [f"{sweep.get('labels', {}).get(r, r)} {'better' if t.sign > 0 else 'worse'} "
                 f"at {e} epochs" for (r, e, _), t in teacher_tests(dict(sweep), dict(weaker))
                 .items() if t.sign]
        lines.append(f"- **A stronger teacher** (the {named_teacher(sweep, 'sweep teacher')} "
                     f"instead of the {named_teacher(weaker, 're-trained lab teacher')}; the "
                     f"lab's own rows use the {named_teacher(lab, 'lab teacher')}), each student "
                     "against itself: " + (and_join(moved) if moved else
                                           "no student measurably better or worse at any "
                                           "budget") + ".")
    if mech is not None:
        lines.append(f"- **Why L_SGM hurts** (from the {named_teacher(mech, 'mechanism teacher')}"
                     ", one property changed at a time): " + _mechanism_sentence(mech, labels))
    lines.append("- A gain measured on an under-trained student is not a gain on a converged one "
                 "until it is measured there; a word needs its Holm-adjusted p below "
                 f"{ALPHA:g}, and \"no measurable difference\" with its smallest detectable "
                 "effect is not \"no difference\": only an equivalence test at a stated margin "
                 "can say that.")
    return "\n".join(lines)


def key_results(lab: Mapping[str, Any], sweep: Mapping[str, Any] | None = None,
                weaker: Mapping[str, Any] | None = None,
                transfer: Mapping[str, Any] | None = None) -> str:
    """Notebook 04's key takeaways in numbers (Markdown bullets): KDAS and CWD at the lab's
    budget on all distinct images (their verdicts, with the smallest detectable effect where
    nothing is measurable), CWD's paired trend ``Δ(largest budget) − Δ(smallest)`` on
    Kvasir from each sweep's teacher, and the transfer set (:func:`transfer_takeaway`)."""
    tests, labels = lab_tests(dict(lab)), set_labels(dict(lab))
    lines = [f"- At the lab's budget ({lab_epochs(lab)} student epochs, from the "
             f"{named_teacher(lab, 'lab teacher')}), on {labels['avg']}: "
             + "; ".join(f"{lab['rows'][row].get('label', row)} {_said(tests[(row, 'avg')])}"
                         for row in ("kdas", "cwd") if (row, "avg") in tests) + "."]
    for doc, name in ((sweep, "sweep teacher"), (weaker, "re-trained lab teacher")):
        trend = trend_tests(dict(doc)).get(("cwd", "Kvasir")) if doc is not None else None
        if trend is not None:
            budgets = sorted(int(e) for e in doc["budgets"])  # type: ignore[index]
            lines.append(f"- CWD as the student trains longer, from the "
                         f"{named_teacher(doc, name)}: Δ({budgets[-1]} epochs) − "
                         f"Δ({budgets[0]}) on Kvasir {trend.format()} ({trend.format_p()}): "
                         f"{trend_word(trend)}.")
    if transfer is not None:
        lines.append(transfer_takeaway(transfer))
    return "\n".join(lines)
