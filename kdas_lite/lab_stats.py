"""Statistics a reader of the lab can sign: paired t-tests, Holm, equivalence, block bootstrap.

The lab (:mod:`kdas_lite.lab_results`, docs/RESULTS.md §1) compares students seed by seed:
per seed *s* the paired difference ``Δ_s = mDice(row, s) − mDice(student alone, s)``. This
module turns a list of such Δ into a test a statistician would accept, and a *family* of them
into verdicts that survive multiplicity:

- :func:`paired_test`: the mean Δ over the n seeds, its 95 % Student-t interval
  ``mean ± t_{0.975, n−1}·sd/√n``, the two-sided p of ``H0: E[Δ] = 0`` (``t = mean/(sd/√n)``,
  n − 1 degrees of freedom), the p of the equivalence test at ``±margin`` (TOST: the larger
  of the two one-sided p of ``H0: E[Δ] ≤ −margin`` and ``H0: E[Δ] ≥ +margin``) and the
  smallest detectable effect: the |E[Δ]| that a two-sided test at α = 0.05 finds with 80 %
  power at this n and the observed sd (t-quantile approximation); within a family
  (:func:`family`) at the level α/m that Holm's first step asks.
- :func:`holm`: Holm's step-down adjustment (Holm 1979): with the m p-values sorted,
  ``p̃_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j))``; it controls the family-wise error rate
  at α under any dependence between the tests.
- :func:`family`: a dict of tests → the same tests with the Holm-adjusted p (and adjusted
  equivalence p) within that family, and a :attr:`PairedTest.verdict` that follows the
  *adjusted* values: "above" / "below" where ``p_holm < 0.05``; else "equivalent within
  ±margin" where the adjusted equivalence p < 0.05; else "no measurable difference
  (smallest detectable effect X)".
- :func:`block_bootstrap`: a percentile interval of an image-weighted mean Δ that resamples
  *blocks of consecutive frames* within each test set (circular blocks, Politis & Romano
  1992): CVC-ColonDB, CVC-300 and CVC-ClinicDB are video frames, and neighbouring frames'
  Δ are correlated, which an image-by-image bootstrap ignores.
- :func:`distinct_mean`: the "all images" mean over the **562 distinct** test images:
  CVC-300 is CVC-ColonDB frames 149–208 (:data:`DUPLICATE_OF`), so it is counted once, inside
  CVC-ColonDB; its own rows keep their label.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

__all__ = [
    "ALPHA",
    "DUPLICATE_OF",
    "MARGIN",
    "PairedTest",
    "block_bootstrap",
    "distinct_mean",
    "distinct_sets",
    "family",
    "format_interval",
    "format_p",
    "frame_order",
    "holm",
    "paired_test",
    "smallest_detectable_effect",
]

ALPHA = 0.05  # the family-wise error rate of every family
MARGIN = 0.02  # the equivalence margin: ±2 mDice points
#: test sets whose images are another set's (CVC-300 = CVC-ColonDB frames 149–208)
DUPLICATE_OF = {"CVC-300": "CVC-ColonDB"}


def format_interval(mean: float, lo: float | None, hi: float | None, digits: int = 3) -> str:
    """``+0.037 [+0.012, +0.062]``; the mean alone when there is no interval."""
    def f(x: float) -> str:
        return f"{round(x, digits) + 0.0:+.{digits}f}"
    if lo is None or hi is None:
        return f(mean)
    return f"{f(mean)} [{f(lo)}, {f(hi)}]"


@dataclass(frozen=True)
class PairedTest:
    """A paired t-test of per-seed Δ; ``p_holm`` and ``family`` are set by :func:`family`."""

    mean: float
    lo: float | None
    hi: float | None
    n: int
    sd: float | None
    p: float | None
    p_tost: float | None
    sde: float | None  # smallest detectable effect (80 % power; α, or α/m in a family)
    margin: float = MARGIN
    p_holm: float | None = None
    p_tost_holm: float | None = None
    family: str | None = None
    family_size: int | None = None

    @property
    def sign(self) -> int:
        """+1 / −1 when the adjusted p is below :data:`ALPHA` (above / below 0), else 0."""
        p = self.p_holm if self.family is not None else self.p
        if p is None or p >= ALPHA:
            return 0
        return 1 if self.mean > 0 else -1

    @property
    def verdict(self) -> str:
        """The verdict word, from the adjusted p-values (the raw ones outside a family)."""
        if self.p is None:
            return f"not tested ({self.n} seed)"
        if self.sign:
            return "above" if self.sign > 0 else "below"
        p_eq = self.p_tost_holm if self.family is not None else self.p_tost
        if p_eq is not None and p_eq < ALPHA:
            return f"equivalent within ±{self.margin:.3f}"
        return f"no measurable difference (smallest detectable effect {self.sde:.3f})"

    def format(self, digits: int = 3) -> str:
        """``+0.037 [+0.012, +0.062]`` (the mean alone without an interval)."""
        return format_interval(self.mean, self.lo, self.hi, digits)

    def format_p(self) -> str:
        """``p 0.012, Holm 0.37`` (raw and adjusted)."""
        if self.p is None:
            return "p —"
        adj = "" if self.p_holm is None else f", Holm {format_p(self.p_holm)}"
        return f"p {format_p(self.p)}{adj}"

    def to_json(self) -> dict[str, object]:
        """The fields a summary JSON stores per row and test set (schema: lab_results)."""
        return {"n": self.n, "mean": self.mean,
                "ci95_t": None if self.lo is None else [self.lo, self.hi],
                "p": self.p, "p_holm": self.p_holm, "family": self.family,
                "family_size": self.family_size, "p_equivalence": self.p_tost,
                "p_equivalence_holm": self.p_tost_holm, "margin": self.margin,
                "smallest_detectable_effect": self.sde, "verdict": self.verdict}


def format_p(p: float) -> str:
    """``0.00026`` below 0.01 (two significant digits), else ``0.37``."""
    return f"{p:.2g}" if p < 0.01 else f"{p:.2f}"


def smallest_detectable_effect(sd: float, n: int, alpha: float = ALPHA, power: float = 0.8
                               ) -> float:
    """The |E[Δ]| a two-sided paired t-test at level ``alpha`` detects with ``power``, for
    ``n`` pairs of standard deviation ``sd``: ``(t_{1−α/2, n−1} + t_{power, n−1})·sd/√n``
    (the usual t-quantile approximation of the noncentral-t power)."""
    if n < 2:
        return math.inf
    df = n - 1
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * sd / math.sqrt(n))


def paired_test(values: Sequence[float], margin: float = MARGIN) -> PairedTest:
    """:class:`PairedTest` of the per-seed Δ ``values`` (raw p only; see :func:`family`)."""
    x = np.asarray([float(v) for v in values])
    if x.size == 0:
        raise ValueError("paired_test needs at least one value")
    mean = float(x.mean())
    if x.size < 2:
        return PairedTest(mean, None, None, 1, None, None, None, None, margin)
    n, df = x.size, x.size - 1
    sd = float(x.std(ddof=1))
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(0.975, df)) * se
    if se == 0:
        p = 0.0 if mean != 0 else 1.0
        p_tost = 0.0 if abs(mean) < margin else 1.0
    else:
        p = float(2 * stats.t.sf(abs(mean) / se, df))
        p_tost = float(max(stats.t.sf((mean + margin) / se, df),
                           stats.t.cdf((mean - margin) / se, df)))
    return PairedTest(mean, mean - half, mean + half, n, sd, p, p_tost,
                      smallest_detectable_effect(sd, n), margin)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order: ``max_{j ≤ i} min(1, (m − j + 1)·p_(j))``
    over the ascending order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda k: pvalues[k])
    adjusted, running = [0.0] * m, 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[k]))
        adjusted[k] = running
    return adjusted


def family(name: str, tests: Mapping[Hashable, PairedTest]) -> dict[Hashable, PairedTest]:
    """The tests of one family with their Holm-adjusted p and equivalence p (tests without a
    p, one seed, are left out of the count and returned unchanged). Each test's smallest
    detectable effect becomes the one at the level α/m (m tests): the level Holm's first
    step asks of it, so an effect that large is found with 80 % power whatever the others."""
    keys = [k for k, t in tests.items() if t.p is not None]
    p_holm = holm([tests[k].p for k in keys])  # type: ignore[misc]
    p_tost = holm([tests[k].p_tost for k in keys])  # type: ignore[misc]
    out = dict(tests)
    for k, a, b in zip(keys, p_holm, p_tost, strict=True):
        t = tests[k]
        sde = smallest_detectable_effect(t.sd or 0.0, t.n, ALPHA / len(keys))
        out[k] = replace(t, p_holm=a, p_tost_holm=b, family=name, family_size=len(keys),
                         sde=sde)
    return out


def frame_order(stems: Sequence[str]) -> list[int]:
    """Indices that put file stems in frame order (numbers numerically: ``2`` before ``10``;
    other names alphabetically after them)."""
    return sorted(range(len(stems)), key=lambda k: (0, int(stems[k]), "") if stems[k].isdigit()
                  else (1, 0, stems[k]))


def block_bootstrap(per_set: Sequence[np.ndarray], block: int = 25, n_boot: int = 4000,
                    seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95 % percentile interval of the image-weighted mean of ``per_set`` (one
    array of per-image Δ per test set, in frame order), resampling circular blocks of
    ``block`` consecutive images within each set (a set shorter than ``block``: blocks of
    its length, i.e. whole-set rotations); each set keeps its size."""
    rng = np.random.default_rng(seed)
    total = sum(len(d) for d in per_set)
    sums = np.zeros(n_boot)
    for d in per_set:
        d = np.asarray(d, dtype=float)
        length = len(d)
        b = max(1, min(block, length))
        starts = rng.integers(0, length, size=(n_boot, math.ceil(length / b)))
        idx = (starts[:, :, None] + np.arange(b)).reshape(n_boot, -1)[:, :length] % length
        sums += d[idx].sum(axis=1)
    boot = sums / total
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(sum(np.sum(d) for d in per_set) / total), float(lo), float(hi)


def distinct_sets(sets: Sequence[str]) -> list[str]:
    """The test sets whose images are not another listed set's (CVC-300 dropped when
    CVC-ColonDB is there)."""
    return [s for s in sets if DUPLICATE_OF.get(s) not in sets]


def distinct_mean(mdice: Mapping[str, float], sizes: Mapping[str, int]) -> float:
    """The image-weighted mean over the distinct images of the sets in ``mdice`` (each set's
    mean weighted by its image count ``sizes[set]``; a duplicate set counted once)."""
    sets = distinct_sets([s for s in mdice if s != "avg"])
    return sum(mdice[s] * sizes[s] for s in sets) / sum(sizes[s] for s in sets)
