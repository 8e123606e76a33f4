"""The verdict's figures (notebook 04): a forest plot of the lab and L_SGM's two forms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from kdas_lite.viz._common import _subplots, _suptitle

if TYPE_CHECKING:
    from kdas_lite.lab_stats import PairedTest

_COLORS = {1: "#009E73", -1: "#D55E00", 0: "0.45"}


def forest_figure(tests: Mapping[tuple[str, str], PairedTest], rows: Mapping[str, str],
                  sets: Sequence[str] = ("Kvasir", "avg"), *,
                  labels: Mapping[str, str] | None = None, title: str | None = None) -> Figure:
    """Every row's paired Δ against the student alone with its 95 % t-interval, one line per
    row and one panel per test set (a forest plot). A filled marker: the Holm-adjusted p of its
    family is below 0.05 (green above, orange below); hollow grey: no measurable difference.

    Args:
        tests: (row, test set) → its test, :func:`kdas_lite.lab_families.lab_tests` (any
            family against the student alone).
        rows: row → its label (:func:`kdas_lite.verdict_tables.row_labels`); the rows drawn,
            in this order, are those with a test.
        sets: test sets to draw (``"avg"``: all distinct test images).
        labels: test set → its label for the panel titles
            (:func:`kdas_lite.lab_results.set_labels`).
        title: figure title.

    Raises:
        ValueError: no test on any of ``sets``.
    """
    shown = {k: t for k, t in tests.items() if k[1] in sets}
    if not shown:
        raise ValueError(f"forest_figure: no test on {', '.join(sets)}")
    names = [rows.get(r, r) for r in dict.fromkeys(r for r, _ in shown)]
    fig, axes = _subplots(1, len(sets), (4.2, 0.32 * len(names) + 1.2))
    for ax, test_set in zip(axes[0], sets, strict=True):
        for (row, s), t in shown.items():
            if s != test_set:
                continue
            y = len(names) - 1 - names.index(rows.get(row, row))
            color = _COLORS[t.sign]
            if t.lo is not None and t.hi is not None:
                ax.plot([t.lo, t.hi], [y, y], color=color, lw=1.6)
            ax.plot(t.mean, y, "o", color=color, mfc=color if t.sign else "white", ms=6)
        ax.axvline(0, color="k", lw=1)
        ax.set_yticks(range(len(names)), names[::-1] if ax is axes[0, 0] else [""] * len(names),
                      fontsize=7)
        ax.set_xlabel("paired Δ mDice vs the student alone")
        ax.set_title((labels or {}).get(test_set, "all distinct test images" if test_set == "avg"
                                        else test_set), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], color=_COLORS[1], marker="o", label="above (Holm p < 0.05)"),
               Line2D([], [], color=_COLORS[-1], marker="o", label="below (Holm p < 0.05)"),
               Line2D([], [], color=_COLORS[0], marker="o", mfc="white",
                      label="no measurable difference")]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize="small",
               frameon=False)
    _suptitle(fig, title or "Every lab row: mean paired Δ [95 % t-interval over seeds]")
    return fig


def sgm_forms_figure(map_statistics: Mapping[str, Any], test_set: str = "all") -> Figure:
    """Why the logit form of L_SGM pulls harder than its σ(P) form, from the committed map
    statistics (``sgm_mechanism.json`` → ``map_statistics``).

    Left: on one pixel, the pull on the student's logit ``s`` towards the teacher's ``t``,
    ``−∂/∂s (s − t)²`` (logit form) and ``−∂/∂s (σ(s) − σ(t))²`` (σ form), with ``s`` at the
    student alone's mean polyp logit and ``t`` along the axis; the teacher's mean background
    and polyp logits are marked; the σ form, many times smaller, has its own axis. (The pooling
    and the transpose of L_SGM are left out: they mix pixels, not the scale.) Right: the share
    of polyp pixels predicted polyp (boundary band and interior) by the teacher, the student
    alone and + L_SGM, mean over seeds: the polyp that + L_SGM loses.
    """
    seeds = list(map_statistics["per_seed"].values())

    def mean(f: Any) -> float:
        return float(np.mean([f(s[test_set]) for s in seeds]))
    s_fg = mean(lambda s: s["logits"]["alone/p1/fg"]["mean"])
    t_fg = mean(lambda s: s["logits"]["teacher/p1/fg"]["mean"])
    t_bg = mean(lambda s: s["logits"]["teacher/p1/bg"]["mean"])
    t = np.linspace(min(-10.0, t_bg - 2), max(15.0, t_fg + 3), 300)
    sig = 1 / (1 + np.exp(-s_fg))
    logit_pull = -2 * (s_fg - t)
    prob_pull = -2 * (sig - 1 / (1 + np.exp(-t))) * sig * (1 - sig)
    fig, axes = _subplots(1, 2, (4.2, 3.0))
    left, right = axes[0, 0], axes[0, 1]
    left.plot(t, logit_pull, color="#D55E00", label="logit form (paper): 2(t − s)")
    twin = left.twinx()
    twin.plot(t, prob_pull, color="#0072B2", ls="--")
    twin.set_ylabel("σ form (its own scale, dashed)", color="#0072B2", fontsize=8)
    left.plot([], [], color="#0072B2", ls="--", label="σ form: 2(σ(t) − σ(s))σ'(s)")
    for x, name in ((t_bg, "teacher, background"), (t_fg, "teacher, polyp")):
        left.axvline(x, color="0.5", ls=":", lw=1)
        left.text(x, left.get_ylim()[1], name, rotation=90, va="top", ha="right", fontsize=7)
    left.axhline(0, color="k", lw=0.8)
    left.set_xlabel(f"teacher logit t (student s = {s_fg:+.2f}, its mean polyp logit)")
    left.set_ylabel("pull on the student's logit")
    left.legend(fontsize=7, frameon=False)
    rates = {m: (1 - mean(lambda s, m=m: s["error_rates"][m]["fn_rate_interior"]),
                 mean(lambda s, m=m: s["error_rates"][m]["positive_rate_band"]))
             for m in ("teacher", "alone", "sgm")}
    names = {"teacher": "teacher", "alone": "student alone", "sgm": "+ L_SGM"}
    colors = {"teacher": "#6b6b6b", "alone": "#E69F00", "sgm": "#D55E00"}
    for i, (m, (interior, band)) in enumerate(rates.items()):
        right.bar([i * 0.27, 1 + i * 0.27], [band, interior], 0.25, color=colors[m],
                  label=names[m])
    right.set_xticks([0.27, 1.27], ["boundary band", "interior"])
    right.set_ylim(0, 1)
    right.set_ylabel("share predicted polyp (σ > 0.5)")
    right.legend(fontsize=7, frameon=False)
    _suptitle(fig, f"L_SGM's two forms, and the polyp + L_SGM loses ({len(seeds)} seeds, "
              f"{'all test images' if test_set == 'all' else test_set})")
    return fig
