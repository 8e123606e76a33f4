"""Families of tests over the lab's summaries: which comparisons are adjusted together.

:mod:`kdas_lite.lab_stats` knows tests; this module knows the summaries (docs/results/*.json,
schema in :mod:`kdas_lite.lab_results`) and builds, from their per-seed Δ, the families whose
p-values Holm adjusts together: :func:`lab_tests` (the lab), :func:`mechanism_tests` (the
L_SGM mechanism), :func:`sweep_tests` and :func:`trend_tests` (one budget sweep and its
trends) and :func:`teacher_tests` (two sweeps that differ only in the teacher);
``annotate_*`` write the tests into a summary before it is saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kdas_lite.lab_stats import MARGIN, PairedTest, family, paired_test

__all__ = ["SGM_PROPERTIES", "annotate_lab", "annotate_mechanism", "annotate_sweep",
           "compared_rows", "lab_tests", "mechanism_tests", "per_seed_against", "sweep_rows",
           "sweep_tests", "teacher_tests", "teacher_values", "trend_per_seed", "trend_tests"]


def compared_rows(lab: dict[str, Any], rows: Sequence[str] | None) -> list[str]:
    """The rows of ``rows`` (default: all) that have a paired Δ against the student alone."""
    return [r for r in (rows or lab["rows"]) if r in lab["rows"] and r != "alone"
            and lab["rows"][r].get("delta_vs_alone")]


def per_seed_against(lab: dict[str, Any], row: str, reference: str, test_set: str
                     ) -> list[float]:
    """The per-seed Δ ``mDice(row) − mDice(reference)`` on ``test_set``, seeds both have."""
    def by_seed(name: str) -> dict[Any, float]:
        return {r["seed"]: r["mDice"][test_set] for r in lab["rows"].get(name, {}).get("runs", [])
                if test_set in r["mDice"]}
    a, b = by_seed(row), by_seed(reference)
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def lab_tests(lab: dict[str, Any], margin: float = MARGIN) -> dict[tuple[str, str], PairedTest]:
    """(row, test set) → the paired test of the row against the student alone, Holm-adjusted
    within the summary's family (``lab["family"]``, default "lab": every row but the teacher,
    every test set and all images)."""
    tests = {(row, s): paired_test(list(d["per_seed"].values()), margin)
             for row in compared_rows(lab, None) if row != "teacher"
             for s, d in lab["rows"][row]["delta_vs_alone"].items() if d.get("per_seed")}
    return family(lab.get("family", "lab"), tests)


def mechanism_tests(mech: dict[str, Any], margin: float = MARGIN
                    ) -> dict[tuple[str, str, str], PairedTest]:
    """(reference, row, test set) → paired test; one family ("mechanism"): + L_SGM and each
    intervention against the student alone on every set, and each intervention against
    + L_SGM on Kvasir and on all images."""
    tests = {("alone", row, s): paired_test(list(d["per_seed"].values()), margin)
             for row in ("sgm", *SGM_PROPERTIES) if row in mech["rows"]
             for s, d in mech["rows"][row].get("delta_vs_alone", {}).items() if d.get("per_seed")}
    if "sgm" in mech["rows"]:
        for row in SGM_PROPERTIES:
            for s in ("Kvasir", "avg"):
                values = per_seed_against(mech, row, "sgm", s) if row in mech["rows"] else []
                if values:
                    tests[("sgm", row, s)] = paired_test(values, margin)
    return family(mech.get("family", "mechanism"), tests)


def sweep_tests(sweep: dict[str, Any], margin: float = MARGIN
                ) -> dict[tuple[str, int, str], PairedTest]:
    """(row, budget, test set) → paired test against the student alone of that budget, Holm
    within the sweep (``sweep["family"]``, default "sweep")."""
    tests = {(row, int(e), s): paired_test(list(d["per_seed"].values()), margin)
             for e, rows in sweep["budgets"].items() for row, entry in rows.items()
             for s, d in entry.get("delta_vs_alone", {}).items() if d.get("per_seed")}
    return family(sweep.get("family", "sweep"), tests)


def trend_per_seed(sweep: dict[str, Any], row: str, test_set: str) -> dict[str, float]:
    """Seed → ``Δ(largest budget) − Δ(smallest budget)`` of ``row`` on ``test_set`` (its Δ
    against the student alone of each budget), for the seeds both budgets have."""
    budgets = [e for e in sorted(sweep["budgets"], key=int)
               if test_set in sweep["budgets"][e].get(row, {}).get("delta_vs_alone", {})]
    if len(budgets) < 2:
        return {}
    first, last = (sweep["budgets"][e][row]["delta_vs_alone"][test_set]["per_seed"]
                   for e in (budgets[0], budgets[-1]))
    return {k: last[k] - first[k] for k in sorted(set(first) & set(last), key=int)}


def trend_tests(sweep: dict[str, Any], margin: float = MARGIN
                ) -> dict[tuple[str, str], PairedTest]:
    """(row, test set) → the paired test of ``Δ(largest) − Δ(smallest)`` over seeds
    (:func:`trend_per_seed`): does the method's effect change as the student trains longer?
    Its own family per sweep ("<family> trends": one question per method and set)."""
    tests = {}
    for row in sweep_rows(sweep):
        for s in ("Kvasir", "avg"):
            values = trend_per_seed(sweep, row, s)
            if values:
                tests[(row, s)] = paired_test(list(values.values()), margin)
    return family(f"{sweep.get('family', 'sweep')} trends", tests)


def teacher_tests(sweep: dict[str, Any], other: dict[str, Any], margin: float = MARGIN
                  ) -> dict[tuple[str, int, str], PairedTest]:
    """(row, budget, test set) → paired test of the same student from ``sweep``'s teacher
    minus from ``other``'s (:func:`teacher_effect`), one family ("teacher comparison")."""
    tests = {}
    for row in sweep_rows(sweep):
        for s in ("Kvasir", "avg"):
            for epochs, values in teacher_values(sweep, other, row, s).items():
                tests[(row, epochs, s)] = paired_test(values, margin)
    return family("teacher comparison", tests)


