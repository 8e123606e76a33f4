"""Static INT8 quantisation of an exported student with ONNX Runtime (``kdas-lite export --int8``).

The fp32 file of :func:`kdas_lite.export.export_onnx` becomes an INT8 one in ONNX Runtime's
QDQ format (``QuantizeLinear`` / ``DequantizeLinear`` pairs around each quantised operator):

- weights: signed 8 bit, **per output channel** (one scale per convolution filter);
- activations: 8 bit with one scale and zero point per tensor, fixed ahead of time
  ("static") from the range of values seen on **calibration images**: a few dozen
  **training** images, resized and normalised as for inference. A test image is never used
  (:func:`calibration_pairs` refuses any, by path and by content), or the INT8 file would be
  tuned on the data it is scored on;
- the check ("checked like today's export", :func:`check_int8`): other training images, not
  the calibration ones, go through the fp32 and the INT8 file; the INT8 file is kept only when
  its mean Dice against the ground-truth masks is at most ``max_dice_drop`` (default 0.005, half a
  Dice point) below the fp32 file's. Otherwise it is renamed to
  :func:`~kdas_lite.export.unfaithful_path` (for inspection) and the export is refused with
  one line.

The INT8 file has the fp32 file's interface (input ``image`` ``(N, 3, H, W)`` normalised
float32, outputs ``p1`` and ``p2`` logits) and its ``kdas_lite`` metadata mark, so the rules of
:mod:`kdas_lite.export` hold: only a file export wrote is ever replaced.
:class:`OnnxSegmenter` runs either file where a PyTorch model is expected (``evaluate``,
``predict``).
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kdas_lite.data.io import file_sha256
from kdas_lite.errors import DataError
from kdas_lite.export import MARK, ExportError, check_export, is_kdas_export, unfaithful_path

__all__ = ["Int8Refused", "OnnxSegmenter", "calibration_pairs", "check_int8", "int8_path",
           "quantize_int8"]

Pair = tuple[Path, Path]


class Int8Refused(ExportError):
    """The INT8 file failed its accuracy check (:func:`quantize_int8`).

    Attributes:
        fp32_dice, int8_dice: the mean Dice of both files on the check's training images.
        kept: where the refused file was kept for inspection, or None when it could not be
            (a file export did not write is at :func:`~kdas_lite.export.unfaithful_path`).
    """

    def __init__(self, message: str, fp32_dice: float, int8_dice: float,
                 kept: Path | None) -> None:
        super().__init__(message)
        self.fp32_dice, self.int8_dice, self.kept = fp32_dice, int8_dice, kept


def int8_path(path: str | os.PathLike[str]) -> Path:
    """Where the INT8 file of ``student.onnx`` goes by default: ``student.int8.onnx``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.int8{path.suffix}")


