"""Polyp masks for a colonoscopy video (``kdas-lite predict VIDEO``).

:func:`predict_video` reads a video file with OpenCV (``.mp4``, ``.avi``, ``.mov`` and what
else its FFmpeg build decodes), one frame at a time, and writes under the output folder:

- ``<stem>.overlay.mp4`` (``.avi`` with Motion-JPEG where no MPEG-4 encoder is available): every
  predicted frame as :func:`kdas_lite.predict.overlay_image` draws it (the prediction outlined
  and tinted in yellow under a banner marked "research use only"), at ``fps / every``;
- ``frames.csv``: one row per frame read (every ``every``-th): its index and time, written or
  skipped (and why), the predicted polyp area (% of the frame) and the highest probability;
- with ``save_masks``, ``masks/<stem>_<frame>.png`` (0/255);
- ``README.txt``: what produced the folder, and that it is not a diagnosis.

Streaming: at most ``batch_size`` frames are held at once, whatever the video's length, so
the memory does not grow with it. A frame the decoder cannot read is **skipped and reported**
(``VideoReport.skipped``, the CSV), not fatal; after ``max_bad_frames`` unreadable frames in a
row the video is taken to be truncated and reading stops there (reported too).

Temporal smoothing (``smooth``, off by default): an exponential moving average of the
probability maps, ``S_t = α·P_t + (1 − α)·S_{t−1}`` with ``α = smooth`` in (0, 1] (1: off),
taken over the predicted frames before thresholding. docs/bench/deploy.md measures whether it
changes Dice on consecutive frames of CVC-ColonDB.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kdas_lite.config import ConfigError
from kdas_lite.errors import DataError
from kdas_lite.predict import (
    _CAPTION,
    RESEARCH_ONLY,
    VIDEO_EXTENSIONS,
    _check_arguments,
    _is_own_png,
    _png_info,
    overlay_image,
    shown,
)

__all__ = ["EmaSmoother", "VideoReport", "frames_to_video", "is_video", "predict_video",
           "read_frames"]

_CSV = "frames.csv"
_FIELDS = ["frame", "time_s", "status", "polyp_area_pct", "max_prob", "mask", "reason"]
_README = "README.txt"
_WRITER = "kdas_lite.video.frames_to_video"
_CANNOT_OPEN = ("cannot open the video {}: not a video OpenCV can decode (mp4, avi, mov with "
                "common codecs); convert it, e.g. ffmpeg -i IN out.mp4, or extract its frames "
                "and predict the folder")


def is_video(path: str | os.PathLike[str]) -> bool:
    """True for an existing file whose suffix is a video's (:data:`VIDEO_EXTENSIONS`)."""
    path = Path(path)
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


@dataclass
class VideoReport:
    """What :func:`predict_video` did.

    Attributes:
        video: the overlaid video written.
        frames: frames read and predicted.
        skipped: frame index → why it was not predicted (undecodable, truncated video).
        manifest: ``frames.csv``.
        fps: the input's frames per second (0 when the file does not say).
        masks: the mask PNGs written (with ``save_masks``).
    """

    video: Path
    frames: int = 0
    skipped: dict[int, str] = field(default_factory=dict)
    manifest: Path | None = None
    fps: float = 0.0
    masks: list[Path] = field(default_factory=list)


class EmaSmoother:
    """Exponential moving average of probability maps: ``S_t = α·P_t + (1 − α)·S_{t−1}``.

    ``alpha = 1`` returns every map unchanged (smoothing off). A map of another shape than
    the previous one (a new video, a resized stream) starts the average again.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ConfigError(f"smoothing factor must lie in (0, 1] (1: no smoothing), got "
                              f"{alpha}")
        self.alpha = alpha
        self.state: np.ndarray | None = None

    def __call__(self, prob: np.ndarray) -> np.ndarray:
        """The smoothed map for the next frame's map ``prob`` ``(H, W)`` in [0, 1]."""
        if self.state is None or self.state.shape != prob.shape or self.alpha == 1.0:
            self.state = prob.astype(np.float32, copy=True)
        else:
            self.state = self.alpha * prob + (1.0 - self.alpha) * self.state
        return self.state


