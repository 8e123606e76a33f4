"""The transfer-set experiment's analysis, as pre-registered in docs/RESULTS.md.

Records (experiments/transfer_set.py) hold each test image's Dice. A run's score on a *pool*
is the mean Dice over the pool's distinct images (:data:`POOLS`): ``all`` the 562 distinct
test images (CVC-300 is CVC-ColonDB frames 149–208, so it is left out and ColonDB counted once),
``unseen`` the sets from neither training source (CVC-ColonDB 380 + ETIS-LaribPolypDB 20 of
196: partial), and Kvasir and CVC-ClinicDB alone.

A *unit* is one teacher and one student seed (student seeds are nested in teachers: teacher
t's seeds are 10·t + k). A contrast X − Y is the per-unit difference of the two arms' scores;
its estimate is the mean of the teachers' means, its uncertainty that of a one-way
random-effects model with the teacher as the random effect (:func:`random_effects`).
Holm's step-down adjustment runs within each family (:data:`FAMILIES`); an interval at the
contrast's Holm step level (confidence ``1 − 0.05/k``, k its Holm multiplier) stands beside the
raw 95 % one. Verdicts (:func:`verdict`) follow the adjusted p, and "no difference" is claimed
only as equivalence within :data:`MARGIN` (two one-sided tests at the Holm level); otherwise
"not measurable at this power" with the smallest detectable effect.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats

from kdas_lite import lab_stats

__all__ = ["FAMILIES", "MARGIN", "POOLS", "POOL_LABELS", "Contrast", "analyse", "figure_ready",
           "holm", "markdown", "paired", "pool_score", "progress", "random_effects", "reading",
           "run_counts", "verdict"]

#: the test sets of each pool (CVC-300 never: it repeats CVC-ColonDB frames 149–208)
POOLS: dict[str, tuple[str, ...]] = {
    "all": ("Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB"),
    "unseen": ("CVC-ColonDB", "ETIS-LaribPolypDB"),
    "Kvasir": ("Kvasir",),
    "CVC-ClinicDB": ("CVC-ClinicDB",),
}
POOL_LABELS = {"all": "562 distinct test images", "unseen": "unseen family (ColonDB once, "
               "ETIS 20/196)", "Kvasir": "Kvasir", "CVC-ClinicDB": "CVC-ClinicDB"}
D_ARMS = ("D-kdas", "D-cwd", "D-pixel", "D-at")
MARGIN = 0.02  # mDice: the equivalence margin
ALPHA = 0.05
#: family name → (label budget, pools, contrasts (X, Y) meaning X − Y)
FAMILIES: dict[str, tuple[int, tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "primary": (200, ("all", "unseen"),
                tuple((d, ref) for ref in ("A", "C") for d in D_ARMS)),
    "within-D (|L| = 200)": (200, ("all", "unseen"), (
        ("D-kdas", "D-cwd"), ("D-kdas", "D-pixel"), ("D-kdas", "D-at"), ("D-kdas", "E"))),
    "|L| = 50": (50, ("all", "unseen"), tuple((d, ref) for ref in ("A", "C") for d in D_ARMS)),
    "per set (|L| = 200)": (200, ("Kvasir", "CVC-ClinicDB"),
                            tuple((d, ref) for ref in ("A", "C") for d in D_ARMS)),
}
CONTEXT = (("B", "A"), ("C", "A"), ("E", "A"))  # reported with intervals, outside the families


@dataclass
class Contrast:
    """One contrast X − Y on one pool at one label budget."""

    family: str
    labels: int
    pool: str
    arm: str
    reference: str
    estimate: float | None  # None: no paired runs
    se: float | None
    df: int | None
    n_units: int
    n_teachers: int
    teacher_means: dict[str, float]
    per_unit: dict[str, float]
    method: str
    p: float | None = None
    p_holm: float | None = None
    holm_k: int | None = None
    ci95: tuple[float, float] | None = None
    ci_holm: tuple[float, float] | None = None
    equivalent: bool | None = None
    smallest_detectable: float | None = None
    verdict: str = "too few runs"


def pool_score(record: Mapping[str, Any], pool: str, order: Mapping[str, Sequence[str]]
               ) -> float:
    """Mean Dice of ``record`` over the distinct images of ``pool`` (``order``: each test
    set's image stems, the order of ``record["image_dice"]``)."""
    values = [d for name in POOLS[pool] for d in record["image_dice"][name]]
    if sum(len(order[name]) for name in POOLS[pool]) != len(values):
        raise ValueError(f"a record's per-image Dice does not match the image list of {pool}")
    return statistics.fmean(values)


def random_effects(groups: Mapping[str, Sequence[float]]) -> tuple[float, float | None,
                                                                   int | None, str]:
    """Estimate, standard error, degrees of freedom and method of the mean of ``groups``
    (teacher → its units' values) under ``value = μ + teacher + seed`` with both random.

    The estimate is the mean of the teacher means. With two or more teachers and a positive
    between-teacher variance component (ANOVA estimator: mean square between above mean
    square within), its variance is that of the teacher means over the teachers,
    ``var(teacher means) / a`` with a − 1 df; when the component is estimated as 0 the units
    are exchangeable: ``s² / N`` over all N units with N − 1 df. One seed per teacher: the
    spread of the teacher means (the components are not separable). One teacher: the t over
    its units (the teacher's variance is then not sampled: said in ``method``).
    """
    groups = {k: [float(v) for v in vs] for k, vs in groups.items() if vs}
    means = {k: statistics.fmean(v) for k, v in groups.items()}
    estimate = statistics.fmean(means.values())
    units = [v for vs in groups.values() for v in vs]
    if len(units) < 2:
        return estimate, None, None, "a single run: no interval"
    if len(groups) == 1:
        return (estimate, statistics.stdev(units) / math.sqrt(len(units)), len(units) - 1,
                "t over one teacher's seeds (teacher variance not sampled)")
    a = len(groups)
    df_within = sum(len(vs) - 1 for vs in groups.values())
    if not df_within:  # the teacher means are the units: the same numbers as both branches
        return (estimate, math.sqrt(statistics.variance(means.values()) / a), a - 1,
                "one seed per teacher: the spread of the teacher means (teacher and seed "
                "variance not separable)")
    within = [sum((v - means[k]) ** 2 for v in vs) for k, vs in groups.items()]
    ms_within = sum(within) / df_within
    n_bar = a / sum(1 / len(vs) for vs in groups.values())  # harmonic mean of seeds/teacher
    var_means = statistics.variance(means.values())
    if n_bar * var_means > ms_within:  # a positive teacher component
        return (estimate, math.sqrt(var_means / a), a - 1,
                "random teacher effect: the spread of the teacher means")
    return (estimate, statistics.stdev(units) / math.sqrt(len(units)), len(units) - 1,
            "random teacher effect estimated as 0: t over all units")


def holm(pvalues: Sequence[float]) -> tuple[list[float], list[int]]:
    """Holm's step-down adjusted p-values (:func:`kdas_lite.lab_stats.holm`) and each test's
    multiplier ``m − rank + 1`` in the same ascending order."""
    m = len(pvalues)
    multiplier = [0] * m
    for rank, i in enumerate(sorted(range(m), key=lambda i: pvalues[i])):
        multiplier[i] = m - rank
    return lab_stats.holm(pvalues), multiplier


def verdict(c: Contrast) -> str:
    """``above`` / ``below`` (Holm-adjusted p < 0.05), ``equivalent within ±0.02`` (both
    one-sided tests at the Holm level), else ``not measurable at this power``."""
    if c.p_holm is None:
        return "too few runs"
    if c.p_holm < ALPHA:
        return "above" if c.estimate > 0 else "below"
    if c.equivalent:
        return f"equivalent within ±{MARGIN}"
    return "not measurable at this power"


def _test(c: Contrast) -> None:
    """Fill the raw p, the 95 % interval and the smallest detectable effect."""
    if c.se is None or c.df is None:
        return
    if c.se == 0:
        c.p = 0.0 if c.estimate else 1.0
    else:
        c.p = float(2 * stats.t.sf(abs(c.estimate) / c.se, c.df))
    half = float(stats.t.ppf(1 - ALPHA / 2, c.df)) * c.se
    c.ci95 = (c.estimate - half, c.estimate + half)


def _adjust(family: list[Contrast]) -> None:
    """Holm within ``family``; the step-level intervals, equivalence and verdicts."""
    tested = [c for c in family if c.p is not None]
    adjusted, multiplier = holm([c.p for c in tested])  # type: ignore[misc]
    for c, p, k in zip(tested, adjusted, multiplier, strict=True):
        c.p_holm, c.holm_k = p, k
        half = float(stats.t.ppf(1 - ALPHA / (2 * k), c.df)) * c.se  # type: ignore[arg-type]
        c.ci_holm = (c.estimate - half, c.estimate + half)
        one_sided = float(stats.t.ppf(1 - ALPHA / k, c.df)) * c.se  # type: ignore[arg-type]
        c.equivalent = bool(c.estimate - one_sided > -MARGIN and c.estimate + one_sided < MARGIN)
        power = float(stats.t.ppf(0.8, c.df))  # 80 % power
        c.smallest_detectable = (float(stats.t.ppf(1 - ALPHA / (2 * k), c.df)) + power) * c.se
    for c in family:
        c.verdict = verdict(c)


def _contrast(family: str, labels: int, pool: str, arm: str, reference: str,
              scores: Mapping[tuple[str, int, int, str], float]) -> Contrast:
    groups: dict[str, list[float]] = {}
    per_unit: dict[str, float] = {}
    for (a, n, teacher, seed), x in sorted(scores.items()):
        if a != arm or n != labels or (reference, n, teacher, seed) not in scores:
            continue
        delta = x - scores[(reference, n, teacher, seed)]
        groups.setdefault(f"t{teacher}", []).append(delta)
        per_unit[f"t{teacher}-s{seed}"] = delta
    if not groups:
        return Contrast(family, labels, pool, arm, reference, None, None, None, 0, 0, {}, {},
                        "no paired runs")  # JSON null, never NaN (not strict JSON)
    estimate, se, df, method = random_effects(groups)
    c = Contrast(family, labels, pool, arm, reference, estimate, se, df, len(per_unit),
                 len(groups), {k: statistics.fmean(v) for k, v in groups.items()}, per_unit,
                 method)
    _test(c)
    return c


def analyse(records: Sequence[Mapping[str, Any]], order: Mapping[str, Sequence[str]]
            ) -> dict[str, Any]:
    """Every family's contrasts (Holm-adjusted), the context contrasts, the arms' mean scores
    and the teachers' margins over the student alone; JSON-ready."""
    scores: dict[str, dict[tuple[str, int, int, str], float]] = {p: {} for p in POOLS}
    students = [r for r in records if r["arm"] != "teacher"]
    for r in students:
        for pool in POOLS:
            scores[pool][(r["arm"], r["labels"], r["teacher"], r["seed"])] = pool_score(
                r, pool, order)
    families: dict[str, list[dict[str, Any]]] = {}
    for name, (labels, pools, contrasts) in FAMILIES.items():
        family = [_contrast(name, labels, pool, arm, ref, scores[pool])
                  for pool in pools for arm, ref in contrasts]
        _adjust(family)
        families[name] = [asdict(c) for c in family]
    context = []
    for labels in (200, 50):
        for pool in ("all", "unseen"):
            for arm, ref in CONTEXT:
                c = _contrast("context", labels, pool, arm, ref, scores[pool])
                c.verdict = "context (not in a Holm family)"
                context.append(asdict(c))
    arms: dict[str, Any] = {}
    for (arm, labels, teacher, seed), _ in sorted(scores["all"].items()):
        entry = arms.setdefault(f"L{labels}/{arm}", {"arm": arm, "labels": labels, "runs": []})
        entry["runs"].append({"teacher": teacher, "seed": seed, **{
            pool: scores[pool][(arm, labels, teacher, seed)] for pool in POOLS}})
    for entry in arms.values():
        entry["mean"] = {pool: statistics.fmean(r[pool] for r in entry["runs"]) for pool in POOLS}
    teachers = {}
    for r in records:
        if r["arm"] == "teacher":
            alone = [scores["Kvasir"][k] for k in scores["Kvasir"]
                     if k[0] == "A" and k[1] == 200 and k[2] == r["teacher"]]
            kvasir = r["table"]["datasets"]["Kvasir"]["meanDic"]
            teachers[f"t{r['teacher']}"] = {
                "kvasir_mDice": kvasir, "all": pool_score(r, "all", order),
                "unseen": pool_score(r, "unseen", order),
                "sha256": r["teacher_sha256"], "best_epoch": r["best_epoch"],
                "alone_L200_kvasir_mean": statistics.fmean(alone) if alone else None,
                "margin_kvasir": kvasir - statistics.fmean(alone) if alone else None}
    return {"families": families, "context": context, "arms": arms, "teachers": teachers}


def paired(analysis: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every contrast (the families' and the context's) with at least one paired unit."""
    return [c for family in analysis["families"].values() for c in family
            if c["n_units"]] + [c for c in analysis["context"] if c["n_units"]]


def figure_ready(analysis: Mapping[str, Any]) -> bool:
    """True when :func:`kdas_lite.viz.transfer_figure` has something to draw: a contrast
    against the student alone A with paired runs."""
    return any(c["reference"] == "A" for c in paired(analysis))


def run_counts(doc: Mapping[str, Any]) -> tuple[int, int]:
    """The student runs done and the planned ones still missing (``doc["missing"]``)."""
    return (sum(len(entry["runs"]) for entry in doc["arms"].values()),
            len(doc.get("missing", [])))


def progress(doc: Mapping[str, Any]) -> str:
    """What has run of the plan (a summary written by experiments/transfer_set.py):
    ``**PARTIAL**: 118 of the 120 planned student runs not done yet; runs per arm so far:
    |L| = 200: A 2.``, or that every planned run is done."""
    done: dict[int, list[str]] = {}
    for entry in doc["arms"].values():
        done.setdefault(entry["labels"], []).append(f"{entry['arm']} {len(entry['runs'])}")
    n_done, missing = run_counts(doc)
    if not missing:
        return f"All {n_done} planned student runs are done."
    return (f"**PARTIAL**: {missing} of the {missing + n_done} planned student runs not done "
            "yet; runs per arm so far: " + ("; ".join(
                f"|L| = {n}: " + ", ".join(v) for n, v in sorted(done.items(), reverse=True))
                or "none") + ".")


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else lab_stats.format_interval(x, None, None, digits)


def _interval(ci: Sequence[float] | None) -> str:
    return "—" if ci is None else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def markdown(analysis: Mapping[str, Any]) -> str:
    """The tables of the generated block: per family, every contrast with its raw and
    Holm-level intervals, raw and adjusted p and verdict; then the context contrasts."""
    lines = []
    for name, family in analysis["families"].items():
        paired = [c for c in family if c["n_units"]]
        if not paired:
            lines += ["", f"**{name}**: no paired runs yet."]
            continue
        lines += ["", f"**{name}** (Holm across the {sum(c['p'] is not None for c in family)} "
                  f"tested of its {len(family)} contrasts; contrasts without paired runs not "
                  "shown):", "",
                  "| |L| | pool | contrast | units (teachers) | Δ | 95 % | Holm-level | p | "
                  "p Holm | verdict |", "|---:|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for c in paired:
            p = "—" if c["p"] is None else f"{c['p']:.3f}"
            ph = "—" if c["p_holm"] is None else f"{c['p_holm']:.3f}"
            lines.append(f"| {c['labels']} | {POOL_LABELS[c['pool']]} | {c['arm']} − "
                         f"{c['reference']} | {c['n_units']} ({c['n_teachers']}) | "
                         f"{_fmt(c['estimate'])} | {_interval(c['ci95'])} | "
                         f"{_interval(c['ci_holm'])} | {p} | {ph} | {c['verdict']} |")
    context = [c for c in analysis["context"] if c["n_units"]]
    if not context:
        names = ", ".join(f"{arm} − {ref}" for arm, ref in CONTEXT)
        lines += ["", f"**context** ({names}): no paired runs yet."]
    else:
        lines += ["", "Context (raw 95 % intervals, no family): ", "",
                  "| |L| | pool | contrast | units | Δ | 95 % |", "|---:|---|---|---:|---:|---:|"]
    for c in context:
        lines.append(f"| {c['labels']} | {POOL_LABELS[c['pool']]} | {c['arm']} − "
                     f"{c['reference']} | {c['n_units']} | {_fmt(c['estimate'])} | "
                     f"{_interval(c['ci95'])} |")
    return "\n".join(lines).lstrip("\n") + "\n"


def _find(analysis: Mapping[str, Any], family: str, pool: str, arm: str, ref: str
          ) -> dict[str, Any] | None:
    return next((c for c in analysis["families"].get(family, []) if c["pool"] == pool
                 and c["arm"] == arm and c["reference"] == ref), None)


def reading(analysis: Mapping[str, Any]) -> str:
    """The pre-registered reading rules applied to the primary and within-D families."""
    lines = []
    for name, t in sorted(analysis["teachers"].items()):
        margin = t["margin_kvasir"]
        ahead = "" if margin is None else (
            f", {_fmt(margin)} over the student alone on L200 "
            f"({'clearly ahead: ≥ 0.05' if margin >= 0.05 else 'NOT clearly ahead: < 0.05'})")
        lines.append(f"- Teacher {name}: Kvasir mDice {t['kvasir_mDice']:.3f}{ahead}.")
    meaning = {("A", "above"): "distillation helps when it brings images the labels lack",
               ("A", "below"): "distilling on the transfer set hurts the student",
               ("C", "above"): "the soft targets add something beyond hard pseudo-labels",
               ("C", "below"): "hard pseudo-labels of the same images do better",
               ("C", f"equivalent within ±{MARGIN}"): "the value is in the extra images, "
                                                      "not in the soft targets"}
    for pool in ("all", "unseen"):
        for ref in ("A", "C"):
            parts = []
            for arm in D_ARMS:
                c = _find(analysis, "primary", pool, arm, ref)
                if c is None or c["p_holm"] is None:
                    continue
                why = meaning.get((ref, c["verdict"]))
                smallest = "" if c["verdict"] != "not measurable at this power" else \
                    f", smallest detectable ≈ {c['smallest_detectable']:.3f}"
                parts.append(f"{arm} {c['verdict']} ({_fmt(c['estimate'])}, Holm p "
                             f"{c['p_holm']:.3f}{smallest})" + (f": {why}" if why else ""))
            if parts:
                lines.append(f"- {POOL_LABELS[pool]}, D − {ref}: " + "; ".join(parts) + ".")
    for pool in ("all", "unseen"):
        parts = []
        for ref, what in (("E", "does the transfer set matter?"), ("D-cwd", "KDAS vs CWD"),
                          ("D-pixel", "KDAS vs pixel KD"), ("D-at", "L_SGM's share")):
            c = _find(analysis, "within-D (|L| = 200)", pool, "D-kdas", ref)
            if c is None or c["p_holm"] is None:
                continue
            gloss = {"E": {"above": "the transfer set matters", "below": "the transfer set "
                           "hurts KDAS", f"equivalent within ±{MARGIN}": "the transfer set "
                           "does not matter"}}.get(ref, {}).get(c["verdict"], what)
            parts.append(f"D-kdas − {ref} {c['verdict']} ({_fmt(c['estimate'])}, Holm p "
                         f"{c['p_holm']:.3f}; {gloss})")
        if parts:
            lines.append(f"- {POOL_LABELS[pool]}, inside D and against E: " + "; ".join(parts)
                         + ".")
    ceiling = {c["pool"]: c for c in analysis["context"] if c["arm"] == "B"
               and c["labels"] == 200 and c["n_units"]}
    for pool, b in ceiling.items():
        shares = []
        for arm in D_ARMS:
            c = _find(analysis, "primary", pool, arm, "A")
            if c is not None and c["n_units"] and b["estimate"] > 0:
                shares.append(f"{arm} {c['estimate'] / b['estimate']:.0%}")
        lines.append(f"- {POOL_LABELS[pool]}: the oracle B is {_fmt(b['estimate'])} above A "
                     f"(the ceiling){'; share of it each D closes: ' if shares else ''}"
                     + ", ".join(shares) + ".")
    return "\n".join(lines) + "\n" if lines else "No student runs yet.\n"
