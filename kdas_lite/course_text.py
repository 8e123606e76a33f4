"""The sentences the notebooks write about their own outputs.

A number or a comparison about this run is never typed into a notebook: a cell computes it
and one of these functions turns it into Markdown, so the words change when the outputs do.
Each function takes plain values (or :class:`~kdas_lite.evaluate.EvaluationTable` objects)
and returns one Markdown string; none of them trains or loads anything.

- notebook 01: :func:`preset_departures` (the parameter cell beside the ``cpu-lab`` preset),
  :func:`saturation_reading` (exercise 2: where L_seg saturates as a prediction shifts);
- notebook 02: :func:`spread_reading` (the encoder-attention entropies, or why they say
  nothing), :func:`static_figure_caption` (what the explorer's static figure holds),
  :func:`untrained_attention_note` (the box when those encoders are untrained),
  :func:`concentration_reading` and :func:`revival_reading` (exercises 2 and 3);
- notebook 05: :func:`evaluation_reading` (section 4b), :func:`resize_reading`,
  :func:`minmax_reading` and :func:`seen_unseen_reading` (exercises 1–3; :func:`unseen_sets`
  counts a repeated family of images once);
- notebook 06: :func:`deploy_reading` (INT8 against fp32, beside issue 31's targets),
  :func:`no_polyp_reading`, and :func:`calibration_reading`, :func:`smoothing_reading`,
  :func:`threshold_reading` (exercises 1–3).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from kdas_lite.config import TrainConfig, get_preset
from kdas_lite.evaluate import PAPER_RESULTS, PAPER_SOURCES, EvaluationTable

__all__ = [
    "INT8_TARGET_LOSS",
    "INT8_TARGET_SPEEDUP",
    "SEEN_SETS",
    "calibration_reading",
    "concentration_reading",
    "deploy_reading",
    "evaluation_reading",
    "minmax_reading",
    "no_polyp_reading",
    "preset_departures",
    "resize_reading",
    "revival_reading",
    "saturation_reading",
    "seen_unseen_reading",
    "smoothing_reading",
    "spread_reading",
    "static_figure_caption",
    "threshold_reading",
    "unseen_sets",
    "untrained_attention_note",
]

SEEN_SETS = ("Kvasir", "CVC-ClinicDB")
"""The test sets drawn from the same sources as the training images (PraNet's split)."""

_SIZES = ("image_size", "epochs", "batch_size", "max_train_images", "max_val_images")


def _count(items: Sequence[str]) -> str:
    return f"{len(items)} ({', '.join(items)})" if items else "none"


# ---------------------------------------------------------------------------------------------
# Notebook 01
# ---------------------------------------------------------------------------------------------
def preset_departures(config: TrainConfig, preset: str = "cpu-lab") -> str:
    """How ``config``'s sizes depart from ``preset`` (one sentence), and what it keeps.

    Example:
        >>> from kdas_lite.config import get_preset
        >>> preset_departures(get_preset("cpu-lab", epochs=15)).split(":")[0]
        'This run trains with the `cpu-lab` preset of `kdas_lite.config` except for its sizes'
    """
    base = get_preset(preset)
    changed = [f"`{k} = {getattr(config, k)!r}` (the preset: {getattr(base, k)!r})"
               for k in _SIZES if getattr(config, k) != getattr(base, k)]
    kept = (f"learning rate {config.lr:g}, {config.scheduler} schedule with "
            f"{config.warmup_epochs:g} warm-up epoch(s), scales {list(config.train_sizes)}")
    if not changed:
        return (f"This run trains with the `{preset}` preset of `kdas_lite.config` as it is "
                f"({kept}).")
    return (f"This run trains with the `{preset}` preset of `kdas_lite.config` except for its "
            f"sizes: {', '.join(changed)}; the recipe is the preset's ({kept}).")


def saturation_reading(shifts: Sequence[int], losses: Sequence[float],
                       wrong: Sequence[float], overlap: Sequence[float], width: int,
                       tolerance: float = 0.01) -> str:
    """Exercise 2 of notebook 01: where L_seg stops growing as the prediction shifts.

    Args:
        shifts: the shifts in px, increasing, starting at 0.
        losses: L_seg at each shift.
        wrong: the fraction of wrong pixels at each shift.
        overlap: the fraction of the mask still covered by the shifted prediction.
        width: the mask's width in px (the shift at which the overlap must end).
        tolerance: "saturated" = within this fraction of the largest L_seg.
    """
    if not len(shifts) == len(losses) == len(wrong) == len(overlap) >= 2:
        raise ValueError("shifts, losses, wrong and overlap need the same length (at least 2)")
    top = max(losses)
    at = next(k for k, loss in zip(shifts, losses, strict=True) if loss >= (1 - tolerance) * top)
    apart = next((k for k, o in zip(shifts, overlap, strict=True) if o <= tolerance), None)
    first_loss, first_wrong = losses[1] / top, wrong[1] / max(max(wrong), 1e-12)
    where = (f"the shift at which the prediction covers at most {tolerance:.0%} of the mask is "
             f"{apart} px" if apart is not None else
             f"the prediction still overlaps the mask at the largest shift, {shifts[-1]} px")
    return (f"**L_seg saturates at a shift of about {at} px** (within {tolerance:.0%} of its "
            f"largest value, {top:.3f}); the mask is {width} px wide and {where}: once "
            "prediction and mask no longer overlap, the weighted IoU term is at its maximum 1 "
            "and the wrong pixels stop growing, so nothing is left to grow. It does not grow "
            f"like the wrong pixels: the first shift ({shifts[1]} px) already costs "
            f"{first_loss:.0%} of the final L_seg with {first_wrong:.0%} of the final wrong "
            "pixels — the boundary weights and the IoU term make a small misalignment expensive.")


# ---------------------------------------------------------------------------------------------
# Notebook 02
# ---------------------------------------------------------------------------------------------
def spread_reading(teacher: Mapping[int, float], student: Mapping[int, float], weights: str,
                   *, uniform: float = 0.999, tie: float = 5e-4) -> str:
    """What the entropies of the encoders' attention say (section 1 of notebook 02).

    Args:
        teacher, student: stage → normalised entropy of the query-averaged attention
            (1: uniform over the keys).
        weights: what the encoders are (``"trained"``, ``"ImageNet weights, not fine-tuned"``
            or ``"random init"``).
        uniform: an entropy at or above this is "uniform".
        tie: differences below this count as equal.

    Returns:
        The comparison, or — when the encoders are untrained or every stage ties — a sentence
        that says why the table compares nothing (never "more spread out at 0 stages").
    """
    if set(teacher) != set(student) or not teacher:
        raise ValueError("teacher and student need entropies for the same stages")
    values = [*teacher.values(), *student.values()]
    wider = [str(s) for s in teacher if student[s] > teacher[s] + tie]
    narrower = [str(s) for s in teacher if student[s] < teacher[s] - tie]
    flat = (f"their attention is uniform over the keys at every stage (every entropy "
            f"≥ {uniform:.3f})" if min(values) >= uniform else
            f"teacher and student have the same entropy at every stage (within {tie:g})"
            if not (wider or narrower) else
            f"their entropies range from {min(values):.3f} to {max(values):.3f}")
    if weights == "random init":
        return (f"These encoders are untrained (random init): {flat}, so this table shows the "
                "mechanism, not a difference between a teacher and a student; it says nothing "
                "about what trained models attend to.")
    if not (wider or narrower):
        return (f"With these encoders ({weights}) {flat}: no stage separates the student from "
                "the teacher.")
    return (f"With these encoders ({weights}), of {len(teacher)} stages the student's attention "
            f"is more spread out than the teacher's at {_count(wider)}, more focused at "
            f"{_count(narrower)}"
            + (f", and as spread out (within {tie:g}) at the others."
               if len(wider) + len(narrower) < len(teacher) else "."))


def static_figure_caption(kinds: Sequence[str], stage: int | None = None) -> str:
    """The caption of :meth:`~kdas_lite.viz.AttentionExplorer.static_figure`, naming only the
    columns it draws (the encoder ones exist only for PVTv2 models)."""
    encoder = [k for k in kinds if k.startswith("encoder attention")]
    where = (f" (the encoder columns at stage {stage}, the last)" if encoder and stage
             else "")
    missing = ("" if encoder else "; the encoder-attention maps are not among them: these "
               "encoders have no self-attention")
    return (f"This figure shows the explorer's {len(kinds)} map kinds, one per column — "
            f"{', '.join(kinds)}{where} — for the teacher, the student and their difference "
            f"(rows){missing}:")


def concentration_reading(strengths: Sequence[float], target: Sequence[float],
                          own: Sequence[float], tie: float = 0.005) -> str:
    """Exercise 2 of notebook 02: for which teacher confidences the L_AT target puts more
    (or less) probability mass on the polyp than the teacher's own map.

    Args:
        strengths: the toy teacher's logit size ``s`` per case.
        target, own: mass on the blob of ``softmax(A_t/T)`` and of ``softmax(P_t/T)``.
        tie: differences below this (a fraction of the mass) count as equal.
    """
    if not len(strengths) == len(target) == len(own) > 0:
        raise ValueError("strengths, target and own need the same, non-zero length")
    cases = list(zip(strengths, target, own, strict=True))
    more = [f"{s:g}" for s, a, p in cases if a > p + tie]
    less = [f"{s:g}" for s, a, p in cases if a < p - tie]
    same = [f"{s:g}" for s, a, p in cases if abs(a - p) <= tie]
    largest = max(cases, key=lambda c: c[2] - c[1])
    return ((f"The target concentrates on the blob more than the map at s = {', '.join(more)}"
             if more else "The target never puts more mass on the blob than the teacher's map")
            + (f"; it smears mass along the rows (less on the blob) at s = {', '.join(less)} "
               f"(most at s = {largest[0]:g}: {largest[1]:.1%} instead of {largest[2]:.1%})"
               if less else "")
            + (f"; at s = {', '.join(same)} both put the same mass on it (within "
               f"{tie:.1%})" if same else "")
            + ". Each row of A_t is a weighted average of rows of P_t, so it cannot be more "
            "extreme than the map: a confident map (large s) passes through unchanged, a "
            "weak one is blurred along its rows.")


def untrained_attention_note(encoders: tuple[str, str], weights: str) -> str:
    """The box of notebook 02's section 1 when the trained pair has no self-attention and
    the section draws PVTv2-b2 / b0 built for the purpose (``weights``: ``"random init"`` or
    ``"ImageNet weights, not fine-tuned"``)."""
    what = ("untrained (random initialisation)" if weights == "random init" else
            "pretrained on ImageNet classification and never trained on polyps")
    return (f"The models this run trained use {encoders[0]} / {encoders[1]}, which have no "
            f"self-attention. The maps of this section are of PVTv2-b2 / b0 that are {what}: "
            "they show the mechanism (query and key grids, heads, spatial reduction), not what "
            "a trained teacher or student looks at, and they cannot compare teacher and student. "
            "kdas_lite ships no figure of a trained PVTv2's attention (the authors' weights are "
            "not reachable offline). To see trained maps, run this notebook where the timm hub "
            "is reachable (Colab) with encoders = \"pvt\": the teacher and student of notebooks "
            "01 and 04 are then PVTv2 models fine-tuned on polyps, and this section draws their "
            "own attention. The mechanism: Wang et al., PVT v2: Improved Baselines with Pyramid "
            "Vision Transformer, Computational Visual Media 2022.")


def revival_reading(role: str, dead: bool, before: tuple[float, float],
                    after: tuple[float, float], fc1_gradient: float) -> str:
    """Exercise 3 of notebook 02: is the revived channel attention still a constant, and
    why gradient descent could not revive it.

    Args:
        role: whose CIM was revived (``"teacher"`` or ``"student"``).
        dead: whether section 2 found every hidden unit of that model dead.
        before, after: (min, max) of its channel attention before and after setting ``fc1``.
        fc1_gradient: the norm of the gradient that reached ``fc1`` before, through a loss
            on the outputs.
    """
    constant = after[1] - after[0] < 1e-6
    history = (f"The {role}'s channel attention was dead (section 2): it spanned "
               if dead else f"Neither model's channel attention is dead in this run. The "
               f"{role}'s spanned ")
    return (history + f"[{before[0]:.3f}, {before[1]:.3f}] before and spans "
            f"[{after[0]:.3f}, {after[1]:.3f}] after setting `fc1`: "
            + ("still a constant." if constant else "**no longer a constant**."
               if before[1] - before[0] < 1e-6 else "not a constant, nor was it before.")
            + (f" Gradient descent cannot get there by itself: the gradient that reached `fc1` "
               f"through the ReLU was {fc1_gradient:.1e} — every pre-activation is ≤ 0, the "
               "ReLU's derivative is 0 there, so training never moves these weights."
               if fc1_gradient == 0 else
               f" Here `fc1` does receive a gradient (norm {fc1_gradient:.1e}): a live unit is "
               "trained like any other weight; only a dead one is stuck."))


# ---------------------------------------------------------------------------------------------
# Notebook 05
# ---------------------------------------------------------------------------------------------
def _label(tables: Mapping[str, EvaluationTable], dataset: str) -> str:
    return next(iter(tables.values())).label(dataset)


def evaluation_reading(tables: Mapping[str, EvaluationTable], teacher_encoder: str,
                       student_encoder: str, *, teacher: str = "teacher",
                       student: str = "student (KDAS)", alone: str = "student alone") -> str:
    """Section 4b of notebook 05: which model wins where, KDAS vs the student alone, the
    pair's size and speed, and the gap to the published numbers (subsets kept apart).

    Args:
        tables: model name → its table, all on the same test sets (``teacher`` and
            ``student`` required, ``alone`` optional).
        teacher_encoder, student_encoder: the pair's encoders.
        teacher, student, alone: the names of those models in ``tables``.
    """
    t, s = tables[teacher], tables[student]
    sets = t.datasets
    lines = []
    best = {d: max(tables, key=lambda n: tables[n].rows[d]["meanDic"]) for d in sets}
    for name in tables:
        won = [_label(tables, d) for d in sets if best[d] == name]
        if won:
            lines.append(f"- **{name}** scores the best mDice on {len(won)} of {len(sets)} "
                         f"test sets: {', '.join(won)}.")
    if alone in tables:
        kd, base = s.rows, tables[alone].rows
        above = [_label(tables, d) for d in sets if kd[d]["meanDic"] > base[d]["meanDic"]]
        below = [_label(tables, d) for d in sets if kd[d]["meanDic"] <= base[d]["meanDic"]]
        lines.append(f"- The KDAS student is **above** the student alone on {len(above)} of "
                     f"{len(sets)} sets ({', '.join(above) or 'none'}) and at or below it on "
                     f"{len(below)} ({', '.join(below) or 'none'}) — one seed each here; "
                     "notebook 04's lab gives the intervals over seeds.")
    speed = (f"; the student runs {s.images_per_s / t.images_per_s:.1f}× as many images per "
             f"second as the teacher on {s.device} at {s.size} px (measured during the "
             "evaluation)" if t.images_per_s and s.images_per_s else "")
    if t.params and s.params:
        lines.append(
            f"- **This pair** (`{teacher_encoder}` → `{student_encoder}`): the teacher has "
            f"{t.params / s.params:.1f}× the student's parameters ({t.params / 1e6:.2f} M vs "
            f"{s.params / 1e6:.2f} M){speed}"
            + (" — the paper's PVTv2 pair." if teacher_encoder.startswith("pvt") else
               "; the paper's PVTv2-b2 → b0 pair differs far more in size (notebook 01 "
               "counts both)."))
    for role, table in (("teacher", t), ("student", s)):
        lines += _published_gap(role, table)
    return "\n".join(lines)


def _published_gap(role: str, table: EvaluationTable) -> list[str]:
    gaps, skipped = {}, []
    for d in table.datasets:
        published = PAPER_RESULTS[role].get(d, {}).get("meanDic")
        if published is None:
            continue
        if d in table.status and not table.status[d].comparable:
            skipped.append(table.label(d))
        else:
            gaps[table.label(d)] = table.rows[d]["meanDic"] - published
    if not gaps:
        return []
    return [f"- Against the published {role} ({PAPER_SOURCES[role]}): "
            + ", ".join(f"{d} {g:+.3f}" for d, g in gaps.items())
            + f" (mean {np.mean(list(gaps.values())):+.3f})"
            + (f"; {', '.join(skipped)} not comparable (a subset)." if skipped else ".")
            + (" SYNTHETIC data: meaningless." if table.synthetic else "")]


def resize_reading(by_resize: Mapping[str, EvaluationTable], dataset: str) -> str:
    """Exercise 1 of notebook 05: how far mDice moves between the OpenCV and PIL resizes."""
    opencv, pil = (by_resize[r].rows[dataset]["meanDic"] for r in ("opencv", "pil"))
    moved = pil - opencv
    direction = ("up" if moved > 0 else "down") if round(moved, 4) else "not at all"
    return (f"With PIL's antialiased resize mDice moves **{direction}** on "
            f"{by_resize['opencv'].label(dataset)}: {pil:.4f} against {opencv:.4f} with "
            f"OpenCV's ({moved:+.4f}). The authors' released checkpoints were trained and "
            "tested with the public loader's PIL resize, so they must be scored with "
            "`resize=\"pil\"`; a model trained here (OpenCV) is scored with OpenCV.")


def minmax_reading(normalised: EvaluationTable, raw: EvaluationTable, dataset: str,
                   order_kept: Sequence[bool], decimals: int = 4) -> str:
    """Exercise 2 of notebook 05: which metrics min–max normalisation changes, and what it
    cannot change (the order of the pixels within each map).

    Args:
        normalised, raw: the same model on ``dataset`` with ``minmax=True`` / ``False``.
        order_kept: per image checked, whether sorting its pixels by the raw map leaves the
            normalised map sorted too (the same order of pixels).
        decimals: a metric "changes" when it differs at this many decimals.
    """
    a, b = normalised.rows[dataset], raw.rows[dataset]
    changed = [m for m in a if round(a[m], decimals) != round(b[m], decimals)]
    kept = [m for m in a if m not in changed]
    return (f"On {normalised.label(dataset)}, {len(changed)} of {len(a)} metrics change "
            f"({', '.join(changed) or 'none'}); unchanged to {decimals} decimals: "
            f"{', '.join(kept) or 'none'}. What **cannot** change is the order of the pixels "
            "within each map: min–max is an increasing affine map per image (the order is the "
            f"same in {sum(order_kept)} of the {len(order_kept)} images checked). Every "
            "toolbox score reads the map's values (MAE, "
            "Sm, wFm) or cuts them at fixed thresholds (Dice, IoU, E-measure), so any of them "
            "may change; a map that never reaches 0.5 is stretched to the full [0, 1] and "
            "crosses the middle thresholds, which is why `Test.py`'s normalisation helps a "
            "model that is never confident.")


def unseen_sets(table: EvaluationTable, seen: Sequence[str] = SEEN_SETS
                ) -> tuple[list[str], dict[str, str]]:
    """The unseen test sets of ``table``, each family of images counted once.

    A set whose images are another present set's (status ``"inferred"`` and a data note that
    starts with that set's name, as CVC-300 = "CVC-ColonDB frames 149-208") is left out.

    Returns:
        The distinct unseen sets, and the left-out ones → the set they repeat.
    """
    unseen = [d for d in table.datasets if d not in seen]
    repeats = {d: other for d in unseen if d in table.status
               and table.status[d].status == "inferred"
               for other in unseen if other != d and table.status[d].note.startswith(other)}
    return [d for d in unseen if d not in repeats], repeats


def seen_unseen_reading(tables: Mapping[str, EvaluationTable],
                        seen: Sequence[str] = SEEN_SETS) -> str:
    """Exercise 3 of notebook 05: each model's mean mDice on the seen and the unseen sets
    (:func:`unseen_sets`: a repeated family once) and which model loses least when the
    hospital and camera change."""
    first = next(iter(tables.values()))
    on_seen = [d for d in first.datasets if d in seen]
    unseen, repeats = unseen_sets(first, seen)
    if not (on_seen and unseen):
        return (f"Needs both seen ({', '.join(seen)}) and unseen test sets; these tables have "
                f"{', '.join(first.datasets)}.")
    gaps = {name: np.mean([t.rows[d]["meanDic"] for d in on_seen])
            - np.mean([t.rows[d]["meanDic"] for d in unseen]) for name, t in tables.items()}
    least = min(gaps, key=gaps.get)
    left_out = "".join(f" {first.label(d)} is left out: its images are {other}'s frames (the "
                       "data's note), counted once." for d, other in repeats.items())
    return (f"**{least}** loses least from the seen sets ({', '.join(on_seen)}) to the unseen "
            f"ones ({', '.join(first.label(d) for d in unseen)}): {gaps[least]:+.3f} mDice; "
            + ", ".join(f"{n} {g:+.3f}" for n, g in gaps.items() if n != least)
            + " (an unweighted mean over sets, one seed each; notebook 04's lab gives intervals "
            "over seeds)." + left_out)


# ---------------------------------------------------------------------------------------------
# Notebook 06: deploying the student
# ---------------------------------------------------------------------------------------------
INT8_TARGET_SPEEDUP = 2.0
"""Issue 31's target: the INT8 student at twice the fp32 ONNX student's frames/s ..."""
INT8_TARGET_LOSS = 0.5
"""... losing at most half a Dice point (mDice × 100) on every test set."""


def deploy_reading(latency_ms: Mapping[str, float], tables: Mapping[str, EvaluationTable],
                   accepted: bool, check: str, threads: int) -> str:
    """Section 2 of notebook 06: the INT8 form against ONNX fp32 and PyTorch (speed ratio,
    Dice points lost per set, both beside issue 31's targets), and export's own check.

    Args:
        latency_ms: form → median ms of one frame (``"PyTorch fp32"``, ``"ONNX fp32"``,
            ``"ONNX INT8"``).
        tables: form → its evaluation on the same test sets.
        accepted, check: :class:`~kdas_lite.deploy.DeployFiles`' verdict and message.
        threads: the CPU threads the forms ran on.
    """
    fp32, int8, torch_ms = latency_ms["ONNX fp32"], latency_ms["ONNX INT8"], \
        latency_ms["PyTorch fp32"]
    speedup = fp32 / int8
    base, quant, ref = tables["ONNX fp32"], tables["ONNX INT8"], tables["PyTorch fp32"]
    lost = {d: 100 * (base.rows[d]["meanDic"] - quant.rows[d]["meanDic"]) for d in base.rows}
    worst = max(lost, key=lost.get)
    drift = max(abs(100 * (ref.rows[d]["meanDic"] - base.rows[d]["meanDic"])) for d in base.rows)
    return "\n".join([
        f"- **Speed** ({threads} CPU thread(s), batch 1): the INT8 file runs a frame in "
        f"{int8:.1f} ms, **{speedup:.2f}×** the frames/s of the fp32 ONNX file ({fp32:.1f} ms) "
        f"and {torch_ms / int8:.2f}× PyTorch's ({torch_ms:.1f} ms): "
        + ("it meets" if speedup >= INT8_TARGET_SPEEDUP else "it misses")
        + f" the {INT8_TARGET_SPEEDUP:g}× target here.",
        (f"- **Accuracy**: INT8 loses at most **{lost[worst]:.2f} Dice points** against fp32 "
         f"ONNX (on {base.label(worst)}), "
         + ("within" if round(lost[worst], 2) <= INT8_TARGET_LOSS else "beyond")
         + f" the {INT8_TARGET_LOSS:g}-point target" if lost[worst] > 0 else
         "- **Accuracy**: INT8 loses no Dice against fp32 ONNX: it scores at least the fp32 "
         f"file's mDice on every set (up to {-min(lost.values()):.2f} points above it)")
        + "; fp32 ONNX and PyTorch differ by at most "
        f"{drift:.2f} points (float kernels, not quantisation).",
        "- **Export's own check** (other *training* images): "
        + ("passed" if accepted else "**refused** — `kdas-lite export --int8` would stop "
           "here and keep only the fp32 file; the refused file is measured above for the "
           "lesson") + f". {check}",
    ])


def no_polyp_reading(rates: Mapping[str, tuple[float, float]], n_crops: int,
                     threshold: float) -> str:
    """Section 4 of notebook 06: false positives on frames without a polyp, per form
    (``form → (fraction of crops with a polyp pixel, mean area %)``)."""
    if not n_crops:
        return ("No training image had a window far enough from its mask to give a crop "
                "without a polyp (small or SYNTHETIC images): nothing to measure here.")
    parts = [f"{form}: {100 * frac:.0f} % of the crops, {area:.2f} % of the pixels on average"
             for form, (frac, area) in rates.items()]
    return (f"On {n_crops} crops with no polyp in view, at threshold {threshold:g} without "
            "min–max normalisation, a polyp pixel is predicted in — " + "; ".join(parts) + ". "
            "With min–max normalisation every one of these maps would be stretched to the full "
            "range and thresholded into a 'polyp' (the PraNet #64 question): that is why "
            "`predict` and `export --int8` never normalise.")


def smoothing_reading(dice: Mapping[float, float], n_frames: int) -> str:
    """Exercise 2 of notebook 06: Dice at the threshold on consecutive frames, per EMA α."""
    off = dice[1.0]
    moved = ", ".join(f"α = {a:g}: {d:.4f} ({d - off:+.4f})" for a, d in dice.items() if a != 1.0)
    best = max(dice, key=dice.get)
    return (f"Over {n_frames} consecutive frames, Dice without smoothing is {off:.4f}; {moved}. "
            + ("Smoothing helps on this clip" if best != 1.0 and dice[best] > off else
               "Smoothing does not help on this clip")
            + ": an average over frames keeps a polyp that the camera has already left and "
            "blurs one that moves, so it pays only when the predictions flicker more than the "
            "scene moves.")


def calibration_reading(by_count: Mapping[int, tuple[float, str]], dataset: str) -> str:
    """Exercise 1 of notebook 06: INT8 mDice on ``dataset`` per number of calibration images
    (``count → (mDice, export's check line)``)."""
    parts = [f"{n} image(s): {d:.4f}" for n, (d, _) in sorted(by_count.items())]
    low, high = min(by_count), max(by_count)
    moved = by_count[high][0] - by_count[low][0]
    return (f"INT8 mDice on {dataset} by calibration images — " + "; ".join(parts)
            + f" ({moved:+.4f} from {low} to {high}). "
            + ("More calibration images gave the better file here: "
               if moved > 0 else "Here the fewer images did as well or better, by chance of the "
               "draw; in general: ")
            + "the activation ranges come from the calibration images, and too few can miss "
            "values the test frames reach (clipped) or be set by one odd frame (coarse steps). "
            "They must be training images: calibrating on test images would tune the file on "
            "what it is scored on.")


def threshold_reading(rows: Mapping[float, tuple[float, float]], dataset: str) -> str:
    """Exercise 3 of notebook 06: per threshold, ``(fraction of no-polyp crops flagged, Dice at
    that threshold on ``dataset``)``."""
    ordered = sorted(rows.items())
    parts = [f"{t:g}: {100 * fp:.0f} % of empty crops flagged, Dice {d:.4f}"
             for t, (fp, d) in ordered]
    flagged = [fp for _, (fp, _) in ordered]
    dice = [d for _, (_, d) in ordered]
    fewer = all(a >= b for a, b in itertools.pairwise(flagged))
    return ("By threshold — " + "; ".join(parts) + f" (Dice on {dataset}). "
            + ("A higher threshold flags fewer empty frames"
               if fewer else "The flagged fraction is not monotone here (few crops)")
            + ("; and Dice falls as it rises: the price is polyp pixels lost on frames that "
               "have one." if dice[-1] < dice[0] else
               "; and Dice does not fall as it rises: this student over-segments, so on this "
               "clip a higher threshold costs nothing, a small or faint polyp would pay it.")
            + " The threshold is a clinical choice (a missed polyp against a false alarm), not "
            "a training one.")