def read_frames(path: str | os.PathLike[str], every: int = 1, max_bad_frames: int = 25
                ) -> Iterator[tuple[int, np.ndarray | None, str]]:
    """Stream ``(index, RGB frame uint8 (H, W, 3) or None, why None)`` for every
    ``every``-th frame of a video, one at a time.

    A frame the decoder cannot read gives ``None`` and the reason; after ``max_bad_frames``
    such frames in a row (or past the frame count the file declares), reading stops with one
    last ``None`` entry saying so when frames were declared but not read.

    Raises:
        DataError: OpenCV cannot open the file (not a video, or no decoder for it).
    """
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(_CANNOT_OPEN.format(shown(path)))
    declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    index, bad = 0, 0
    try:
        while True:
            wanted = index % every == 0
            grabbed = capture.grab()
            frame = capture.retrieve()[1] if grabbed and wanted else None
            if grabbed and (frame is not None or not wanted):
                bad = 0
                if wanted:
                    yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), ""
            else:
                if declared and index >= declared:
                    return
                bad += 1
                if bad > max_bad_frames:
                    yield index, None, (f"{max_bad_frames} frames in a row could not be "
                                        "decoded: the video looks truncated; reading stopped "
                                        f"here ({declared - index} declared frames not read)"
                                        if declared else "reading stopped")
                    return
                if wanted:
                    yield index, None, "the decoder could not read this frame (corrupt)"
            index += 1
    finally:
        capture.release()


def _writer(path: Path, fps: float, size: tuple[int, int]) -> tuple[Any, Path]:
    """An OpenCV video writer: MPEG-4 in ``.mp4``, else Motion-JPEG in ``.avi``."""
    import cv2

    for suffix, fourcc in ((".mp4", "mp4v"), (".avi", "MJPG")):
        target = path.with_suffix(suffix)
        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if writer.isOpened():
            return writer, target
        writer.release()
        target.unlink(missing_ok=True)
    raise DataError(f"OpenCV cannot write a video to {path.parent} (no MPEG-4 or Motion-JPEG "
                    "encoder); install opencv-python-headless from PyPI")


def frames_to_video(images: Sequence[str | os.PathLike[str]], path: str | os.PathLike[str],
                    fps: float = 25.0, *, overwrite: bool = False) -> Path:
    """Write still frames (image files, in the given order) as a video, e.g. consecutive
    CVC-ColonDB frames as the colonoscopy clip they were cut from. Every frame is resized to
    the first one's size. MPEG-4 in ``.mp4`` (Motion-JPEG ``.avi`` where OpenCV has no MPEG-4
    encoder); returns the file written. Beside it, ``<video>.json`` records the frames, the
    frame rate and the video's SHA-256: the mark by which ``overwrite`` knows its own file.

    Raises:
        DataError: no images, an image that cannot be read, or ``path`` exists (replaced only
            with ``overwrite``, and only when this function wrote it and it is unchanged since).
    """
    import cv2

    from kdas_lite.data.io import file_sha256, read_image, write_text_atomic

    path = Path(path)
    if not images:
        raise DataError(f"no frames to write to {shown(path)}")
    earlier = _own_videos(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer, tmp = None, path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        for image in images:
            frame = read_image(image)
            if writer is None:
                size = (frame.shape[1], frame.shape[0])
                writer, tmp = _writer(tmp, fps, size)
            if (frame.shape[1], frame.shape[0]) != size:
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        written = path.with_suffix(tmp.suffix)
        for old in earlier:
            old.unlink()
            _sidecar(old).unlink(missing_ok=True)
        os.replace(tmp, written)
    finally:
        if writer is not None:
            writer.release()
        tmp.unlink(missing_ok=True)
    write_text_atomic(_sidecar(written), json.dumps(
        {"written_by": _WRITER, "sha256": file_sha256(written), "fps": fps,
         "frames": [str(image) for image in images]}, indent=1) + "\n")
    return written


def _sidecar(video: Path) -> Path:
    return video.with_name(video.name + ".json")


def _mark(mark: Path) -> dict[str, Any] | None:
    """frames_to_video's record beside a video (None when there is none); DataError when the
    file there is someone else's."""
    if not (mark.exists() or mark.is_symlink()):
        return None
    try:
        record = None if mark.is_symlink() else json.loads(mark.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict) or record.get("written_by") != _WRITER:
        raise DataError(f"{shown(mark)} was not written by frames_to_video: it is never "
                        "replaced. Choose another file")
    return record


def _own_videos(path: Path, overwrite: bool) -> list[Path]:
    """The videos at ``path`` (.mp4 or .avi) that ``overwrite`` may replace. Refuse any video
    without ``overwrite``, and any video or ``<video>.json`` that frames_to_video did not
    write (or that changed since): they are never replaced."""
    from kdas_lite.data.io import file_sha256

    own = []
    for target in (path.with_suffix(".mp4"), path.with_suffix(".avi")):
        mark = _sidecar(target)
        record = _mark(mark)
        if not (target.exists() or target.is_symlink()):
            continue
        if not overwrite:
            raise DataError(f"{shown(target)} exists; choose another file or pass "
                            "overwrite=True to replace it")
        if (record is None or not target.is_file() or target.is_symlink()
                or record.get("sha256") != file_sha256(target)):
            raise DataError(f"{shown(target)} was not written by frames_to_video (or has "
                            f"changed since; no matching {mark.name}): it is never replaced. "
                            "Choose another file")
        own.append(target)
    return own


def _prepare(output_dir: Path, stem: str, overwrite: bool) -> None:
    """Refuse an output folder holding files predict did not write (never replaced); refuse
    (or, with ``overwrite``, delete) an earlier run's files."""
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"--output {shown(output_dir)} is a file, not a folder; choose a folder")
    own, foreign = [], []
    readme_own = False
    for path in (output_dir / _CSV, output_dir / _README):
        if path.exists() or path.is_symlink():
            text = "" if path.is_symlink() or not path.is_file() else path.read_text(
                encoding="utf-8", errors="replace")
            ours = (text.splitlines()[:1] == [",".join(_FIELDS)] if path.name == _CSV else
                    text.startswith(RESEARCH_ONLY.upper()) and "kdas-lite" in text)
            readme_own = readme_own or (ours and path.name == _README
                                        and f"{stem}.overlay" in text)
            (own if ours else foreign).append(path)
    for suffix in (".mp4", ".avi"):
        video = output_dir / f"{stem}.overlay{suffix}"
        if video.exists() or video.is_symlink():
            (own if readme_own else foreign).append(video)
    masks = output_dir / "masks"
    if masks.is_dir():
        for path in sorted(masks.iterdir()):
            if not path.name.startswith("."):
                (own if _is_own_png(path) else foreign).append(path)
    if foreign:
        raise DataError(f"{shown(output_dir)} holds {len(foreign)} file(s) that kdas-lite "
                        f"predict did not write (e.g. {shown(foreign[0])}); predict never "
                        "replaces or deletes them. Choose another --output folder")
    if own and not overwrite:
        raise DataError(f"{shown(output_dir)} already holds predictions of an earlier run "
                        f"(e.g. {shown(own[0])}); choose another --output folder or pass "
                        "--overwrite to replace them")
    for path in own:
        path.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)


