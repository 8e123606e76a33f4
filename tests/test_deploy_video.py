"""kdas-lite predict VIDEO (kdas_lite.video): frames streamed, a corrupt frame skipped and
reported, --every, the moving average, bounded memory."""

from __future__ import annotations

import csv
import tracemalloc

import cv2
import numpy as np
import pytest
import torch

from kdas_lite.config import ConfigError
from kdas_lite.errors import DataError
from kdas_lite.video import EmaSmoother, predict_video, read_frames
from tests.inference_helpers import RednessModel


def make_video(path, frames: int, corrupt: int | None = None, size=(96, 64)):
    """A Motion-JPEG AVI of a red disc moving over grey; frame ``corrupt`` gets its JPEG
    header overwritten so that the decoder cannot read it."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), 60, np.uint8)
        cv2.circle(frame, (20 + 3 * i % (size[0] - 40), size[1] // 2), 12, (40, 40, 250), -1)
        writer.write(frame)
    writer.release()
    if corrupt is not None:
        data = bytearray(path.read_bytes())
        starts = [i for i in range(len(data) - 3) if data[i:i + 3] == b"\xff\xd8\xff"]
        start = starts[corrupt]
        data[start + 2:start + 400] = b"\x11" * 398
        path.write_bytes(bytes(data))
    return path


def read_csv(path):
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_video_frames_written_and_a_corrupt_frame_skipped(tmp_path):
    video = make_video(tmp_path / "exam.avi", 12, corrupt=5)
    report = predict_video(RednessModel(), video, tmp_path / "out", size=64, save_masks=True)
    assert report.frames == 11 and list(report.skipped) == [5]
    assert "corrupt" in report.skipped[5]
    rows = read_csv(report.manifest)
    assert [int(r["frame"]) for r in rows] == list(range(12))
    assert rows[5]["status"] == "skipped" and rows[4]["status"] == "written"
    assert all(0 < float(r["polyp_area_pct"]) < 30 for r in rows if r["status"] == "written")
    assert len(report.masks) == 11 and (tmp_path / "out" / "README.txt").is_file()
    capture = cv2.VideoCapture(str(report.video))
    assert report.video.suffix in (".mp4", ".avi")
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 11
    ok, frame = capture.read()
    assert ok and frame.shape[1] >= 96 and frame.shape[0] > 64  # the banner on top
    capture.release()
    # an earlier run's files: refused without --overwrite, replaced with it
    with pytest.raises(DataError, match="already holds predictions"):
        predict_video(RednessModel(), video, tmp_path / "out", size=64)
    again = predict_video(RednessModel(), video, tmp_path / "out", size=64, overwrite=True)
    assert again.frames == 11 and not list((tmp_path / "out" / "masks").glob("*.png"))


def test_every_nth_frame_and_foreign_files_are_never_replaced(tmp_path):
    video = make_video(tmp_path / "exam.avi", 10)
    report = predict_video(RednessModel(), video, tmp_path / "out", size=64, every=3)
    assert [int(r["frame"]) for r in read_csv(report.manifest)] == [0, 3, 6, 9]
    assert report.frames == 4
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "frames.csv").write_text("my,own,notes\n")
    with pytest.raises(DataError, match="did not write"):
        predict_video(RednessModel(), video, tmp_path / "mine", size=64, overwrite=True)
    assert (tmp_path / "mine" / "frames.csv").read_text() == "my,own,notes\n"
    with pytest.raises(ConfigError, match="--every"):
        predict_video(RednessModel(), video, tmp_path / "x", size=64, every=0)


def test_memory_does_not_grow_with_the_video(tmp_path):
    """Frames are streamed: the peak traced memory of a 60-frame video is that of a 15-frame
    one (the whole video would be 60 × 480×640×3 bytes = 55 MB)."""
    peaks = []
    for frames in (15, 60):
        video = make_video(tmp_path / f"v{frames}.avi", frames, size=(640, 480))
        tracemalloc.start()
        predict_video(RednessModel(), video, tmp_path / f"out{frames}", size=64, batch_size=2)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.3 * peaks[0] + 2e6, peaks
    assert peaks[1] < 30e6  # far below the 55 MB of the decoded video


def test_moving_average_of_probability_maps():
    smoother = EmaSmoother(0.5)
    a, b = np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32)
    assert np.array_equal(smoother(a), a)
    np.testing.assert_allclose(smoother(b), 0.5)
    np.testing.assert_allclose(smoother(b), 0.75)
    np.testing.assert_allclose(smoother(np.ones((3, 3))), 1.0)  # another size starts again
    off = EmaSmoother(1.0)
    off(a)
    assert np.array_equal(off(b), b)
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        EmaSmoother(0.0)


def test_read_frames_streams_rgb(tmp_path):
    video = make_video(tmp_path / "v.avi", 4)
    frames = list(read_frames(video))
    assert [i for i, _, _ in frames] == [0, 1, 2, 3]
    first = frames[0][1]
    assert first.shape == (64, 96, 3) and first[32, 20, 0] > 200  # red stays in channel 0


def test_cli_predict_video(tmp_path, monkeypatch, capsys):
    from kdas_lite.cli import main

    model = RednessModel()
    monkeypatch.setattr("kdas_lite.train.load_trained", lambda path, *a, **k: model)
    torch.save({"train_config": {"image_size": 64}}, tmp_path / "toy.pth")
    video = make_video(tmp_path / "exam.avi", 6, corrupt=2)
    status = main(["predict", str(tmp_path / "toy.pth"), str(video), "--output",
                   str(tmp_path / "out"), "--quiet", "--smooth", "0.6", "--masks"])
    captured = capsys.readouterr()
    assert status == 1, captured.err  # a frame was skipped
    assert "skipped frame 2" in captured.err and "5 frames" in captured.out
    assert len(list((tmp_path / "out" / "masks").glob("exam_*.png"))) == 5
