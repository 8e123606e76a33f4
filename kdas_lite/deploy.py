"""The student where it would be used: its three deployable forms, measured side by side.

A trained student (a :class:`~kdas_lite.models.PolypPVT`) can run as

- **PyTorch fp32**: the model itself;
- **ONNX fp32**: :func:`kdas_lite.export.export_onnx`, run by ONNX Runtime;
- **ONNX INT8**: :func:`kdas_lite.quantize.quantize_int8`, static QDQ with per-channel weights,
  calibrated on **training** images only (never a test image).

:func:`export_forms` writes both ONNX files and :func:`three_forms` wraps them behind the model's
interface (``forms[name](x) → (P1, P2)``, ``x`` ``(B, 3, S, S)`` normalised), so the same code
scores and times all three: :func:`kdas_lite.evaluate.evaluate` for the mean Dice of the
standard protocol, :func:`latency_ms` for the time of one frame (batch 1, the real-time case).

Two questions of the deployment case are measured here too:

- **frames without a polyp** (:func:`no_polyp_crops`, :func:`false_positives`): crops of
  training images far from any mask; the fraction of crops with any predicted polyp pixel
  at the threshold, on ``σ(P1 + P2)`` *without* min–max normalisation (min–max would stretch
  an empty map to the full range, the PraNet #64 question);
- **temporal smoothing** (:func:`smoothing_dice`): Dice at the threshold on consecutive
  CVC-ColonDB frames with and without :class:`kdas_lite.video.EmaSmoother`.

Used by notebook 06 and ``benchmarks/bench_deploy.py`` (docs/bench/deploy.md).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kdas_lite.data import PolypTestDataset, build_eval_transform, find_layout
from kdas_lite.data.io import pair_files, read_image, read_mask
from kdas_lite.data.registry import image_mask_dirs
from kdas_lite.evaluate import soft_maps
from kdas_lite.export import export_onnx
from kdas_lite.quantize import Int8Refused, OnnxSegmenter, int8_path, quantize_int8
from kdas_lite.video import EmaSmoother

__all__ = ["FORMS", "DeployFiles", "clip_pairs", "export_forms", "false_positives", "latency_ms",
           "no_polyp_crops", "numeric_order", "smoothing_dice", "three_forms", "time_calls"]

FORMS = ("PyTorch fp32", "ONNX fp32", "ONNX INT8")
"""The three forms of a student, in the order of every table."""


@dataclass
class DeployFiles:
    """What :func:`export_forms` wrote.

    Attributes:
        fp32: the ONNX fp32 file.
        int8: the INT8 file, or, when it failed its accuracy check, the file kept for
            inspection (:func:`~kdas_lite.export.unfaithful_path`).
        accepted: whether the INT8 file passed the check (``export --int8`` keeps it).
        fp32_dice, int8_dice: the mean Dice of both files on the check's training images.
        check: how many training images the check used.
        max_dice_drop: the check's limit.
    """

    fp32: Path
    int8: Path
    accepted: bool
    fp32_dice: float
    int8_dice: float
    check: int
    max_dice_drop: float

    @property
    def message(self) -> str:
        """The check's outcome in one line (no path: it reads the same on every machine)."""
        lost = 100 * (self.fp32_dice - self.int8_dice)
        return (f"INT8 {'accepted' if self.accepted else 'refused'}: mean Dice "
                f"{self.int8_dice:.4f} against the fp32 file's {self.fp32_dice:.4f} on "
                f"{self.check} training images ("
                + (f"{lost:.2f} points lost" if lost >= 0 else f"{-lost:.2f} points gained")
                + f"; limit {100 * self.max_dice_drop:g} points lost)")


def export_forms(model: nn.Module, path: str | os.PathLike[str],
                 data_root: str | os.PathLike[str], size: int, *, calibration: int = 32,
                 check: int = 32, max_dice_drop: float = 0.005) -> DeployFiles:
    """Export ``model`` to ONNX fp32 at ``path`` and quantise it to INT8 beside it.

    The INT8 file is calibrated on ``calibration`` training images of ``data_root`` and
    checked on ``check`` others (:func:`~kdas_lite.quantize.quantize_int8`). Unlike
    ``kdas-lite export --int8``, a failed check does not stop here: the refused file
    (kept as ``*.unfaithful.onnx``) is returned with ``accepted=False``, so that it can be
    measured beside the others.

    Raises:
        ExportError: the export or the quantiser failed, or the refused file could not be
            kept (no INT8 file to measure).
    """
    fp32 = export_onnx(model, path, size)
    target = int8_path(fp32)
    try:
        _, before, after = quantize_int8(fp32, target, data_root, size, model.input_mean,
                                         model.input_std, calibration=calibration, check=check,
                                         max_dice_drop=max_dice_drop)
    except Int8Refused as refused:
        if refused.kept is None:  # a file export did not write is where it would be kept
            raise
        return DeployFiles(fp32, refused.kept, False, refused.fp32_dice, refused.int8_dice,
                           check, max_dice_drop)
    return DeployFiles(fp32, target, True, before, after, check, max_dice_drop)