class OnnxSegmenter(nn.Module):
    """An ONNX file of :mod:`kdas_lite.export` behind a PyTorch model's interface.

    ``segmenter(x)`` takes ``(B, 3, H, W)`` normalised images (H, W the export's size) and
    returns the logits ``(P1, P2)``, each ``(B, 1, H, W)`` float32 CPU tensors, computed by
    onnxruntime (CPU provider, ``threads`` intra-op threads). It has no parameters; the
    ``input_mean`` / ``input_std`` of the model it was exported from must be given.
    """

    def __init__(self, path: str | os.PathLike[str], input_mean: Sequence[float],
                 input_std: Sequence[float], *, threads: int | None = None,
                 name: str | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ExportError("running an ONNX file needs onnxruntime: pip install onnxruntime"
                              ) from exc
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ExportError(f"onnxruntime cannot load {path}: {exc}") from exc
        self.input_mean, self.input_std = tuple(input_mean), tuple(input_std)
        self.encoder_name = name or self.path.name
        self.file_sha256 = file_sha256(self.path)  # its key in a course run's facts file

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        p1, p2 = self.session.run(["p1", "p2"], {"image": image.detach().float().cpu().numpy()})
        return torch.from_numpy(p1), torch.from_numpy(p2)


def calibration_pairs(data_root: str | os.PathLike[str], count: int, *, seed: int = 0,
                      skip: int = 0) -> list[Pair]:
    """``count`` training ``(image, mask)`` pairs of ``data_root``, drawn at random
    (``seed``), after skipping the first ``skip`` of the draw (so that calibration and
    check images differ: ``skip=0`` and ``skip=count`` of the same seed never overlap).

    Raises:
        DataError: no training folder under ``data_root``, too few images, or a drawn image
            is a test image: it lies in a test set's folder, or its bytes equal a test image's
            (:func:`kdas_lite.data.registry.leaked_test_images`). Calibrating on a test image
            would tune the INT8 file on the data it is scored on.
    """
    from kdas_lite.data import find_layout
    from kdas_lite.data.io import pair_files
    from kdas_lite.data.registry import image_mask_dirs, leaked_test_images

    layout = find_layout(data_root)
    pairs = [pair for pair in pair_files(*image_mask_dirs(layout.train))
             if pair[0].stem not in layout.exclude]
    random.Random(seed).shuffle(pairs)
    chosen = pairs[skip:skip + count]
    if len(chosen) < count:
        raise DataError(f"{layout.train} holds {len(pairs)} training images: too few for "
                        f"{count} calibration and {skip} other images; lower --calibration")
    assert_training_only(chosen, layout.test, leaked_test_images)
    return chosen


def assert_training_only(pairs: Sequence[Pair], test_sets: dict[str, Path],
                         leaked: Any = None) -> None:
    """Refuse ``pairs`` if any image is a test image (in a test set folder of
    ``test_sets``, or equal in bytes to one of their images when ``leaked`` is
    :func:`~kdas_lite.data.registry.leaked_test_images`).

    Raises:
        DataError: one line naming the first test image found.
    """
    from kdas_lite.data.io import pair_files
    from kdas_lite.data.registry import image_mask_dirs

    for name, folder in test_sets.items():
        root = folder.resolve()
        inside = [image for image, _ in pairs if image.resolve().is_relative_to(root)]
        if inside:
            raise DataError(f"{inside[0]} is a test image ({name}): calibration and its check "
                            "use training images only")
    if leaked is not None:
        found = leaked(list(pairs), {name: pair_files(*image_mask_dirs(folder))
                                     for name, folder in test_sets.items()})
        for name, stems in found.items():
            raise DataError(f"training image {stems[0]} is also a test image of {name}: "
                            "calibration and its check use training images only; remove it "
                            "from the training folder")


def _batches(pairs: Sequence[Pair], size: int, mean: Sequence[float], std: Sequence[float]
             ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(image (1, 3, size, size) float32 normalised, mask (H0, W0) bool)`` per pair."""
    from kdas_lite.data import build_eval_transform, read_image, read_mask

    transform = build_eval_transform(size, mean, std)
    for image_path, mask_path in pairs:
        x = transform(image=read_image(image_path))["image"][None].numpy()
        yield x, read_mask(mask_path)


class _Reader:
    """onnxruntime's ``CalibrationDataReader``: one image per ``get_next()``."""

    def __init__(self, pairs: Sequence[Pair], size: int, mean: Sequence[float],
                 std: Sequence[float]) -> None:
        self._items = (({"image": x}) for x, _ in _batches(pairs, size, mean, std))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def _mean_dice(segmenter: OnnxSegmenter, pairs: Sequence[Pair], size: int,
               threshold: float) -> float:
    """Mean Dice (threshold ``threshold`` on ``sigmoid(P1 + P2)`` resized to the mask)."""
    from kdas_lite.evaluate import soft_maps

    scores = []
    for x, mask in _batches(pairs, size, segmenter.input_mean, segmenter.input_std):
        p1, p2 = segmenter(torch.from_numpy(x))
        pred = soft_maps(p1 + p2, [mask.shape], minmax=False)[0] >= threshold
        inter = float(np.logical_and(pred, mask).sum())
        scores.append(2 * inter / (float(pred.sum() + mask.sum()) + 1e-8) if (
            pred.any() or mask.any()) else 1.0)
    return float(np.mean(scores))


def check_int8(fp32: OnnxSegmenter, int8: OnnxSegmenter, pairs: Sequence[Pair], size: int,
               *, threshold: float = 0.5) -> tuple[float, float]:
    """Mean Dice of the fp32 and the INT8 file on ``pairs`` (training images that were not
    used for calibration), in that order."""
    return (_mean_dice(fp32, pairs, size, threshold), _mean_dice(int8, pairs, size, threshold))


def quantize_int8(fp32_path: str | os.PathLike[str], out: str | os.PathLike[str],
                  data_root: str | os.PathLike[str], image_size: int,
                  input_mean: Sequence[float], input_std: Sequence[float], *,
                  calibration: int = 32, check: int = 32, max_dice_drop: float = 0.005,
                  seed: int = 0) -> tuple[Path, float, float]:
    """Write the static INT8 (QDQ, per-channel weights) version of an exported fp32 file.

    Args:
        fp32_path: a file written by :func:`kdas_lite.export.export_onnx`.
        out: the INT8 file (e.g. :func:`int8_path`); replaced only if export wrote it.
        data_root: the data root; calibration and check images come from its training folder
            only (:func:`calibration_pairs`).
        image_size: the side the fp32 file was exported at.
        input_mean, input_std: the model's normalisation.
        calibration: calibration images (activation ranges, min–max).
        check: other training images for :func:`check_int8`.
        max_dice_drop: largest accepted fall of the mean Dice (fp32 − INT8) on them.
        seed: the draw of the images.

    Returns:
        ``(path, fp32 Dice, INT8 Dice)`` on the check images.

    Raises:
        ExportError: onnxruntime's quantiser failed.
        Int8Refused: the INT8 file lost more than ``max_dice_drop`` (it is then kept only
            as :func:`unfaithful_path`, unless a file export did not write is there).
        DataError: too few training images, or a test image among them.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, out = Path(fp32_path), Path(out)
    check_export(out, 18, 1e-3)  # `out` must be new or a file export wrote
    if not is_kdas_export(fp32_path):
        raise ExportError(f"{fp32_path} was not written by kdas-lite export; quantise only "
                          "files it wrote (kdas-lite export CKPT first)")
    calib = calibration_pairs(data_root, calibration, seed=seed)
    held = calibration_pairs(data_root, check, seed=seed, skip=calibration)
    tag = secrets.token_hex(6)
    prep = out.with_name(f".{out.stem}.{tag}.prep.onnx")
    tmp = out.with_name(f".{out.stem}.{tag}.tmp.onnx")
    try:
        try:
            quant_pre_process(str(fp32_path), str(prep), skip_symbolic_shape=True)
            quantize_static(str(prep), str(tmp), _Reader(calib, image_size, input_mean, input_std),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        except Exception as exc:  # the quantiser raises many types; report them all the same
            first = (str(exc) or type(exc).__name__).splitlines()[0]
            raise ExportError(f"INT8 quantisation of {fp32_path} failed: {type(exc).__name__}: "
                              f"{first}") from exc
        proto = onnx.load(str(tmp))
        del proto.metadata_props[:]
        proto.metadata_props.add(key=MARK, value=f"written by kdas-lite export --int8 from "
                                                 f"{fp32_path.name}, {image_size} px, static "
                                                 f"INT8 (QDQ), {calibration} training images")
        onnx.save(proto, str(tmp))
        fp32_dice, int8_dice = check_int8(OnnxSegmenter(fp32_path, input_mean, input_std),
                                          OnnxSegmenter(tmp, input_mean, input_std),
                                          held, image_size)
        if fp32_dice - int8_dice > max_dice_drop:
            kept = unfaithful_path(out)
            if (kept.exists() or kept.is_symlink()) and not is_kdas_export(kept):
                kept = None
            else:
                os.replace(tmp, kept)
            raise Int8Refused(
                f"{out}: the INT8 file's mean Dice on {check} training images is "
                f"{int8_dice:.4f}, {100 * (fp32_dice - int8_dice):.2f} points below the fp32 "
                f"file's {fp32_dice:.4f} (limit {100 * max_dice_drop:g}); refused"
                + (f", kept only as {kept}" if kept else "") + ". Use the fp32 file.",
                fp32_dice, int8_dice, kept)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        prep.unlink(missing_ok=True)
    return out, fp32_dice, int8_dice
