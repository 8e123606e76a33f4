"""kdas_lite.deploy: the student's three forms side by side (notebook 06, bench_deploy), the
no-polyp crops, temporal smoothing, and a clip written from still frames (kdas_lite.video)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from inference_helpers import TinySegmenter
from PIL import Image
from torch import nn

from kdas_lite import facts
from kdas_lite.course_text import (
    calibration_reading,
    deploy_reading,
    no_polyp_reading,
    smoothing_reading,
    threshold_reading,
)
from kdas_lite.data import make_synthetic_dataset
from kdas_lite.data.io import file_sha256
from kdas_lite.deploy import (
    FORMS,
    clip_pairs,
    export_forms,
    false_positives,
    latency_ms,
    no_polyp_crops,
    numeric_order,
    smoothing_dice,
    three_forms,
)
from kdas_lite.errors import DataError
from kdas_lite.export import ExportError
from kdas_lite.video import frames_to_video, read_frames


class Constant(nn.Module):
    """Logits ``value`` everywhere: a model sure of polyp (> 0) or of background (< 0)."""

    input_mean = (0.5, 0.5, 0.5)
    input_std = (0.5, 0.5, 0.5)

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = torch.full((x.shape[0], 1, *x.shape[2:]), self.value)
        return p, p


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("deploy") / "data", n_train=24,
                                  n_test=6, size=64, test_sets=("CVC-ColonDB",))


def test_three_forms_agree_and_each_onnx_file_has_its_own_facts_key(data, tmp_path):
    model = TinySegmenter().eval()
    files = export_forms(model, tmp_path / "tiny.onnx", data, 32, calibration=6, check=6)
    assert files.accepted and files.int8.name == "tiny.int8.onnx" and "accepted" in files.message
    forms = three_forms(model, files, threads=1)
    assert list(forms) == list(FORMS)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = {name: form(x)[0] for name, form in forms.items()}
    assert all(o.shape == (2, 1, 32, 32) for o in out.values())
    assert torch.allclose(out["ONNX fp32"], out["PyTorch fp32"], atol=1e-3)
    assert not torch.equal(out["ONNX INT8"], out["ONNX fp32"])  # quantised
    # an ONNX file holds no PyTorch weights: it is named by its bytes, so the fp32 and the INT8
    # scores of a course run are stated about two checkpoints, not one (the old key was the
    # hash of an empty state dict, the same for both)
    keys = [facts.weights_sha256(forms[name]) for name in ("ONNX fp32", "ONNX INT8")]
    assert keys == [file_sha256(files.fp32), file_sha256(files.int8)] and keys[0] != keys[1]
    assert facts.weights_sha256(model) not in keys


def test_a_refused_int8_file_is_returned_for_measurement_not_as_accepted(data, tmp_path):
    files = export_forms(TinySegmenter().eval(), tmp_path / "tiny.onnx", data, 32,
                         calibration=4, check=4, max_dice_drop=-1.0)
    assert not files.accepted and files.int8.name == "tiny.int8.unfaithful.onnx"
    assert files.int8.is_file() and "refused" in files.message and "\n" not in files.message
    assert not (tmp_path / "tiny.int8.onnx").exists()  # export --int8 would not keep it


def test_latency_is_a_positive_median_of_one_frame():
    calls = []

    class Counting(Constant):
        def forward(self, x):
            calls.append(tuple(x.shape))
            return super().forward(x)

    ms = latency_ms(Counting(-1.0), 32, warmup=2, repeats=3)
    assert math.isfinite(ms) and ms > 0
    assert calls == [(1, 3, 32, 32)] * 5  # batch 1, warm-up calls untimed but made


def test_false_positives_on_empty_frames_count_crops_and_area():
    crops = [np.full((40, 40, 3), 120, np.uint8)] * 3
    assert false_positives(Constant(-8.0), crops, 32) == (0.0, 0.0)
    assert false_positives(Constant(8.0), crops, 32) == (1.0, 100.0)
    with pytest.raises(ValueError, match="no crops"):
        false_positives(Constant(8.0), [], 32)


def test_no_polyp_crops_stay_clear_of_every_mask_pixel(tmp_path):
    root = tmp_path / "data"
    for sub in ("images", "masks"):
        (root / "TrainDataset" / sub).mkdir(parents=True)
    yy, xx = np.mgrid[0:90, 0:90]
    for i in range(3):  # pixel values encode the position: a crop says where it was cut
        image = np.stack([xx, yy, np.full_like(xx, i)], -1).astype(np.uint8)
        mask = np.zeros((90, 90), np.uint8)
        mask[: 20 + 10 * i, : 20 + 10 * i] = 255  # a polyp in the top-left corner
        Image.fromarray(image).save(root / "TrainDataset" / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "TrainDataset" / "masks" / f"{i}.png")
    crops = no_polyp_crops(root, 5, margin=8)
    assert len(crops) == 3 and all(c.shape == (30, 30, 3) for c in crops)
    for crop in crops:
        i = int(crop[0, 0, 2])
        x0, y0 = int(crop[0, 0, 0]), int(crop[0, 0, 1])
        edge = 20 + 10 * i  # the mask covers [0, edge) on both axes
        assert x0 >= edge + 8 or y0 >= edge + 8  # the window grown by 8 px misses the mask


def test_numeric_order_puts_frame_2_before_10_and_names_last():
    stems = ["10", "2", "b", "1", "a"]
    assert [stems[i] for i in numeric_order(stems)] == ["1", "2", "10", "a", "b"]


def test_smoothing_leaves_a_steady_prediction_unchanged(data):
    folder = data / "TestDataset" / "CVC-ColonDB"
    sure = smoothing_dice(Constant(8.0), folder, 32, (1.0, 0.5))
    assert sure[1.0] == pytest.approx(sure[0.5]) and 0 < sure[1.0] < 1  # Dice of "all polyp"
    assert smoothing_dice(Constant(-8.0), folder, 32, (1.0,), limit=2) == {1.0: 0.0}


def test_frames_to_video_writes_every_frame_and_never_replaces_unasked(data, tmp_path):
    images = sorted((data / "TestDataset" / "CVC-ColonDB" / "images").iterdir())
    video = frames_to_video(images, tmp_path / "clip.mp4", fps=10)
    frames = [f for _, f, _ in read_frames(video)]
    assert len(frames) == len(images) and all(f.shape == (64, 64, 3) for f in frames)
    before = video.read_bytes()
    with pytest.raises(DataError, match="exists; choose another file or pass overwrite"):
        frames_to_video(images[:2], tmp_path / "clip.mp4")
    assert video.read_bytes() == before
    assert len(list(read_frames(frames_to_video(images[:2], video, overwrite=True)))) == 2
    with pytest.raises(DataError, match="no frames"):
        frames_to_video([], tmp_path / "empty.mp4")


def test_overwrite_replaces_only_a_video_frames_to_video_wrote(data, tmp_path):
    images = sorted((data / "TestDataset" / "CVC-ColonDB" / "images").iterdir())
    foreign = tmp_path / "holiday.mp4"
    foreign.write_bytes(b"someone's own video")
    with pytest.raises(DataError, match=r"holiday\.mp4 was not written by frames_to_video"):
        frames_to_video(images, foreign, overwrite=True)
    assert foreign.read_bytes() == b"someone's own video"
    video = frames_to_video(images, tmp_path / "clip.mp4")
    record = json.loads(video.with_name("clip.mp4.json").read_text(encoding="utf-8"))
    assert record["frames"] == [str(image) for image in images]
    video.write_bytes(b"edited since")  # no longer the file frames_to_video wrote
    with pytest.raises(DataError, match=r"clip\.mp4 was not written by frames_to_video"):
        frames_to_video(images[:2], video, overwrite=True)
    assert video.read_bytes() == b"edited since"
    notes = tmp_path / "notes.mp4.json"
    notes.write_text('{"mine": true}', encoding="utf-8")  # someone's file where the mark goes
    with pytest.raises(DataError, match=r"notes\.mp4\.json was not written by frames_to"):
        frames_to_video(images, tmp_path / "notes.mp4")
    assert notes.read_text(encoding="utf-8") == '{"mine": true}'
    assert not (tmp_path / "notes.mp4").exists()


def test_a_foreign_file_where_the_refused_one_would_go_is_never_measured(data, tmp_path):
    foreign = tmp_path / "tiny.int8.unfaithful.onnx"
    foreign.write_bytes(b"someone else's file")
    with pytest.raises(ExportError, match="refused"):
        export_forms(TinySegmenter().eval(), tmp_path / "tiny.onnx", data, 32, calibration=4,
                     check=4, max_dice_drop=-1.0)
    assert foreign.read_bytes() == b"someone else's file"


def test_the_refusal_carries_both_dice_values_and_the_message_no_path(data, tmp_path):
    files = export_forms(TinySegmenter().eval(), tmp_path / "tiny.onnx", data, 32,
                         calibration=4, check=4, max_dice_drop=-1.0)
    assert 0 <= files.int8_dice <= 1 and 0 < files.fp32_dice <= 1 and files.check == 4
    better = dataclasses.replace(files, int8_dice=files.fp32_dice + 0.01)
    assert "1.00 points gained" in better.message and "points lost;" not in better.message
    assert files.message.startswith("INT8 refused: mean Dice ") and str(tmp_path) not in \
        files.message


def test_clip_pairs_start_at_a_frame_number_and_keep_numeric_order(tmp_path):
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
        for stem in ("1", "2", "10", "11", "3"):
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / sub / f"{stem}.png")
    assert [i.stem for i, _ in clip_pairs(tmp_path)] == ["1", "2", "3", "10", "11"]
    assert [i.stem for i, _ in clip_pairs(tmp_path, first=3, count=2)] == ["3", "10"]
    assert all(i.stem == m.stem for i, m in clip_pairs(tmp_path))


class _Table:
    def __init__(self, scores: dict[str, float]) -> None:
        self.rows = {name: {"meanDic": value} for name, value in scores.items()}

    def label(self, name: str) -> str:
        return f"{name} (label)"


def test_deploy_reading_states_the_ratio_the_loss_and_both_targets():
    latency = {"PyTorch fp32": 30.0, "ONNX fp32": 10.0, "ONNX INT8": 4.0}
    ref = _Table({"Kvasir": 0.80, "ETIS": 0.50})
    text = deploy_reading(latency, {"PyTorch fp32": ref, "ONNX fp32": ref,
                                    "ONNX INT8": _Table({"Kvasir": 0.79, "ETIS": 0.50})},
                          True, "INT8 accepted: …", 1)
    assert "**2.50×**" in text and "it meets the 2× target" in text and "7.50× PyTorch" in text
    assert "**1.00 Dice points**" in text and "(on Kvasir (label)), beyond" in text
    slow = {**latency, "ONNX INT8": 8.0}
    text = deploy_reading(slow, {"PyTorch fp32": ref, "ONNX fp32": ref, "ONNX INT8": ref},
                          False, "INT8 refused: …", 2)
    assert "it misses the 2× target" in text and "loses no Dice" in text
    assert "**refused**" in text and "2 CPU thread(s)" in text


def test_the_exercise_readings_follow_their_numbers():
    assert "Smoothing helps" in smoothing_reading({1.0: 0.50, 0.7: 0.55}, 10)
    assert "does not help" in smoothing_reading({1.0: 0.50, 0.7: 0.45}, 10)
    assert "(+0.0100 from 2 to 32)" in calibration_reading({2: (0.70, ""), 32: (0.71, "")},
                                                          "Kvasir")
    assert "A higher threshold flags fewer" in threshold_reading(
        {0.3: (0.9, 0.6), 0.5: (0.5, 0.6), 0.7: (0.1, 0.5)}, "clip")
    assert "not monotone" in threshold_reading({0.3: (0.1, 0.6), 0.5: (0.5, 0.6)}, "clip")
    assert "Dice falls as it rises" in threshold_reading({0.3: (0.9, 0.6), 0.7: (0.1, 0.5)}, "c")
    assert "costs nothing" in threshold_reading({0.3: (0.9, 0.5), 0.7: (0.1, 0.6)}, "c")
    assert "by chance of the draw" in calibration_reading({2: (0.72, ""), 32: (0.71, "")}, "K")
    assert "nothing to measure" in no_polyp_reading({}, 0, 0.5)
    assert "PyTorch fp32: 25 % of the crops" in no_polyp_reading(
        {"PyTorch fp32": (0.25, 1.5)}, 4, 0.5)
