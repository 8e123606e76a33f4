"""Masks and overlays for a folder of images (``kdas-lite predict``).

For every image ``<stem>.<ext>`` of a folder, :func:`predict_folder` writes, under the output
folder:

- ``masks/<stem>.png``: the predicted mask, 0/255, at the image's own size (the same names as
  the PraNet ground-truth masks, so the folder can be scored like a test set);
- ``overlays/<stem>.png``: for a person to look at: the image with the prediction outlined
  and lightly filled in yellow (the notebooks' prediction colour: it stands out on red/pink
  mucosa and for red-green colour-blind readers), under a banner naming the model, the input
  size and the threshold, with a legend and the mark "research use only";
- ``predictions.csv``: one row per entry of the input folder: written, skipped (and why) or
  ignored (a sub-folder, a video, a file that is not an image), the mask and overlay files, the
  predicted polyp area;
- ``README.txt``: what produced the folder, and that it is not a diagnosis.

What happens on bad input (the rules of the command line):

- an unreadable image, one larger than ``max_pixels`` (read from its header, before decoding)
  and one whose file name is not valid UTF-8 are **skipped and reported**
  (``PredictionReport.skipped``, the CSV); the other images are still predicted, since one
  corrupt frame of a video must not cost the rest. Sub-folders (not searched), videos and other
  files are listed as ignored (``PredictionReport.ignored``, the CSV);
- memory is bounded by ``max_pixels``, not by the batch size: a batch holds at most
  ``batch_size`` images *and* ``max_pixels`` pixels in all;
- predict only ever replaces or deletes files it wrote itself (its PNGs carry its metadata,
  its CSV and README their first line): an output folder holding anything else in
  ``masks/``, ``overlays/``, ``predictions.csv`` or ``README.txt`` (e.g. a test set's
  ground-truth masks) is refused, ``overwrite=True`` included, and nothing else in the folder
  is touched;
- two inputs that would write the same mask (``a.jpg`` and ``a.png``) are refused before any
  work, as is an output folder that already holds predictions (``overwrite=True`` replaces
  them), and a threshold outside (0, 1), a batch size or pixel limit below 1 or a size that is
  not a positive multiple of 32: nothing is written then.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from kdas_lite.config import ConfigError
from kdas_lite.errors import DataError

__all__ = ["DEFAULT_MAX_PIXELS", "RESEARCH_ONLY", "VIDEO_EXTENSIONS", "PredictionReport",
           "overlay_image", "predict_folder"]

RESEARCH_ONLY = "RESEARCH USE ONLY - not a medical device, not a diagnosis"
"""The mark on every overlay, in every PNG's metadata and in the output folder's README."""

PRED_RGB = (255, 214, 0)
"""Prediction colour (``#ffd600``, :data:`kdas_lite.viz.PRED_COLOR`)."""

DEFAULT_MAX_PIXELS = 25_000_000
"""Largest image :func:`predict_folder` decodes by default (25 megapixels, three 4K frames;
endoscopy frames have about 2): a bound on its memory, raised with ``max_pixels``."""

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".wmv", ".mpg", ".mpeg",
                              ".m4v", ".flv", ".3gp", ".ts", ".mts"})
"""File suffixes (lower case) recognised as videos: :func:`predict_folder` lists them as
ignored; :func:`kdas_lite.video.predict_video` (``kdas-lite predict CKPT VIDEO``) reads one."""

FRAMES_HINT = "run kdas-lite predict on the video file itself (kdas_lite.video.predict_video)"

_MANAGED = ("masks", "overlays")  # sub-folders predict_folder writes and, on overwrite, empties
_MANIFEST, _README = "predictions.csv", "README.txt"
_FIELDS = ["image", "status", "mask", "overlay", "polyp_area_pct", "reason"]
_CAPTION = "kdas-lite prediction"  # first words of the Description of every PNG it writes