def three_forms(model: nn.Module, files: DeployFiles, threads: int | None = None
                ) -> dict[str, nn.Module]:
    """:data:`FORMS` → a module returning ``(P1, P2)``: the model in eval mode and the two ONNX
    files (ONNX Runtime on ``threads`` threads; None: its default)."""
    mean, std = model.input_mean, model.input_std
    return {"PyTorch fp32": model.eval(),
            "ONNX fp32": OnnxSegmenter(files.fp32, mean, std, threads=threads, name="ONNX fp32"),
            "ONNX INT8": OnnxSegmenter(files.int8, mean, std, threads=threads, name="ONNX INT8")}


def time_calls(call: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``call`` (which must block until its result is ready),
    after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def latency_ms(model: nn.Module, size: int, *, warmup: int = 2, repeats: int = 7,
               seed: int = 0) -> float:
    """Median milliseconds of one forward pass of a ``(1, 3, size, size)`` frame (batch 1:
    one frame at a time, as a video arrives); ``1000 / latency`` is the frames/s."""
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        return 1e3 * statistics.median(time_calls(lambda: model(x), warmup, repeats))


def no_polyp_crops(data_root: str | os.PathLike[str], count: int, margin: int = 24,
                   seed: int = 0) -> list[np.ndarray]:
    """Up to ``count`` square RGB crops ``(s, s, 3)`` (``s`` a third of the shorter side) of
    *training* images whose window, grown by ``margin`` px, holds no mask pixel: frames with no
    polyp in view. One crop per image, images drawn at random (``seed``)."""
    import cv2

    pairs = pair_files(*image_mask_dirs(find_layout(data_root).train))
    crops: list[np.ndarray] = []
    for index in np.random.default_rng(seed).permutation(len(pairs)):
        image, mask = read_image(pairs[index][0]), read_mask(pairs[index][1])
        side = min(mask.shape) // 3
        grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8))
        window = next(((y, x) for y in range(0, mask.shape[0] - side + 1, side // 2)
                       for x in range(0, mask.shape[1] - side + 1, side // 2)
                       if not grown[y:y + side, x:x + side].any()), None)
        if window is not None:
            y, x = window
            crops.append(image[y:y + side, x:x + side])
        if len(crops) == count:
            break
    return crops


def false_positives(model: nn.Module, crops: Sequence[np.ndarray], size: int,
                    threshold: float = 0.5) -> tuple[float, float]:
    """On frames without a polyp: ``(fraction of crops with any pixel of σ(P1 + P2) ≥
    threshold, mean predicted area in % of the crop)``; no min–max normalisation."""
    if not crops:
        raise ValueError("no crops: no training image has a window far enough from its mask")
    transform = build_eval_transform(size, model.input_mean, model.input_std)
    flagged, areas = 0, []
    for crop in crops:
        with torch.inference_mode():
            p1, p2 = model(transform(image=crop)["image"][None])[:2]
        mask = soft_maps(p1 + p2, [crop.shape[:2]], minmax=False)[0] >= threshold
        flagged += bool(mask.any())
        areas.append(100 * float(mask.mean()))
    return flagged / len(crops), float(np.mean(areas))


def numeric_order(stems: Sequence[str]) -> list[int]:
    """Indices of ``stems`` in frame order: numeric stems by number (``2`` before ``10``),
    others after them by name."""
    return sorted(range(len(stems)), key=lambda i: (not stems[i].isdigit(),
                                                    int(stems[i]) if stems[i].isdigit() else 0,
                                                    stems[i]))


def clip_pairs(folder: str | os.PathLike[str], first: int | None = None,
               count: int | None = None) -> list[tuple[Path, Path]]:
    """A test set's ``(image, mask)`` pairs in :func:`numeric_order`: from frame number
    ``first`` on (None: the first frame), at most ``count`` of them — consecutive frames of
    CVC-ColonDB are frames of its colonoscopy videos (the 15 sequences' cuts are not marked)."""
    pairs = pair_files(*image_mask_dirs(folder))
    stems = [image.stem for image, _ in pairs]
    order = [i for i in numeric_order(stems)
             if first is None or (stems[i].isdigit() and int(stems[i]) >= first)]
    return [pairs[i] for i in order[:count]]


def smoothing_dice(model: nn.Module, folder: str | os.PathLike[str], size: int,
                   alphas: Sequence[float], limit: int | None = None,
                   threshold: float = 0.5, first: int | None = None) -> dict[float, float]:
    """Mean Dice at ``threshold`` over the frames of :func:`clip_pairs` (``first``, ``limit``),
    per EMA factor α of :class:`~kdas_lite.video.EmaSmoother` (1 = off)."""
    dataset = PolypTestDataset(folder, size=size, mean=model.input_mean, std=model.input_std)
    index = {image.stem: i for i, (image, _) in enumerate(dataset.pairs)}
    smoothers = {alpha: EmaSmoother(alpha) for alpha in alphas}
    dice: dict[float, list[float]] = {alpha: [] for alpha in alphas}
    for image, _ in clip_pairs(folder, first, limit):
        item = dataset[index[image.stem]]
        with torch.inference_mode():
            p1, p2 = model(item["image"][None])[:2]
        prob = soft_maps(p1 + p2, [item["mask"].shape], minmax=False)[0]
        truth = item["mask"].astype(bool)
        for alpha, smoother in smoothers.items():
            pred = smoother(prob) >= threshold
            both = np.logical_and(pred, truth).sum()
            dice[alpha].append(2 * both / (pred.sum() + truth.sum() + 1e-8))
    return {alpha: float(np.mean(values)) for alpha, values in dice.items()}