def annotate_lab(lab: dict[str, Any]) -> dict[str, Any]:
    """Write each test of :func:`lab_tests` into ``lab["rows"][row]["delta_vs_alone"][set]``
    (the fields of :meth:`~kdas_lite.lab_stats.PairedTest.to_json`); return ``lab``."""
    for (row, s), test in lab_tests(lab).items():
        lab["rows"][row]["delta_vs_alone"][s].update(test.to_json())
    return lab


def annotate_mechanism(mech: dict[str, Any]) -> dict[str, Any]:
    """:func:`mechanism_tests` into ``delta_vs_alone`` and ``delta_vs_sgm`` (per seed too)."""
    for (ref, row, s), test in mechanism_tests(mech).items():
        entry = mech["rows"][row]
        if ref == "alone":
            entry["delta_vs_alone"][s].update(test.to_json())
        else:
            values = per_seed_against(mech, row, "sgm", s)
            seeds = sorted({r["seed"] for r in entry["runs"]} & {
                r["seed"] for r in mech["rows"]["sgm"]["runs"]})
            entry.setdefault("delta_vs_sgm", {})[s] = {
                "per_seed": {str(k): v for k, v in zip(seeds, values, strict=True)},
                **test.to_json()}
    return mech


def annotate_sweep(sweep: dict[str, Any], other: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    """:func:`sweep_tests` into each budget's ``delta_vs_alone``; ``trends`` (row → set →
    per-seed ``Δ(largest) − Δ(smallest)`` and its test); with ``other``,
    ``teacher_comparison`` (row → budget → set → per seed and test)."""
    for (row, e, s), test in sweep_tests(sweep).items():
        sweep["budgets"][str(e)][row]["delta_vs_alone"][s].update(test.to_json())
    sweep["trends"] = {}
    for (row, s), test in trend_tests(sweep).items():
        sweep["trends"].setdefault(row, {})[s] = {"per_seed": trend_per_seed(sweep, row, s),
                                                  **test.to_json()}
    if other is not None:
        sweep["teacher_comparison"] = {}
        for (row, e, s), test in teacher_tests(sweep, other).items():
            sweep["teacher_comparison"].setdefault(row, {}).setdefault(str(e), {})[s] = \
                test.to_json()
    return sweep


def sweep_rows(sweep: dict[str, Any]) -> list[str]:
    """The distilled rows of a budget sweep (every row but the student alone), in the order
    they first appear, smallest budget first."""
    return list(dict.fromkeys(r for e in sorted(sweep["budgets"], key=int)
                              for r in sweep["budgets"][e] if r != "alone"))


def teacher_values(sweep: dict[str, Any], other: dict[str, Any], row: str, test_set: str
                    ) -> dict[int, list[float]]:
    """Budget → per-seed ``mDice(row, sweep's teacher) − mDice(row, other's teacher)``."""
    out = {}
    for epochs, rows in sweep["budgets"].items():
        mine = rows.get(row, {}).get("mDice", {}).get(test_set, {})
        theirs = other["budgets"].get(epochs, {}).get(row, {}).get("mDice", {}).get(test_set, {})
        common = sorted(set(mine) & set(theirs), key=int)
        if common:
            out[int(epochs)] = [mine[s] - theirs[s] for s in common]
    return dict(sorted(out.items()))


#: What each mechanism row changes in L_SGM (experiments/real_lab.py, ``--mechanism``).
SGM_PROPERTIES = {
    "sgm-prob": "the logit scale (the maps compared as probabilities σ(P), bounded)",
    "sgm-no-transpose": "the symmetric pairing P + Pᵀ (the maps compared as P + P: plain "
                        "pooled logit matching)",
    "sgm-teacher-std": "the teacher's per-image logit scale (both maps divided by it)",
    "sgm-equal-grad": "the size of its gradient (weighted to L_seg's at the first step)",
}