def predict_video(model: Any, video: str | os.PathLike[str], output_dir: str | os.PathLike[str],
                  size: int = 352, threshold: float = 0.5, device: str = "auto",
                  batch_size: int = 4, *, every: int = 1, smooth: float = 1.0,
                  save_masks: bool = False, overwrite: bool = False, label: str | None = None,
                  progress: bool = False, max_bad_frames: int = 25) -> VideoReport:
    """Segment every ``every``-th frame of a video; write the overlaid video and a CSV.

    The map is ``sigmoid(P1 + P2)`` resized to the frame (as :func:`kdas_lite.predict.
    predict_folder`), smoothed over time with :class:`EmaSmoother` (``smooth``; 1 = off),
    thresholded at ``threshold``.

    Args:
        model: returns the logits ``(P1, P2)`` for ``(B, 3, size, size)`` images normalised
            with its ``input_mean`` / ``input_std`` (a PolypPVT or an
            :class:`~kdas_lite.quantize.OnnxSegmenter`).
        video: the video file.
        output_dir: where the video, ``frames.csv``, ``README.txt`` (and ``masks/``) go.
        size: input side in px, a positive multiple of 32 (the size the model was trained at).
        batch_size: frames per forward pass: also the most frames held in memory.
        every: predict every N-th frame (1: all); the output video runs at ``fps / every``.
        smooth: α of the moving average in (0, 1]; 1 (default) switches it off.
        save_masks: also write each frame's mask as a PNG.
        progress: a progress bar counting frames, with frames/s.
        max_bad_frames: stop after this many undecodable frames in a row.

    Returns:
        A :class:`VideoReport` (skipped frames are listed, not fatal).

    Raises:
        ConfigError: bad ``size`` / ``threshold`` / ``batch_size`` / ``every`` / ``smooth``.
        DataError: the video cannot be opened or holds no readable frame, or the output
            folder holds files predict did not write (or earlier predictions, without
            ``overwrite``).
    """
    import cv2
    import torch
    from tqdm.auto import tqdm

    from kdas_lite.data import build_eval_transform
    from kdas_lite.evaluate import soft_maps
    from kdas_lite.train import resolve_device

    _check_arguments(size, threshold, batch_size, 1)
    if every < 1:
        raise ConfigError(f"--every must be at least 1 (every N-th frame), got {every}")
    smoother = EmaSmoother(smooth)
    video, output_dir = Path(video), Path(output_dir)
    if not video.is_file():
        raise DataError(f"video not found: {shown(video)}")
    capture = cv2.VideoCapture(str(video))
    opened = capture.isOpened()
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    capture.release()
    if not opened:  # before anything is written
        raise DataError(_CANNOT_OPEN.format(shown(video)))
    _prepare(output_dir, video.stem, overwrite)
    if save_masks:
        (output_dir / "masks").mkdir(exist_ok=True)
    torch_device = resolve_device(device)
    model = model.to(torch_device).eval()
    transform = build_eval_transform(size, model.input_mean, model.input_std)
    label = shown(label or getattr(model, "encoder_name", type(model).__name__))
    caption = (f"{_CAPTION} | model {label} | input {size} px | threshold {threshold:g}"
               + (f" | EMA {smooth:g}" if smooth < 1 else ""))
    (output_dir / _README).write_text(
        f"{RESEARCH_ONLY.upper()}\n\nPolyp masks predicted by kdas-lite from the video "
        f"{shown(video)}:\nmodel {label}, input {size} px, threshold {threshold:g}, every "
        f"{every} frame(s), smoothing {'off' if smooth == 1 else f'EMA {smooth:g}'}.\n"
        f"{video.stem}.overlay.mp4 (or .avi): the overlaid video; frames.csv: every frame "
        "read, written or skipped.\n"
        "These are the outputs of a research model. They have not been validated for clinical "
        "use and must not be used to diagnose or treat anyone.\n", encoding="utf-8")
    report = VideoReport(video=output_dir / f"{video.stem}.overlay.mp4", fps=fps)
    state: dict[str, Any] = {"writer": None, "shape": None}
    handle = (output_dir / _CSV).open("w", newline="", encoding="utf-8")
    rows = csv.DictWriter(handle, fieldnames=_FIELDS)
    rows.writeheader()

    def write_frame(index: int, frame: np.ndarray, prob: np.ndarray) -> None:
        prob = smoother(prob)
        mask = prob >= threshold
        time_s = f"{index / fps:.3f}" if fps else ""
        lines = [caption, f"source {shown(video.name)} | frame {index}"]
        overlay = overlay_image(frame, mask, lines)
        if state["writer"] is None:  # the frame size of the first frame, widest legend
            h = overlay.shape[0]
            w = max(overlay_image(frame, np.full(mask.shape, flag), lines).shape[1]
                    for flag in (False, True))
            state["shape"] = (h, w)
            state["writer"], report.video = _writer(report.video, max(fps / every, 1.0),
                                                    (w, h))
        h, w = state["shape"]
        canvas = np.zeros((h, w, 3), np.uint8)  # a frame of another size is cropped / padded
        part = overlay[:h, :w]
        canvas[:part.shape[0], :part.shape[1]] = part
        state["writer"].write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        mask_name = ""
        if save_masks:
            mask_path = output_dir / "masks" / f"{video.stem}_{index:06d}.png"
            Image.fromarray(mask.astype(np.uint8) * 255).save(
                mask_path, pnginfo=_png_info(f"{caption} | source {video.name} frame {index}"))
            report.masks.append(mask_path)
            mask_name = f"masks/{mask_path.name}"
        rows.writerow({"frame": index, "time_s": time_s, "status": "written",
                       "polyp_area_pct": f"{100 * float(mask.mean()):.2f}",
                       "max_prob": f"{float(prob.max()):.3f}", "mask": mask_name})
        report.frames += 1

    def run(batch: list[tuple[int, np.ndarray]]) -> None:
        inputs = torch.stack([transform(image=frame)["image"] for _, frame in batch])
        with torch.inference_mode():
            p1, p2 = model(inputs.to(torch_device))[:2]
            probs = soft_maps(p1 + p2, [frame.shape[:2] for _, frame in batch], minmax=False)
        for (index, frame), prob in zip(batch, probs, strict=True):
            write_frame(index, frame, prob)
        batch.clear()

    total = -(-declared // every) if declared else None
    bar = tqdm(total=total, desc=f"predict {video.name}", unit="frame", disable=not progress,
               dynamic_ncols=True)
    batch: list[tuple[int, np.ndarray]] = []
    try:
        for index, frame, why in read_frames(video, every, max_bad_frames):
            if frame is None:
                if batch:  # keep the CSV and the video in frame order
                    run(batch)
                report.skipped[index] = why
                rows.writerow({"frame": index, "status": "skipped", "reason": why})
            else:
                batch.append((index, frame))
                if len(batch) == batch_size:
                    run(batch)
            bar.update(1)
        if batch:
            run(batch)
    finally:
        bar.close()
        handle.close()
        if state["writer"] is not None:
            state["writer"].release()
        report.manifest = output_dir / _CSV
    if report.frames == 0:
        raise DataError(f"no frame of {shown(video)} could be decoded ({len(report.skipped)} "
                        "tried); the file is corrupt or its codec is not supported by OpenCV: "
                        "convert it, e.g. ffmpeg -i IN out.mp4")
    return report
