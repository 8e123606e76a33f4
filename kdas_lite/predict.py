"""Masks and overlays for a folder of images (``kdas-lite predict``).

For every image ``<stem>.<ext>`` of a folder, :func:`predict_folder` writes, under the output
folder:

- ``masks/<stem>.png``: the predicted mask, 0/255, at the image's own size (the same names as
  the PraNet ground-truth masks, so the folder can be scored like a test set);
- ``overlays/<stem>.png``: for a person to look at: the image with the prediction outlined
  and lightly filled in yellow (the notebooks' prediction colour: it stands out on red/pink
  mucosa and for red-green colour-blind readers), under a banner naming the model, the input
  size and the threshold, with a legend and the mark "research use only";
- ``predictions.csv``: one row per input image: written or skipped (and why), the mask and
  overlay files, the predicted polyp area;
- ``README.txt``: what produced the folder, and that it is not a diagnosis.

What happens on bad input (the rules of the command line):

- an unreadable image is **skipped and reported** (``PredictionReport.skipped``, the CSV);
  the other images are still predicted, since one corrupt frame of a video must not cost the
  rest;
- two inputs that would write the same mask (``a.jpg`` and ``a.png``) are refused before any
  work, as is an output folder that already holds predictions (``overwrite=True`` replaces
  them), and a threshold outside (0, 1), a batch size below 1 or a size that is not a positive
  multiple of 32: nothing is written then.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from kdas_lite.config import ConfigError
from kdas_lite.errors import DataError

__all__ = ["RESEARCH_ONLY", "PredictionReport", "overlay_image", "predict_folder"]

RESEARCH_ONLY = "RESEARCH USE ONLY - not a medical device, not a diagnosis"
"""The mark on every overlay, in every PNG's metadata and in the output folder's README."""

PRED_RGB = (255, 214, 0)
"""Prediction colour (``#ffd600``, :data:`kdas_lite.viz.PRED_COLOR`)."""

_MANAGED = ("masks", "overlays")  # sub-folders predict_folder writes and, on overwrite, empties
_MANIFEST, _README = "predictions.csv", "README.txt"


@dataclass
class PredictionReport:
    """What :func:`predict_folder` did.

    Attributes:
        output_dir: the output folder.
        written: the mask files written, one per readable input image.
        skipped: input image → why it was skipped (unreadable).
        manifest: the ``predictions.csv`` listing every input image.
    """

    output_dir: Path
    written: list[Path] = field(default_factory=list)
    skipped: dict[Path, str] = field(default_factory=dict)
    manifest: Path | None = None


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def overlay_image(image: np.ndarray, mask: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """The image with the predicted region outlined and filled, under a captioned banner.

    Args:
        image: ``uint8 (H, W, 3)`` RGB.
        mask: ``bool (H, W)``, the prediction.
        lines: the banner's text, one entry per line (model, size, ...); a legend line and
            :data:`RESEARCH_ONLY` are added below them.

    Returns:
        ``uint8 (H + banner, max(W, text width), 3)``: the banner on top, the image below it
        (left-aligned, pixel for pixel; any extra width is dark).
    """
    import cv2

    h, w = mask.shape
    tinted = image.astype(np.float32)
    tinted[mask] = 0.8 * tinted[mask] + 0.2 * np.array(PRED_RGB, np.float32)
    tinted = tinted.round().astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(tinted, contours, -1, PRED_RGB, max(2, round(min(h, w) / 150)))

    font_px = max(11, min(24, w // 45))
    font = _font(font_px)
    legend = ("predicted polyp (yellow outline and tint)" if mask.any()
              else "no polyp predicted at this threshold")
    text = [*lines, legend, RESEARCH_ONLY]
    pad, step = font_px // 2, round(font_px * 1.35)
    swatch = 2 * font_px  # the legend's colour sample before its text
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(probe.textlength(t, font=font) + (swatch + pad if t == legend else 0)
                 for t in text)
    width, banner = max(w, int(text_w) + 2 * pad), pad * 2 + step * len(text)
    canvas = Image.new("RGB", (width, banner + h), (20, 20, 20))
    canvas.paste(Image.fromarray(tinted), (0, banner))
    draw = ImageDraw.Draw(canvas)
    for index, line in enumerate(text):
        y, x = pad + index * step, pad
        colour = (255, 255, 255)
        if line == legend:
            middle = y + font_px // 2
            draw.line([(x, middle), (x + swatch - pad, middle)], fill=PRED_RGB, width=3)
            x += swatch
        elif line == RESEARCH_ONLY:
            colour = (255, 120, 120)
        draw.text((x, y), line, fill=colour, font=font)
    return np.asarray(canvas)


def _check_arguments(size: int, threshold: float, batch_size: int) -> None:
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold must lie strictly between 0 and 1 (it applies to the "
                          f"polyp probability sigmoid(P1 + P2)), got {threshold}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    if size < 32 or size % 32:
        raise ConfigError(f"image size must be a positive multiple of 32, got {size} "
                          "(the encoders downsample by 32)")


def _list_inputs(input_dir: Path) -> list[Path]:
    """The images of ``input_dir``, sorted; refuses stems that would share an output file."""
    from kdas_lite.data import IMAGE_EXTENSIONS

    if not input_dir.is_dir():
        raise DataError(f"image folder not found: {input_dir}")
    paths = sorted(p for p in input_dir.iterdir() if p.is_file()
                   and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not paths:
        raise DataError(f"no images in {input_dir} (looked for "
                        f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
    by_stem: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        by_stem[path.stem].append(path.name)
    clashes = [" and ".join(names) for names in by_stem.values() if len(names) > 1]
    if clashes:
        raise DataError(f"{input_dir}: {'; '.join(clashes[:5])} would write the same mask "
                        f"(masks/<name>.png); rename or move one of each "
                        f"({len(clashes)} clash(es))")
    return paths


def _prepare_output(output_dir: Path, overwrite: bool) -> None:
    """Create the output folders; refuse (or, with ``overwrite``, delete) the mask and overlay
    PNGs of an earlier run. (``predictions.csv`` and ``README.txt`` are always rewritten.)"""
    earlier = [p for sub in _MANAGED if (output_dir / sub).is_dir()
               for p in (output_dir / sub).iterdir() if p.suffix.lower() == ".png"]
    if earlier and not overwrite:
        raise DataError(f"{output_dir} already holds predictions ({len(earlier)} file(s), e.g. "
                        f"{earlier[0]}); new and old results would mix. Choose another "
                        "--output folder or pass --overwrite to replace them")
    for path in earlier:
        path.unlink()
    for sub in _MANAGED:
        (output_dir / sub).mkdir(parents=True, exist_ok=True)


def _png_info(description: str) -> PngInfo:
    info = PngInfo()
    info.add_text("Software", "kdas-lite")
    info.add_text("Description", description)
    info.add_text("Disclaimer", RESEARCH_ONLY)
    return info


def predict_folder(model: Any, input_dir: str | os.PathLike[str],
                   output_dir: str | os.PathLike[str], size: int = 352,
                   threshold: float = 0.5, device: str = "auto", batch_size: int = 8, *,
                   overwrite: bool = False, label: str | None = None,
                   progress: bool = False) -> PredictionReport:
    """Segment every image of a folder; write masks, overlays, a CSV and a README.

    The map is ``sigmoid(P1 + P2)`` with the logits resized to the image's own size
    (:func:`kdas_lite.evaluate.soft_maps`, without min–max normalisation), thresholded at
    ``threshold``. The model sees each image resized to ``size × size``: use the size it was
    trained at (``kdas-lite predict`` reads it from the checkpoint).

    Args:
        model: returns ``(P1, P2)`` logits ``(B, 1, size, size)`` for ``(B, 3, size, size)``
            images normalised with its ``input_mean`` / ``input_std``.
        input_dir: folder of images (not searched recursively).
        output_dir: where ``masks/``, ``overlays/``, ``predictions.csv``, ``README.txt`` go.
        size: input side in px, a positive multiple of 32.
        threshold: probability threshold in (0, 1).
        batch_size: images per forward pass (≥ 1).
        overwrite: replace the predictions an earlier run left in ``output_dir``.
        label: the model's name in the overlays' banner (default: its encoder).
        progress: show a progress bar.

    Returns:
        A :class:`PredictionReport`; unreadable images are in ``skipped``, not fatal.

    Raises:
        ConfigError: bad ``size`` / ``threshold`` / ``batch_size``.
        DataError: the folder is missing or holds no image, two images share a name stem, or
            ``output_dir`` holds earlier predictions and ``overwrite`` is off.
    """
    import torch
    from tqdm.auto import tqdm

    from kdas_lite.data import build_eval_transform, read_image
    from kdas_lite.evaluate import soft_maps
    from kdas_lite.train import resolve_device

    _check_arguments(size, threshold, batch_size)
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    paths = _list_inputs(input_dir)
    _prepare_output(output_dir, overwrite)
    torch_device = resolve_device(device)
    model = model.to(torch_device).eval()
    transform = build_eval_transform(size, model.input_mean, model.input_std)
    label = label or getattr(model, "encoder_name", type(model).__name__)
    caption = f"kdas-lite prediction | model {label} | input {size} px | threshold {threshold:g}"
    (output_dir / _README).write_text(
        f"{RESEARCH_ONLY.upper()}\n\nPolyp masks predicted by kdas-lite from {input_dir}:\n"
        f"model {label}, input {size} px, threshold {threshold:g}.\nmasks/: 0/255 PNGs at each "
        "image's size; overlays/: for viewing; predictions.csv: every input, written or "
        "skipped.\nThese are the outputs of a research model. They have not been validated "
        "for clinical use and must not be used to diagnose or treat anyone.\n", encoding="utf-8")
    report = PredictionReport(output_dir=output_dir)
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(paths), desc="predict", unit="image", disable=not progress,
               dynamic_ncols=True)
    try:
        for start in range(0, len(paths), batch_size):
            chunk, images = [], []
            for path in paths[start:start + batch_size]:
                try:
                    images.append(read_image(path))
                    chunk.append(path)
                except DataError as exc:
                    report.skipped[path] = " ".join(str(exc).split())
                    rows.append({"image": path.name, "status": "skipped",
                                 "reason": report.skipped[path]})
            if chunk:
                batch = torch.stack([transform(image=im)["image"] for im in images])
                with torch.inference_mode():
                    p1, p2 = model(batch.to(torch_device))[:2]
                    probs = soft_maps(p1 + p2, [im.shape[:2] for im in images], minmax=False)
                for path, image, prob in zip(chunk, images, probs, strict=True):
                    rows.append(_write_one(path, image, prob >= threshold, output_dir, caption))
                    report.written.append(output_dir / "masks" / f"{path.stem}.png")
            bar.update(len(paths[start:start + batch_size]))
    finally:
        bar.close()
        report.manifest = _write_manifest(output_dir / _MANIFEST, rows)
    return report


def _write_one(path: Path, image: np.ndarray, mask: np.ndarray, output_dir: Path,
               caption: str) -> dict[str, Any]:
    """Write one image's mask and overlay; its row of ``predictions.csv``."""
    info = _png_info(f"{caption} | source {path.name}")
    mask_path = output_dir / "masks" / f"{path.stem}.png"
    overlay_path = output_dir / "overlays" / f"{path.stem}.png"
    Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path, pnginfo=info)
    Image.fromarray(overlay_image(image, mask, [caption, f"source {path.name}"])).save(
        overlay_path, pnginfo=info)
    return {"image": path.name, "status": "written", "mask": f"masks/{mask_path.name}",
            "overlay": f"overlays/{overlay_path.name}",
            "polyp_area_pct": f"{100 * float(mask.mean()):.2f}"}


def _write_manifest(path: Path, rows: list[dict[str, Any]]) -> Path:
    fields = ["image", "status", "mask", "overlay", "polyp_area_pct", "reason"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda row: row["image"]))
    return path