@dataclass
class PredictionReport:
    """What :func:`predict_folder` did.

    Attributes:
        output_dir: the output folder.
        written: the mask files written, one per readable input image.
        skipped: input image → why it was skipped (unreadable, too large, a file name that is
            not UTF-8).
        ignored: other entry of the input folder → why it was not read (a sub-folder, a
            video, not an image).
        manifest: the ``predictions.csv`` listing every input image.
    """

    output_dir: Path
    written: list[Path] = field(default_factory=list)
    skipped: dict[Path, str] = field(default_factory=dict)
    ignored: dict[Path, str] = field(default_factory=dict)
    manifest: Path | None = None


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` as text that can be printed and written as UTF-8: bytes of a file name that
    are not UTF-8 appear as ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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
    tinted = image.copy()  # tinted in place where predicted: no float copy of the whole image
    tinted[mask] = (0.8 * image[mask].astype(np.float32)
                    + 0.2 * np.array(PRED_RGB, np.float32)).round().astype(np.uint8)
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


def _check_arguments(size: int, threshold: float, batch_size: int, max_pixels: int) -> None:
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold must lie strictly between 0 and 1 (it applies to the "
                          f"polyp probability sigmoid(P1 + P2)), got {threshold}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    if size < 32 or size % 32:
        raise ConfigError(f"image size must be a positive multiple of 32, got {size} "
                          "(the encoders downsample by 32)")
    if max_pixels < 1:
        raise ConfigError(f"max_pixels (--max-pixels) must be at least 1, got {max_pixels}")


def _why_not_read(path: Path) -> str | None:
    """Why the folder entry ``path`` is not an image to predict (None: it is one)."""
    from kdas_lite.data import IMAGE_EXTENSIONS

    suffix = path.suffix.lower()
    if path.is_dir():
        return ("a sub-folder: predict does not search sub-folders; run it on that folder "
                "separately")
    if not path.is_file():
        return "not a regular file (a pipe, socket or device)"
    if suffix in VIDEO_EXTENSIONS:
        return f"a video: a folder's videos are not read; {FRAMES_HINT}"
    if suffix not in IMAGE_EXTENSIONS:
        return f"not an image (predict reads {', '.join(sorted(IMAGE_EXTENSIONS))})"
    return None


def _list_inputs(input_dir: Path) -> tuple[list[Path], dict[Path, str], dict[Path, str]]:
    """The images of ``input_dir`` (sorted), the images skipped because their names are not
    UTF-8, and the other entries (sub-folders, videos, other files) with the reason; hidden
    entries are left out. Refuses stems that would share an output file."""
    from kdas_lite.data import IMAGE_EXTENSIONS

    if not input_dir.is_dir():
        if input_dir.suffix.lower() in VIDEO_EXTENSIONS and input_dir.exists():
            raise DataError(f"{shown(input_dir)} is a video: predict_folder reads a folder of "
                            "images; use kdas_lite.video.predict_video (kdas-lite predict CKPT "
                            "VIDEO does)")
        if input_dir.exists():
            raise DataError(f"{shown(input_dir)} is a file, not a folder: predict reads a folder "
                            "of images; pass the folder that holds it")
        raise DataError(f"image folder not found: {shown(input_dir)}")
    paths, skipped, ignored = [], {}, {}
    for path in sorted(input_dir.iterdir()):
        if path.name.startswith("."):
            continue
        why = _why_not_read(path)
        if why is not None:
            ignored[path] = why
        elif shown(path.name) != path.name:
            skipped[path] = ("its file name is not valid UTF-8 (rename it, e.g. with "
                             "convmv, to predict it)")
        else:
            paths.append(path)
    if not paths and not skipped:
        folders = [p.name for p in ignored if p.is_dir()]
        raise DataError(f"no images in {shown(input_dir)} (looked for "
                        f"{', '.join(sorted(IMAGE_EXTENSIONS))})" + (
                            f"; it holds {len(folders)} sub-folder(s), e.g. {shown(folders[0])}: "
                            "predict does not search sub-folders, point it at one of them"
                            if folders else ""))
    by_stem: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        by_stem[path.stem].append(path.name)
    clashes = [" and ".join(names) for names in by_stem.values() if len(names) > 1]
    if clashes:
        raise DataError(f"{input_dir}: {'; '.join(clashes[:5])} would write the same mask "
                        f"(masks/<name>.png); rename or move one of each "
                        f"({len(clashes)} clash(es))")
    return paths, skipped, ignored


def _is_own_png(path: Path) -> bool:
    """True when ``path`` is a PNG that predict wrote (its metadata says so; read from the
    header, nothing is decoded)."""
    if path.is_symlink() or not path.is_file() or path.suffix.lower() != ".png":
        return False
    try:
        with _pil_pixel_limit(None), Image.open(path) as image:
            return (image.format == "PNG" and image.info.get("Software") == "kdas-lite"
                    and str(image.info.get("Description", "")).startswith(_CAPTION))
    except (OSError, SyntaxError, ValueError):
        return False


def _is_own_text(path: Path) -> bool:
    """True when ``path`` is the ``predictions.csv`` or ``README.txt`` predict writes (its
    first line says so)."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with path.open("rb") as handle:
            head = handle.read(4096).decode("utf-8", "replace")
    except OSError:
        return False
    lines = head.splitlines() or [""]
    if path.name == _MANIFEST:
        return lines[0] == ",".join(_FIELDS)
    return lines[0] == RESEARCH_ONLY.upper() and "predicted by kdas-lite" in head


def _prepare_output(output_dir: Path, overwrite: bool) -> None:
    """Create the output folders. Refuses a folder where ``masks/``, ``overlays/``,
    ``predictions.csv`` or ``README.txt`` hold anything predict did not write (never replaced
    nor deleted, ``overwrite`` or not); refuses (or, with ``overwrite``, deletes) the files of
    an earlier run of predict. Nothing else in ``output_dir`` is looked at."""
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"--output {shown(output_dir)} is a file, not a folder; choose a folder")
    own: list[Path] = []
    foreign: list[Path] = []
    for name in (_README, _MANIFEST):
        path = output_dir / name
        if path.exists() or path.is_symlink():
            (own if _is_own_text(path) else foreign).append(path)
    for sub in _MANAGED:
        folder = output_dir / sub
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            foreign.append(folder)
        elif folder.is_dir():
            for path in sorted(folder.iterdir()):
                if not path.name.startswith("."):
                    (own if _is_own_png(path) else foreign).append(path)
    if foreign:
        raise DataError(f"{shown(output_dir)} holds {len(foreign)} file(s) that kdas-lite "
                        f"predict did not write (e.g. {shown(foreign[0])}); predict never "
                        "replaces or deletes them, --overwrite included. Choose another "
                        "--output folder (a new or empty one)")
    if own and not overwrite:
        raise DataError(f"{shown(output_dir)} already holds predictions of an earlier run "
                        f"({len(own)} file(s), e.g. {shown(own[0])}); new and old results would "
                        "mix. Choose another --output folder or pass --overwrite to replace "
                        "them")
    for path in own:
        path.unlink()
    for sub in _MANAGED:
        (output_dir / sub).mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def _pil_pixel_limit(limit: int | None) -> Iterator[None]:
    """PIL's decompression-bomb limit set to ``limit`` (None: off) for the ``with`` block."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _pixels(path: Path, max_pixels: int) -> int:
    """The pixel count of ``path`` from its header (nothing is decoded); 0 when PIL cannot
    open it (reading it then names the problem).

    Raises:
        DataError: the image has more than ``max_pixels`` pixels.
    """
    try:
        with _pil_pixel_limit(None), Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError):
        return 0
    if width * height > max_pixels:
        raise DataError(f"{width}×{height} px = {width * height / 1e6:.1f} megapixels, more "
                        f"than the limit of {max_pixels / 1e6:g} (--max-pixels {max_pixels}); "
                        "raise --max-pixels to predict it (about 30 bytes of memory per pixel)")
    return width * height


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
                   progress: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
                   ) -> PredictionReport:
    """Segment every image of a folder; write masks, overlays, a CSV and a README.

    The map is ``sigmoid(P1 + P2)`` with the logits resized to the image's own size
    (:func:`kdas_lite.evaluate.soft_maps`, without min–max normalisation), thresholded at
    ``threshold``. The model sees each image resized to ``size × size``: use the size it was
    trained at (``kdas-lite predict`` reads it from the checkpoint).

    Args:
        model: returns ``(P1, P2)`` logits ``(B, 1, size, size)`` for ``(B, 3, size, size)``
            images normalised with its ``input_mean`` / ``input_std``.
        input_dir: folder of images (not searched recursively; sub-folders are listed as
            ignored).
        output_dir: where ``masks/``, ``overlays/``, ``predictions.csv``, ``README.txt`` go.
        size: input side in px, a positive multiple of 32.
        threshold: probability threshold in (0, 1).
        batch_size: images per forward pass (≥ 1).
        overwrite: replace the predictions an earlier run left in ``output_dir`` (only files
            predict wrote: anything else there is refused, never replaced).
        label: the model's name in the overlays' banner (default: its encoder).
        progress: show a progress bar.
        max_pixels: a larger image is skipped (checked from its header, before decoding); a
            batch holds at most this many pixels in all, so memory stays bounded.

    Returns:
        A :class:`PredictionReport`; unreadable or too large images are in ``skipped``, not
        fatal.

    Raises:
        ConfigError: bad ``size`` / ``threshold`` / ``batch_size`` / ``max_pixels``.
        DataError: the folder is missing or holds no image, two images share a name stem,
            ``output_dir`` holds files predict did not write, or it holds earlier predictions
            and ``overwrite`` is off.
    """
    import torch
    from tqdm.auto import tqdm

    from kdas_lite.data import build_eval_transform, read_image
    from kdas_lite.evaluate import soft_maps
    from kdas_lite.train import resolve_device

    _check_arguments(size, threshold, batch_size, max_pixels)
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    paths, unnamed, ignored = _list_inputs(input_dir)
    out = output_dir.resolve()  # the output folder and its files may sit among the inputs
    ignored = {path: why for path, why in ignored.items() if path.resolve() not in
               {out, *(out / name for name in (*_MANAGED, _README, _MANIFEST))}}
    _prepare_output(output_dir, overwrite)
    torch_device = resolve_device(device)
    model = model.to(torch_device).eval()
    transform = build_eval_transform(size, model.input_mean, model.input_std)
    label = shown(label or getattr(model, "encoder_name", type(model).__name__))
    caption = f"{_CAPTION} | model {label} | input {size} px | threshold {threshold:g}"
    (output_dir / _README).write_text(
        f"{RESEARCH_ONLY.upper()}\n\nPolyp masks predicted by kdas-lite from "
        f"{shown(input_dir)}:\nmodel {label}, input {size} px, threshold {threshold:g}.\n"
        "masks/: 0/255 PNGs at each image's size; overlays/: for viewing; predictions.csv: "
        "every input, written, skipped or ignored.\nThese are the outputs of a research model. "
        "They have not been validated for clinical use and must not be used to diagnose or "
        "treat anyone.\n", encoding="utf-8")
    report = PredictionReport(output_dir=output_dir, skipped=dict(unnamed), ignored=ignored)
    rows: list[dict[str, Any]] = (
        [{"image": shown(p.name), "status": "skipped", "reason": why}
         for p, why in unnamed.items()]
        + [{"image": shown(p.name) + ("/" if p.is_dir() else ""), "status": "ignored",
            "reason": why} for p, why in ignored.items()])

    def run(batch: list[tuple[Path, np.ndarray]]) -> None:
        images = [image for _, image in batch]
        inputs = torch.stack([transform(image=im)["image"] for im in images])
        with torch.inference_mode():
            p1, p2 = model(inputs.to(torch_device))[:2]
            probs = soft_maps(p1 + p2, [im.shape[:2] for im in images], minmax=False)
        for (path, image), prob in zip(batch, probs, strict=True):
            rows.append(_write_one(path, image, prob >= threshold, output_dir, caption))
            report.written.append(output_dir / "masks" / f"{path.stem}.png")
        batch.clear()

    bar = tqdm(total=len(paths), desc="predict", unit="image", disable=not progress,
               dynamic_ncols=True)
    batch: list[tuple[Path, np.ndarray]] = []
    pixels = 0  # in the batch: at most max_pixels, whatever the batch size
    try:
        for path in paths:
            try:
                n = _pixels(path, max_pixels)
                if batch and (len(batch) == batch_size or pixels + n > max_pixels):
                    run(batch)
                    pixels = 0
                with _pil_pixel_limit(max(max_pixels, Image.MAX_IMAGE_PIXELS or 0)):
                    batch.append((path, read_image(path)))
                pixels += n
            except DataError as exc:
                report.skipped[path] = " ".join(str(exc).split())
                rows.append({"image": path.name, "status": "skipped",
                             "reason": report.skipped[path]})
            bar.update(1)
        if batch:
            run(batch)
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
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=_FIELDS)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda row: row["image"]))
    return path
