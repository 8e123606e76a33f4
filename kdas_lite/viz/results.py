"""Training curves, results tables as figures, best and worst cases."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.text import OffsetFrom
from matplotlib.ticker import MaxNLocator
from torch import nn

from kdas_lite.data import (
    PolypTestDataset,
    read_image,
)
from kdas_lite.errors import DataError
from kdas_lite.evaluate import soft_maps
from kdas_lite.metrics import METRIC_NAMES, score_map
from kdas_lite.viz._common import _subplots, _suptitle, method_color
from kdas_lite.viz.images import _legend, overlay

# ---------------------------------------------------------------------------------------------
# Training and results
# ---------------------------------------------------------------------------------------------
_CURVE_LABELS = {"loss": "training loss", "seg": "L_seg", "at": "L_AT", "sgm": "L_SGM",
                 "kd": "L_KD", "val_dice": "validation Dice", "lr": "learning rate"}


def training_curves_figure(histories: Mapping[str, Sequence[Mapping[str, Any]]],
                           keys: Sequence[str] = ("loss", "val_dice"), *,
                           title: str | None = None) -> Figure:
    """Compare runs: one panel per logged value, one line per run.

    For a single run's loss terms together, :func:`plot_history` draws them on
    one axes.

    Args:
        histories: run name → ``TrainResult.history`` (one dict per epoch with ``"epoch"``).
        keys: values to plot, e.g. ``"loss"``, ``"seg"``, ``"at"``, ``"sgm"``, ``"val_dice"``.
        title: figure title (e.g. the data set the runs trained on).

    Each run keeps its method's colour (:func:`~kdas_lite.viz.method_color`).
    """
    if not histories:
        raise ValueError("training_curves_figure needs at least one history")
    fig, axes = _subplots(1, len(keys), (3.6, 2.8))
    for ax, key in zip(axes[0], keys, strict=True):
        for name, history in histories.items():
            if not history:
                raise ValueError(f"the history of {name!r} is empty")
            if key not in history[0]:
                raise KeyError(f"{name!r} logged no {key!r}; it has {sorted(history[0])}")
            ax.plot([r["epoch"] for r in history], [r[key] for r in history], marker="o",
                    ms=3, label=name, color=method_color(name))
        ax.set_xlabel("epoch")
        ax.set_title(_CURVE_LABELS.get(key, key), fontsize=9)
        ax.grid(alpha=0.3)
        if key == "val_dice":
            ax.set_ylim(0, 1)
    axes[0, -1].legend(fontsize="small")
    _suptitle(fig, title)
    return fig


def _table_rows(table: Any) -> Mapping[str, Mapping[str, float]]:
    return table.rows if hasattr(table, "rows") else table


def results_figure(tables: Mapping[str, Any], metric: str = "meanDic", *,
                   reference: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
                   title: str | None = None) -> Figure:
    """Grouped bars of one metric per test set, one bar per model.

    Test sets are labelled as the tables label them (``ETIS-LaribPolypDB (20/196)`` for a
    subset), and the title says **SYNTHETIC data** when any table was scored on it.

    Args:
        tables: model name → :class:`~kdas_lite.evaluate.EvaluationTable` (or a mapping
            test set → {metric: value}).
        metric: a name of :data:`~kdas_lite.metrics.METRIC_NAMES`.
        reference: published numbers as :data:`~kdas_lite.evaluate.PAPER_RESULTS` (model →
            test set → {metric: value}), drawn as black ticks on the bar of the model with the
            same name (e.g. keys ``"teacher"`` and ``"student"``).
        title: figure title (the SYNTHETIC warning is prepended where it applies).
    """
    if not tables:
        raise ValueError("results_figure needs at least one table")
    labels = {d: t.label(d) for t in reversed(list(tables.values())) if hasattr(t, "label")
              for d in t.rows}
    rows = {name: _table_rows(t) for name, t in tables.items()}
    datasets = list(dict.fromkeys(d for r in rows.values() for d in r))
    width = 0.8 / len(rows)
    fig, axes = _subplots(1, 1, (max(5.0, 1.3 * len(datasets) + 1.5), 3.4))
    ax = axes[0, 0]
    x = np.arange(len(datasets))
    for i, (name, r) in enumerate(rows.items()):
        values = [r[d][metric] if d in r else np.nan for d in datasets]
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, values, width, label=name, color=method_color(name))
        published = (reference or {}).get(name, {})
        for p, d in zip(pos, datasets, strict=True):
            if metric in published.get(d, {}):
                ax.hlines(published[d][metric], p - width / 2, p + width / 2, color="k", lw=2)
    if reference and any(name in reference for name in rows):
        ax.plot([], [], color="k", lw=2, label="published")
    ax.set_xticks(x, [labels.get(d, d) for d in datasets], rotation=15, fontsize=8)
    ax.set_ylabel(metric)
    synthetic = any(getattr(t, "synthetic", False) for t in tables.values())
    _data_title(ax, title, synthetic)
    if metric != "MAE":
        ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5),
               fontsize="small", frameon=False)  # below the axes: never over a bar or tick
    return fig


def ablation_figure(scores: Mapping[str, float | Sequence[float]], *,
                    ylabel: str = "best validation Dice", baseline: str | None = None,
                    title: str | None = None, synthetic: bool = False) -> Figure:
    """One bar per training variant (e.g. the ablation of notebook 04), values written on top.

    With several seeds per variant (a sequence of scores each, in the same seed order), the
    bar is the mean with a ±1 standard deviation error bar and a dot per seed; with a
    ``baseline`` a second panel shows the **paired** differences, each seed against the
    baseline's run of the same seed (mean ± std and a dot per seed): the comparison that
    removes the seed-to-seed spread both runs share.

    Args:
        scores: variant name → score, or → one score per seed; in display order.
        ylabel: what the score is.
        baseline: a variant drawn as a dashed reference line across the plot (e.g.
            ``"student alone"``).
        title: figure title.
        synthetic: the scores come from synthetic data (said first in the title).
    """
    if not scores:
        raise ValueError("ablation_figure needs at least one score")
    if baseline is not None and baseline not in scores:
        raise ValueError(f"baseline {baseline!r} is not one of {list(scores)}")
    runs = {name: np.atleast_1d(np.asarray(v, dtype=float)) for name, v in scores.items()}
    seeds = max(len(v) for v in runs.values())
    paired = baseline is not None and seeds > 1
    if paired and any(len(v) != seeds for v in runs.values()):
        raise ValueError("paired differences need the same number of seeds for every variant: "
                         + ", ".join(f"{k} {len(v)}" for k, v in runs.items()))
    names = list(runs)
    colors = [method_color(n) for n in names]
    fig, axes = _subplots(1, 2 if paired else 1, (max(4.0, 1.1 * len(names) + 1.0), 3.2))
    ax = axes[0, 0]
    means = [float(v.mean()) for v in runs.values()]
    spread = [float(v.std(ddof=1)) if len(v) > 1 else 0.0 for v in runs.values()]
    bars = ax.bar(names, means, color=colors, alpha=0.8 if seeds > 1 else 1.0,
                  yerr=spread if seeds > 1 else None, capsize=4)
    ax.bar_label(bars, labels=[f"{m:.3f}" + (f"\n±{s:.3f}" if seeds > 1 else "")
                               for m, s in zip(means, spread, strict=True)], fontsize=8)
    if seeds > 1:
        for i, v in enumerate(runs.values()):
            ax.scatter(np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, s=12,
                       color="k", zorder=3)
    if baseline is not None:
        ax.axhline(float(runs[baseline].mean()), color="k", ls="--", lw=1, label=baseline)
        ax.legend(fontsize="small", loc="lower right")
    ax.set_ylabel(ylabel + (f" ({seeds} seeds)" if seeds > 1 else ""))
    ax.set_ylim(0, max(1.0, max(float(v.max()) for v in runs.values()) * 1.15))
    ax.tick_params(axis="x", labelsize=8, rotation=15)
    ax.grid(axis="y", alpha=0.3)
    _data_title(ax, title, synthetic)
    if paired:
        ax = axes[0, 1]
        others = [n for n in names if n != baseline]
        diffs = [runs[n] - runs[baseline] for n in others]
        ax.bar(others, [float(d.mean()) for d in diffs],
               yerr=[float(d.std(ddof=1)) for d in diffs], capsize=4, alpha=0.8,
               color=[colors[names.index(n)] for n in others])
        for i, d in enumerate(diffs):
            ax.scatter(np.full(len(d), i) + np.linspace(-0.15, 0.15, len(d)), d, s=12,
                       color="k", zorder=3)
        ax.axhline(0, color="k", lw=1)
        ax.set_ylabel(f"paired difference vs {baseline}")
        ax.tick_params(axis="x", labelsize=8, rotation=15)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title("> 0: better than " + baseline, fontsize=9)
    return fig


_TERM_LABELS = {"at": "L_AT", "sgm": "L_SGM", "kd": "L_KD"}
_TERM_STYLES = {"at": ("-", "o"), "sgm": ("--", "s"), "kd": (":", "^")}


def term_gradient_figure(histories: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], *,
                         title: str | None = None) -> Figure:
    """What each distillation term does to the student during training (notebook 04).

    Left: ``‖g_term‖ / ‖g_seg‖``, the size of each weighted term's gradient on the student's
    weights relative to the segmentation loss's (log scale; 1 = as strong as L_seg). Right:
    ``cos(g_term, g_seg)``, whether the term pushes the weights the way segmentation does.
    One line per variant and term, the mean over seeds with a band from the lowest to the
    highest seed: the variant's colour (:func:`~kdas_lite.viz.method_color`), the term's line
    style (L_AT solid, L_SGM dashed, L_KD dotted). The values come from
    ``fit(..., probe_gradients=True)`` (:func:`kdas_lite.gradients.term_gradients`: measured
    at the start of each epoch).

    Args:
        histories: variant name → one ``TrainResult.history`` per seed. Variants without
            distillation terms (e.g. "student alone") and runs trained without the probe are
            skipped.
        title: figure title (e.g. the data set).

    Raises:
        ValueError: no history holds a gradient measurement.
    """
    fig, axes = _subplots(1, 2, (4.2, 3.0))
    drawn = 0
    for name, runs in histories.items():
        seeds = [h for h in runs if h and "grad_seg" in h[0]]  # runs made with the probe
        if not seeds:
            continue
        color = method_color(name)
        for term, label in _TERM_LABELS.items():
            if f"grad_{term}" not in seeds[0][0]:
                continue
            epochs = [r["epoch"] for r in seeds[0]]
            ratio = np.array([[r[f"grad_{term}"] / r["grad_seg"] for r in h] for h in seeds])
            cosine = np.array([[r[f"cos_{term}"] for r in h] for h in seeds])
            style, marker = _TERM_STYLES[term]
            for ax, values in ((axes[0, 0], ratio), (axes[0, 1], cosine)):
                ax.plot(epochs, values.mean(axis=0), ls=style, marker=marker, ms=3,
                        color=color, label=f"{name}: {label}")
                if len(seeds) > 1:
                    ax.fill_between(epochs, values.min(axis=0), values.max(axis=0),
                                    color=color, alpha=0.2)
            drawn += 1
    if not drawn:
        raise ValueError("no gradient measurements: train with probe_gradients=True and "
                         "at least one distillation term")
    left, right = axes[0, 0], axes[0, 1]
    left.set_yscale("log")
    left.axhline(1, color="k", ls="--", lw=1)
    left.set_title("‖∇ α·term‖ / ‖∇ (1−α)·L_seg‖", fontsize=9)
    right.axhline(0, color="k", lw=1)
    right.set_ylim(-1, 1)
    right.set_title("cos(∇ term, ∇ L_seg)", fontsize=9)
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlabel("epoch (measured at its start)")
        ax.grid(alpha=0.3)
    fig.legend(*right.get_legend_handles_labels(), loc="outside right upper",
               fontsize="x-small")
    _suptitle(fig, title)
    return fig


def _bar_with_spread(ax: Any, x: float, values: np.ndarray, width: float, color: str,
                     hatch: str | None) -> None:
    """One bar: the mean, a ±1 std error bar and a dot per seed when there are several."""
    several = len(values) > 1
    ax.bar(x, float(values.mean()), width, color=color if hatch is None else "white",
           edgecolor=color, hatch=hatch, lw=1.5,
           yerr=float(values.std(ddof=1)) if several else None, capsize=3)
    if several:
        ax.scatter(np.full(len(values), x) + np.linspace(-width / 4, width / 4, len(values)),
                   values, s=10, color="k", zorder=3)


def ablation_vs_lab_figure(scores: Mapping[str, Sequence[float]],
                           lab: Mapping[str, Sequence[float]], *, baseline: str,
                           ylabel: str = "mDice", title: str | None = None,
                           lab_label: str = "committed lab", synthetic: bool = False
                           ) -> Figure:
    """This run's variants beside a committed multi-seed lab of the same regime (notebook 04).

    Top: the score of every variant, this run as a solid bar, the lab as a hatched bar
    (mean, ±1 std error bar, a dot per seed). Bottom: the paired difference against
    ``baseline`` (each seed against the baseline's run of the same seed), the same way. A
    variant present on one side only gets one bar; each method keeps its colour
    (:func:`~kdas_lite.viz.method_color`).

    Args:
        scores: variant → this run's score per seed (in seed order).
        lab: variant → the lab's score per seed (in the lab's seed order; e.g. from
            ``docs/results/real_lab.json``).
        baseline: the variant the differences are taken against (in both, or in the lab
            alone for the lab's bars).
        ylabel: what the score is (name the test set and its label).
        title: figure title.
        lab_label: how the lab is named in the legend.
        synthetic: this run used synthetic data (said first in the title).

    Raises:
        ValueError: nothing to draw, or paired runs with different numbers of seeds.
    """
    live = {n: np.atleast_1d(np.asarray(v, dtype=float)) for n, v in scores.items()}
    ref = {n: np.atleast_1d(np.asarray(v, dtype=float)) for n, v in lab.items()}
    names = list(dict.fromkeys([*live, *ref]))
    if not names:
        raise ValueError("ablation_vs_lab_figure needs at least one score")
    for side, runs in (("this run", live), (lab_label, ref)):
        if baseline in runs and any(len(v) != len(runs[baseline]) for v in runs.values()):
            raise ValueError(f"{side}: paired differences need the same number of seeds for "
                             "every variant")
    fig, axes = _subplots(2, 1, (max(5.0, 0.9 * len(names) + 1.5), 2.9))
    width = 0.38
    panels = ((axes[0, 0], names, lambda runs, n: runs[n]),
              (axes[1, 0], [n for n in names if n != baseline],
               lambda runs, n: runs[n] - runs[baseline] if baseline in runs else None))
    for ax, shown, value in panels:
        for i, name in enumerate(shown):
            for runs, offset, hatch in ((live, -width / 2, None), (ref, width / 2, "///")):
                if name in runs and (v := value(runs, name)) is not None:
                    _bar_with_spread(ax, i + offset, v, width, method_color(name), hatch)
        ax.set_xticks(range(len(shown)), shown, rotation=20, fontsize=8, ha="right")
        ax.grid(axis="y", alpha=0.3)
    left, right = axes[0, 0], axes[1, 0]
    left.set_ylabel(ylabel)
    left.set_ylim(0, 1)
    right.axhline(0, color="k", lw=1)
    right.set_ylabel(f"paired Δ vs {baseline}")
    right.set_title(f"> 0: better than {baseline}", fontsize=9)
    seeds_live = max(len(v) for v in live.values()) if live else 0
    seeds_lab = max(len(v) for v in ref.values()) if ref else 0
    handles = [Patch(facecolor="0.5", edgecolor="0.5", label=f"this run ({seeds_live} seed"
                     f"{'s' if seeds_live != 1 else ''})"),
               Patch(facecolor="white", edgecolor="0.5", hatch="///",
                     label=f"{lab_label} ({seeds_lab} seeds, mean ± std)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize="small",
               frameon=False)
    _data_title(left, None, synthetic)
    _suptitle(fig, title)
    return fig


def budget_sweep_figure(sweep: Mapping[str, Any], *, compare: Mapping[str, Any] | None = None,
                        title: str | None = None) -> Figure:
    """The budget sweep (``docs/results/budget_sweep.json``): each method's paired Δ against
    the student alone of the same budget, against the students' epochs, with its 95 %
    t-interval over seeds (:func:`kdas_lite.lab_results.sweep_intervals`); left Kvasir, right
    all test images; the student-alone level (and, on Kvasir, the teacher's) on a second axis.
    ``compare`` (the same sweep from another teacher, e.g.
    ``docs/results/budget_sweep_lab_teacher.json``) adds its mean Δ as hollow markers on a
    dotted line in the same colour, and its teacher's level as a grey dotted line.

    Raises:
        ValueError: the sweep has no budget with a distilled row.
    """
    from kdas_lite.lab_results import sweep_intervals, sweep_rows

    budgets = sorted(int(e) for e in sweep["budgets"])
    rows = sweep_rows(sweep)
    if not rows:
        raise ValueError("budget_sweep_figure: no distilled row in the sweep yet")
    labels = sweep.get("labels", {})
    check = sweep.get("teacher_check") or {}
    fig, axes = _subplots(1, 2, (5.4, 3.4))
    for ax, test_set in zip(axes[0], ("Kvasir", "avg"), strict=True):
        for i, row in enumerate(rows):
            intervals = sweep_intervals(sweep, row, test_set)
            if not intervals:
                continue
            shift = 2 ** (0.04 * (i - (len(rows) - 1) / 2))  # rows side by side on the log axis
            xs = [e * shift for e in intervals]
            means = np.array([iv.mean for iv in intervals.values()])
            lo = np.array([iv.lo if iv.lo is not None else iv.mean for iv in intervals.values()])
            hi = np.array([iv.hi if iv.hi is not None else iv.mean for iv in intervals.values()])
            color = method_color(labels.get(row, row))
            ax.errorbar(xs, means, yerr=np.vstack([means - lo, hi - means]), marker="o", capsize=3,
                        color=color, label=labels.get(row, row))
            other = sweep_intervals(compare, row, test_set) if compare is not None else {}
            if other:
                ax.plot([e * shift for e in other],
                        [iv.mean for iv in other.values()], ls=":", marker="o", mfc="white",
                        color=color, label=f"{labels.get(row, row)}, other teacher")
        ax.axhline(0, color="k", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets, [str(e) for e in budgets])
        ax.minorticks_off()
        ax.set_xlabel("student epochs")
        name = "all test images" if test_set == "avg" else test_set
        ax.set_ylabel(f"Δ mDice vs alone ({name})")
        ax.grid(alpha=0.3)
        level = [(e, float(np.mean(list(sweep["budgets"][str(e)]["alone"]["mDice"][test_set]
                                        .values()))))
                 for e in budgets if "alone" in sweep["budgets"][str(e)]
                 and test_set in sweep["budgets"][str(e)]["alone"]["mDice"]]
        twin = ax.twinx()
        if level:
            twin.plot(*zip(*level, strict=True), "k--", lw=0.9, label="student alone (level)")
        if test_set == "Kvasir" and check:
            twin.axhline(check["teacher_kvasir"], color="k", ls=":", lw=0.9,
                         label="teacher (level)")
        other_check = (compare or {}).get("teacher_check")
        if test_set == "Kvasir" and other_check:
            twin.axhline(other_check["teacher_kvasir"], color="0.6", ls=":", lw=0.9,
                         label="other teacher (level)")
        twin.set_ylim(0, 1)
        twin.set_ylabel("level: alone --, teacher ··", fontsize=8)
    handles, names = axes[0, 0].get_legend_handles_labels()
    order = [labels.get(r, r) for r in rows]  # each column one method, this teacher on top
    ranked = sorted(zip(handles, names, strict=True), key=lambda hn: (
        order.index(hn[1].removesuffix(", other teacher")), hn[1].endswith("other teacher")))
    fig.legend([h for h, _ in ranked], [n for _, n in ranked], loc="outside lower center",
               ncols=len(rows), fontsize="small", frameon=False)
    _suptitle(fig, title or "Paired Δ against the student alone, by budget "
              "(95 % t over seeds)")
    return fig


def _data_title(ax: Any, title: str | None, synthetic: bool) -> None:
    """Set ``title``, led by "SYNTHETIC data" when the figure shows synthetic data."""
    parts = (["SYNTHETIC data (not real endoscopy)"] if synthetic else []) + (
        [title] if title else [])
    if parts:
        ax.set_title(" — ".join(parts), fontsize=9, color="C3" if synthetic else "k")


def tradeoff_figure(names: Sequence[str], params_m: Sequence[float], scores: Sequence[float],
                    images_per_s: Sequence[float] | None = None, *,
                    score_label: str = "mean Dice",
                    reference: Mapping[str, tuple[float, float]] | None = None,
                    title: str | None = None, synthetic: bool = False) -> Figure:
    """Parameters vs accuracy, with speed as the marker size (and written next to it).

    Args:
        names: model names.
        params_m: parameters in millions.
        scores: accuracy (e.g. the image-weighted mean Dice over the test sets).
        images_per_s: measured throughput; bigger markers are faster.
        score_label: y-axis label.
        reference: published points ``name → (params_m, score)``, drawn hollow.
        title: figure title.
        synthetic: the scores come from synthetic data (said first in the title).
    """
    if not len(names) == len(params_m) == len(scores):
        raise ValueError("names, params_m and scores must have the same length")
    if images_per_s is not None and len(images_per_s) != len(names):
        raise ValueError("images_per_s must have one value per model")
    fig, axes = _subplots(1, 1, (5.0, 3.6))
    ax = axes[0, 0]
    if images_per_s is not None:
        top = max(images_per_s) or 1.0
        sizes = [60 + 440 * v / top for v in images_per_s]
    else:
        sizes = [120] * len(names)
    ax.scatter(params_m, scores, s=sizes, c=[method_color(n) for n in names], alpha=0.8,
               edgecolors="k", zorder=3)
    for group in _neighbours(params_m, scores):
        # labels of models that sit together (e.g. two students of one size) are stacked
        # under the group's top point, each joined to its own marker by a thin line
        top = max(group, key=lambda i: scores[i])
        anchor = OffsetFrom(ax.transData, (params_m[top], scores[top]), unit="points")
        for rank, i in enumerate(sorted(group, key=lambda i: -scores[i])):
            speed = "" if images_per_s is None else f"\n{images_per_s[i]:.1f} img/s"
            ax.annotate(f"{names[i]}{speed}", (params_m[i], scores[i]), textcoords=anchor,
                        xytext=(14, 6 - 28 * rank), fontsize=8,
                        arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.4"}
                        if rank else None)
    for name, (p, score) in (reference or {}).items():
        ax.scatter([p], [score], s=120, facecolors="none", edgecolors="k", zorder=3)
        ax.annotate(f"{name} (published)", (p, score), textcoords="offset points",
                    xytext=(8, -12), fontsize=8)
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel(score_label)
    ax.grid(alpha=0.3)
    ax.margins(x=0.25, y=0.2)
    _data_title(ax, title, synthetic)
    return fig


def _neighbours(x: Sequence[float], y: Sequence[float], near: float = 0.08) -> list[list[int]]:
    """Indices of points grouped with their neighbours: points closer than ``near`` of the
    axis spans in both x and y, chained (a label placed beside one would cover the other)."""
    span_x = (max(x) - min(x)) or abs(max(x)) or 1.0
    span_y = (max(y) - min(y)) or abs(max(y)) or 1.0
    groups: list[list[int]] = []
    for i in range(len(x)):
        joined = [g for g in groups if any(abs(x[i] - x[j]) < near * span_x
                                           and abs(y[i] - y[j]) < near * span_y for j in g)]
        merged = [i] + [j for g in joined for j in g]
        groups = [g for g in groups if g not in joined] + [sorted(merged)]
    return sorted(groups)


def predict_test_set(model: nn.Module, folder: str | os.PathLike[str], size: int = 352, *,
                         limit: int | None = None, device: str | torch.device | None = None
                         ) -> list[dict[str, Any]]:
    """Predict and score the images of one test folder, for qualitative figures.

    The maps follow :func:`kdas_lite.evaluate.evaluate` (``σ(P1 + P2)`` resized to the mask's
    original size, min–max normalised) and are scored per image with
    :func:`kdas_lite.metrics.score_map`.

    Args:
        model: a kdas_lite model (its ``input_mean``/``input_std`` normalise the images).
        folder: a folder with ``images/`` and ``masks/``.
        size: input side.
        limit: only the first ``limit`` images.
        device: where to run (default: the model's device).

    Returns:
        One dict per image: ``name``, ``image`` (uint8 ``(H, W, 3)``, original size), ``mask``
        (bool ``(H, W)``), ``pred`` (float ``(H, W)`` in [0, 1]) and the measures of
        :data:`~kdas_lite.metrics.METRIC_NAMES`.
    """
    dataset = PolypTestDataset(folder, size=size, mean=model.input_mean, std=model.input_std)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    cases = []
    try:
        for i in range(len(dataset) if limit is None else min(limit, len(dataset))):
            sample = dataset[i]
            with torch.inference_mode():
                p1, p2 = model(sample["image"][None].to(device))
            pred = soft_maps((p1 + p2).float().cpu(), [sample["mask"].shape])[0]
            scores = score_map(pred, sample["mask"])
            cases.append({"name": sample["name"], "image": read_image(dataset.pairs[i][0]),
                          "mask": sample["mask"], "pred": pred,
                          **{m: scores[m] for m in METRIC_NAMES}})
    finally:
        model.train(was_training)
    return cases


def best_worst_figure(cases: Sequence[Mapping[str, Any]], k: int = 3, key: str = "meanDic",
                      *, higher_is_better: bool = True, title: str | None = None) -> Figure:
    """The ``k`` best and ``k`` worst images by ``key``, with mask and prediction contours.

    Args:
        cases: dicts with ``image``, ``mask``, ``pred``, ``name`` and ``key``, e.g. from
            :func:`predict_test_set`.
        k: images per row.
        key: the score to rank by.
        higher_is_better: False for errors such as ``"MAE"``.
        title: figure title.
    """
    if not cases:
        raise ValueError("best_worst_figure needs at least one case")
    ranked = sorted(cases, key=lambda c: c[key], reverse=higher_is_better)
    k = min(k, len(ranked))
    rows = (("best", ranked[:k]), ("worst", ranked[::-1][:k]))
    fig, axes = _subplots(2, k, (2.7, 2.7))
    for r, (label, chosen) in enumerate(rows):
        for ax, case in zip(axes[r], chosen, strict=True):
            overlay(ax, case["image"], case["mask"], case["pred"],
                    title=f"{label}: {case['name']}\n{key} {case[key]:.3f}")
    _legend(fig, mask=True, pred=True)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_history(history_or_run_dir: list[dict[str, Any]] | str | os.PathLike[str],
                 ax: Any = None, *, title: str | None = None) -> Any:
    """Plot the loss terms (left axis) and the validation Dice (right axis) per epoch.

    Args:
        history_or_run_dir: ``TrainResult.history``, a run folder holding ``history.json``,
            or the ``history.json`` file itself.
        ax: a matplotlib Axes to draw on (a new figure if None).
        title: axes title (e.g. the model and the data it trained on).

    Returns:
        The Axes of the losses (its ``twin`` carries the Dice curve).
    """
    import matplotlib.pyplot as plt

    history = history_or_run_dir
    if isinstance(history, (str, os.PathLike)):
        path = Path(history)
        path = path / "history.json" if path.is_dir() else path
        if not path.is_file():
            raise DataError(f"no training history at {path}; train a model first")
        history = json.loads(path.read_text(encoding="utf-8"))
    if not history:
        raise DataError("the training history is empty")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [r["epoch"] for r in history]
    labels = {"loss": "total loss", "seg": "L_seg", "at": "L_AT", "sgm": "L_SGM", "kd": "L_KD"}
    for key, label in labels.items():
        values = [r[key] for r in history]
        if key in ("loss", "seg") or any(values):
            ax.plot(epochs, values, marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    dice_ax = ax.twinx()
    dice_ax.plot(epochs, [r["val_dice"] for r in history], "k--", marker="s", ms=3,
                 label="val Dice")
    dice_ax.set_ylabel("validation Dice")
    dice_ax.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()
    dice_lines = dice_ax.get_legend_handles_labels()
    ax.legend(lines[0] + dice_lines[0], lines[1] + dice_lines[1], fontsize="small",
              loc="center right")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


#: the colour of each transfer-set arm: its method's (kdas_lite.viz.METHOD_COLORS) or a spare
_ARM_METHOD = {"B": "oracle", "C": "pseudo-labels", "D-kdas": "KDAS", "D-cwd": "CWD",
               "D-pixel": "pixel KD", "D-at": "+L_AT", "E": "KDAS on L only"}


def transfer_figure(doc: Mapping[str, Any], title: str | None = None) -> Figure:
    """The transfer-set experiment (``docs/results/transfer_set.json``): each arm's Δ against
    the student alone A, at both label budgets (one panel each), on the 562 distinct test
    images (filled) and the unseen family (hollow). The D arms carry their Holm-level
    intervals (:mod:`kdas_lite.transfer_results`), B, C and E their raw 95 % ones.

    Raises:
        ValueError: no arm has a paired run yet.
    """
    contrasts = [c for family in doc["families"].values() for c in family
                 if c["reference"] == "A"] + [c for c in doc["context"]]
    arms = ["B", "C", "D-kdas", "D-cwd", "D-pixel", "D-at", "E"]
    budgets = sorted({c["labels"] for c in contrasts if c["n_units"]}, reverse=True)
    if not budgets:
        raise ValueError("transfer_figure: no arm has a paired run yet")
    fig, axes = _subplots(1, len(budgets), (4.6, 3.2))
    for ax, labels in zip(axes[0], budgets, strict=True):
        for offset, pool, face in ((-0.12, "all", None), (0.12, "unseen", "white")):
            for x, arm in enumerate(arms):
                c = next((c for c in contrasts if c["arm"] == arm and c["labels"] == labels
                          and c["pool"] == pool and c["n_units"]), None)
                if c is None:
                    continue
                ci = c["ci_holm"] or c["ci95"] or (c["estimate"], c["estimate"])
                ax.errorbar(x + offset, c["estimate"], yerr=[[c["estimate"] - ci[0]],
                                                             [ci[1] - c["estimate"]]],
                            marker="o", capsize=3, color=method_color(_ARM_METHOD[arm]),
                            mfc=face)
        ax.axhline(0, color="k", lw=1)
        ax.set_xticks(range(len(arms)), arms, rotation=30)
        ax.set_title(f"|L| = {labels}", fontsize=10)
        ax.set_ylabel("Δ mDice vs A (student alone)")
        ax.grid(alpha=0.3)
    _suptitle(fig, title or "Transfer set: Δ vs the student alone A\n(filled: 562 distinct "
              "test images; hollow: unseen family)")
    return fig
