"""Issue 17, hostile input to predict, export, evaluate and the flags: nothing of the user's
is deleted or replaced, nothing computed is lost, memory stays bounded, and every refusal is
one line that names the file or flag and the fix."""

from __future__ import annotations

import csv
import math
import os
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from inference_helpers import RednessModel, disc_image
from PIL import Image

from kdas_lite.cli import main
from kdas_lite.config import ConfigError, TrainConfig
from kdas_lite.errors import DataError
from kdas_lite.predict import predict_folder


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """main(argv) in-process: status, stdout, stderr."""
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse errors
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(status: int, err: str, *fragments: str) -> None:
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdas-lite") and "error:" in lines[0], err
    assert all(fragment in lines[0] for fragment in fragments), err


def rows(folder) -> list[dict[str, str]]:
    with (folder / "predictions.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def snapshot(folder) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path → bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """Every checkpoint loads as a RednessModel; ``toy.pth`` records 64 px."""
    model = RednessModel()
    monkeypatch.setattr("kdas_lite.train.load_trained", lambda path, *a, **k: model)
    torch.save({"train_config": {"image_size": 64}}, tmp_path / "toy.pth")
    threads = torch.get_num_threads()
    yield model
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# item 2: predict only replaces or deletes files it wrote
# ---------------------------------------------------------------------------------------------
def test_overwrite_into_a_test_set_deletes_none_of_its_ground_truth_masks(tmp_path):
    test_set = tmp_path / "Kvasir"
    for name in ("a.png", "b.png"):
        disc_image(test_set / "images" / name)
        mask = np.zeros((64, 64), np.uint8)
        mask[20:40, 20:40] = 255
        (test_set / "masks").mkdir(exist_ok=True)
        Image.fromarray(mask).save(test_set / "masks" / name)
    before = snapshot(test_set)
    for overwrite in (False, True):
        with pytest.raises(DataError, match=r"holds 2 file\(s\) that kdas-lite predict did not "
                                            r"write \(e\.g\. .*masks/a\.png\).*never replaces or "
                                            r"deletes them") as info:
            predict_folder(RednessModel(), test_set / "images", test_set, size=64,
                           overwrite=overwrite)
        assert "predictions" not in str(info.value).split(";")[0]  # not called predictions
    assert snapshot(test_set) == before  # nothing deleted, nothing added


@pytest.mark.parametrize("name", ["README.txt", "predictions.csv"])
def test_a_users_readme_or_csv_is_never_replaced(tmp_path, name):
    disc_image(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text("image,notes\nmy own notes\n")
    for overwrite in (False, True):
        with pytest.raises(DataError, match=f"did not write .*{name}"):
            predict_folder(RednessModel(), tmp_path / "in", out, size=64, overwrite=overwrite)
    assert snapshot(out) == {name: b"image,notes\nmy own notes\n"}


def test_overwrite_replaces_only_its_own_files_and_leaves_the_rest(tmp_path):
    disc_image(tmp_path / "first" / "old.png")
    disc_image(tmp_path / "second" / "new.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "masks").mkdir()
    (out / "masks" / ".DS_Store").write_bytes(b"finder")
    predict_folder(RednessModel(), tmp_path / "first", out, size=64)
    with pytest.raises(DataError, match="already holds predictions of an earlier run"):
        predict_folder(RednessModel(), tmp_path / "second", out, size=64)
    predict_folder(RednessModel(), tmp_path / "second", out, size=64, overwrite=True)
    assert sorted(snapshot(out)) == ["README.txt", "masks/.DS_Store", "masks/new.png",
                                     "notes.txt", "overlays/new.png", "predictions.csv"]
    assert (out / "notes.txt").read_text() == "mine"
    # a mask of ours edited by someone else (its metadata gone) is no longer ours
    Image.open(out / "masks" / "new.png").save(out / "masks" / "new.png")
    with pytest.raises(DataError, match=r"did not write \(e\.g\. .*masks/new\.png\)"):
        predict_folder(RednessModel(), tmp_path / "second", out, size=64, overwrite=True)


def test_cli_refuses_a_ground_truth_folder_in_one_line(capsys, tmp_path, toy):
    disc_image(tmp_path / "set" / "images" / "a.png")
    disc_image(tmp_path / "set" / "masks" / "a.png")
    before = snapshot(tmp_path / "set")
    status, _, err = run(capsys, "predict", str(tmp_path / "toy.pth"),
                         str(tmp_path / "set" / "images"), "--output", str(tmp_path / "set"),
                         "--overwrite")
    one_line_error(status, err, "did not write", "masks/a.png", "--output")
    assert snapshot(tmp_path / "set") == before


# ---------------------------------------------------------------------------------------------
# item 6: large images are refused from the header; memory is bounded per batch
# ---------------------------------------------------------------------------------------------
def huge_png(path, width: int, height: int) -> None:
    """A tiny file whose header says ``width × height`` (one row of pixel data follows)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b"\x00" * (1 + 3 * width))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", row)
                     + chunk(b"IEND", b""))


def test_a_huge_image_is_skipped_from_its_header_before_decoding(tmp_path):
    disc_image(tmp_path / "in" / "a.png")
    huge_png(tmp_path / "in" / "huge.png", 13000, 13000)
    start = time.perf_counter()
    report = predict_folder(RednessModel(), tmp_path / "in", tmp_path / "out", size=64)
    assert time.perf_counter() - start < 20  # today: 43 s and 8.7 GB
    assert [p.name for p in report.written] == ["a.png"]
    reason = report.skipped[tmp_path / "in" / "huge.png"]
    assert "13000×13000" in reason and "169.0 megapixels" in reason and "--max-pixels" in reason
    assert [(r["image"], r["status"]) for r in rows(tmp_path / "out")] == [
        ("a.png", "written"), ("huge.png", "skipped")]


def test_the_pixel_limit_bounds_every_batch_and_can_be_raised(tmp_path):
    for name in ("a.png", "b.png", "c.png", "d.png"):
        disc_image(tmp_path / "in" / name)  # 64 × 64 = 4096 pixels each
    disc_image(tmp_path / "in" / "e.png", size=100)  # 10000 pixels
    model = RednessModel()
    report = predict_folder(model, tmp_path / "in", tmp_path / "out", size=64, batch_size=8,
                            max_pixels=2 * 4096)
    assert [shape[0] for shape, _ in model.seen] == [2, 2]  # two images per batch, not 8
    assert [p.name for p in report.written] == ["a.png", "b.png", "c.png", "d.png"]
    assert "100×100" in report.skipped[tmp_path / "in" / "e.png"]
    model.seen.clear()
    report = predict_folder(model, tmp_path / "in", tmp_path / "out2", size=64, batch_size=8,
                            max_pixels=10_000)
    assert len(report.written) == 5 and not report.skipped
    assert [shape[0] for shape, _ in model.seen] == [2, 2, 1]  # a+b, c+d, then e alone
    with pytest.raises(ConfigError, match="max_pixels"):
        predict_folder(model, tmp_path / "in", tmp_path / "out3", size=64, max_pixels=0)


def test_cli_max_pixels_flag(capsys, tmp_path, toy):
    disc_image(tmp_path / "in" / "a.png")
    disc_image(tmp_path / "in" / "b.png", size=100)
    status, out, err = run(capsys, "predict", str(tmp_path / "toy.pth"), str(tmp_path / "in"),
                           "--output", str(tmp_path / "out"), "--max-pixels", "5000", "--quiet")
    assert status == 1 and "wrote 1 masks" in out, err
    assert f"skipped {tmp_path / 'in' / 'b.png'}: 100×100 px" in err
    status, _, err = run(capsys, "predict", str(tmp_path / "toy.pth"), str(tmp_path / "in"),
                         "--max-pixels", "0")
    assert status == 2 and "--max-pixels: must be at least 1" in err


# ---------------------------------------------------------------------------------------------
# items 15 and 16: odd names, sub-folders and videos in predict's input
# ---------------------------------------------------------------------------------------------
def test_a_non_utf8_file_name_is_skipped_and_the_rest_predicted(capsys, tmp_path, toy):
    folder = tmp_path / "in"
    disc_image(folder / "a.png")
    disc_image(tmp_path / "ok.png")
    bad = os.path.join(os.fsencode(folder), b"caf\xe9.png")
    try:
        with open(bad, "wb") as handle:
            handle.write((tmp_path / "ok.png").read_bytes())
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 file names")
    status, out, err = run(capsys, "predict", str(tmp_path / "toy.pth"), str(folder),
                           "--output", str(tmp_path / "out"), "--quiet")
    assert status == 1 and "wrote 1 masks" in out, err
    assert "caf\\xe9.png: its file name is not valid UTF-8" in err
    assert [(r["image"], r["status"]) for r in rows(tmp_path / "out")] == [
        ("a.png", "written"), ("caf\\xe9.png", "skipped")]


def test_sub_folders_videos_and_other_files_are_listed_not_silently_dropped(capsys, tmp_path,
                                                                             toy):
    folder = tmp_path / "in"
    disc_image(folder / "a.png")
    disc_image(folder / "more" / "b.png")
    (folder / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (folder / "notes.txt").write_text("x")
    status, _, err = run(capsys, "predict", str(tmp_path / "toy.pth"), str(folder),
                         "--output", str(tmp_path / "out"), "--quiet")
    assert status == 0, err
    listed = {r["image"]: (r["status"], r["reason"]) for r in rows(tmp_path / "out")}
    assert listed["a.png"][0] == "written"
    assert listed["more/"][0] == "ignored" and "does not search sub-folders" in listed["more/"][1]
    assert listed["clip.mp4"][0] == "ignored" and "video file itself" in listed["clip.mp4"][1]
    assert listed["notes.txt"][0] == "ignored"
    assert "kdas-lite: warning: ignored " in err and "more: a sub-folder" in err
    # predicting a folder into itself: its own outputs are not listed as ignored inputs
    report = predict_folder(RednessModel(), folder, folder, size=64)
    report = predict_folder(RednessModel(), folder, folder, size=64, overwrite=True)
    assert sorted(p.name for p in report.ignored) == ["clip.mp4", "more", "notes.txt"]
    # a folder of sub-folders only: the refusal says where the images are
    disc_image(tmp_path / "only" / "more" / "b.png")
    with pytest.raises(DataError, match=r"no images in .*holds 1 sub-folder\(s\), e\.g\. more"):
        predict_folder(RednessModel(), tmp_path / "only", tmp_path / "out2", size=64)


def test_an_undecodable_video_given_to_predict_says_how_to_convert_it(capsys, tmp_path, toy):
    video = tmp_path / "exam.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    status, _, err = run(capsys, "predict", str(tmp_path / "toy.pth"), str(video), "--output",
                         str(tmp_path / "out"))
    one_line_error(status, err, "cannot open the video", "exam.mp4", "ffmpeg -i IN out.mp4")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# item 3: export never destroys a good file; options are checked up front
# ---------------------------------------------------------------------------------------------
class TwoHeads(torch.nn.Module):
    """A tiny stand-in segmentation model: ``(P1, P2)``."""

    input_mean = input_std = (0.5, 0.5, 0.5)

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)

    def forward(self, x):
        return self.conv(x), 2 * self.conv(x)


@pytest.mark.parametrize(("flags", "fragment"), [
    (["--atol", "-1"], "--atol: must be a finite number > 0, got -1"),
    (["--atol", "nan"], "--atol: must be a finite number, got 'nan'"),
    (["--opset", "99"], "--opset 99: the installed exporter writes ONNX opsets 7 to"),
    (["--opset", "0"], "--opset 0: the installed exporter writes ONNX opsets 7 to"),
])
def test_bad_export_options_are_refused_before_anything(capsys, tmp_path, monkeypatch, flags,
                                                        fragment):
    loaded = []
    monkeypatch.setattr("kdas_lite.train.load_trained",
                        lambda path, *a, **k: loaded.append(path) or TwoHeads())
    torch.save({"train_config": {"image_size": 32}}, tmp_path / "m.pth")
    good = tmp_path / "y.onnx"
    good.write_bytes(b"a good earlier export")
    before = snapshot(tmp_path)
    status, _, err = run(capsys, "export", str(tmp_path / "m.pth"), str(good), *flags)
    one_line_error(status, err, fragment)
    assert not loaded  # refused before the checkpoint is loaded
    assert snapshot(tmp_path) == before  # today --atol -1 leaves only y.unfaithful.onnx


def test_export_never_replaces_a_file_it_did_not_write(capsys, tmp_path, toy):
    from kdas_lite.export import ExportError, export_onnx

    checkpoint = tmp_path / "toy.pth"
    before = checkpoint.read_bytes()
    for target in (checkpoint, tmp_path / "toy.onnx"):
        if target.suffix == ".onnx":
            target.write_bytes(b"someone else's model")
        status, _, err = run(capsys, "export", str(checkpoint), str(target))
        one_line_error(status, err, f"{target} exists and was not written by kdas-lite export")
    assert checkpoint.read_bytes() == before
    assert (tmp_path / "toy.onnx").read_bytes() == b"someone else's model"
    with pytest.raises(ExportError, match="opsets 7 to"):
        export_onnx(torch.nn.Conv2d(3, 1, 1), tmp_path / "new.onnx", 32, opset=99)
    with pytest.raises(ExportError, match="--atol nan"):
        export_onnx(torch.nn.Conv2d(3, 1, 1), tmp_path / "new.onnx", 32, atol=math.nan)
    assert not (tmp_path / "new.onnx").exists()


@pytest.mark.slow
def test_a_failed_cli_export_leaves_the_previous_export_byte_identical(capsys, tmp_path,
                                                                      monkeypatch):
    from kdas_lite.export import export_onnx, is_kdas_export

    good = export_onnx(TwoHeads(), tmp_path / "y.onnx", image_size=32)
    assert is_kdas_export(good)
    before = good.read_bytes()
    other = TwoHeads()  # different weights: its export is checked against itself, fine...
    shift = {"value": 1.0}
    original = TwoHeads.forward

    def unfaithful(self, x):  # ...unless the traced graph differs from eager PyTorch
        p1, p2 = original(self, x)
        return (p1 + shift["value"] if torch.compiler.is_exporting() else p1), p2

    monkeypatch.setattr(TwoHeads, "forward", unfaithful)
    monkeypatch.setattr("kdas_lite.train.load_trained", lambda path, *a, **k: other)
    torch.save({"train_config": {"image_size": 32}}, tmp_path / "m.pth")
    status, out, err = run(capsys, "export", str(tmp_path / "m.pth"), str(good))
    one_line_error(status, err, "differ from PyTorch by 1.00e+00", "y.unfaithful.onnx")
    assert good.read_bytes() == before and "wrote" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pth", "y.onnx",
                                                          "y.unfaithful.onnx"]
    shift["value"] = 0.0  # a faithful export replaces the earlier one of ours
    status, out, err = run(capsys, "export", str(tmp_path / "m.pth"), str(good), "--opset",
                           "17")
    assert status == 0 and "within --atol 0.001 (OK)" in out, err
    assert good.read_bytes() != before and is_kdas_export(good)


# ---------------------------------------------------------------------------------------------
# item 9: evaluate keeps the finished test sets when a later one has a corrupt image
# ---------------------------------------------------------------------------------------------
def test_a_corrupt_image_in_the_last_set_keeps_the_finished_table(capsys, tmp_path, toy):
    from kdas_lite.data import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", n_train=2, n_test=1, size=64)
    broken = next((data / "TestDataset" / "CVC-300" / "images").iterdir())
    broken.write_bytes(b"not a jpeg")
    table = tmp_path / "eval.csv"
    status, out, err = run(capsys, "evaluate", str(tmp_path / "toy.pth"), "--data", str(data),
                           "--sets", "Kvasir", "CVC-300", "--csv", str(table), "--quiet")
    one_line_error(status, err, f"cannot decode {broken}")
    assert "the test sets that finished" in out and "| Kvasir | 1 |" in out
    assert "CVC-300" not in out.split("finished")[1].split("wrote")[0]
    assert table.is_file() and "Kvasir" in table.read_text()


# ---------------------------------------------------------------------------------------------
# items 14 and 16: float and integer flags, the NaN message, make-synthetic's size
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("flags", "fragment"), [
    (["--temperature", "nan"], "argument --temperature: must be a finite number, got 'nan'"),
    (["--temperature", "inf"], "argument --temperature: must be a finite number, got 'inf'"),
    (["--alpha", "nan"], "argument --alpha: must be a finite number"),
    (["--lr=-inf"], "argument --lr: must be a finite number"),
    (["--seed", "-1"], "argument --seed: must be an integer from 0 to 2**63 - 1, got -1"),
])
def test_non_finite_and_negative_flags_name_the_flag(capsys, tmp_path, flags, fragment):
    status, _, err = run(capsys, "distill", "--output", str(tmp_path), *flags)
    one_line_error(status, err, fragment)


@pytest.mark.parametrize("field", ["temperature", "alpha", "lr", "clip", "seg_weight",
                                   "val_fraction", "warmup_epochs"])
def test_the_config_refuses_nan_and_inf(field):
    for value in (math.nan, math.inf):
        with pytest.raises(ConfigError, match=f"config field {field}=.*must be a finite number"):
            TrainConfig(**{field: value})
    with pytest.raises(ConfigError, match="config field seed=-1"):
        TrainConfig(seed=-1)


def test_a_nan_loss_in_the_first_epoch_claims_no_checkpoint(tmp_path, monkeypatch):
    from training_helpers import tiny_config, tiny_dataset

    from kdas_lite.errors import TrainingError
    from kdas_lite.train import SupervisedObjective, train_teacher

    config = tiny_config(tiny_dataset(tmp_path), tmp_path / "run", max_train_images=2)
    original = SupervisedObjective.forward

    def nan_at_once(self, model, images, masks):
        out = original(self, model, images, masks)
        out.total = out.total * float("nan")
        return out

    monkeypatch.setattr(SupervisedObjective, "forward", nan_at_once)
    with pytest.raises(TrainingError, match="epoch 1, batch 1") as info:
        train_teacher(config, progress=False)
    assert "No epoch had completed, so no checkpoint was written" in str(info.value)
    assert "intact" not in str(info.value)
    assert not list((tmp_path / "run" / "teacher").glob("*.pth"))


def test_make_synthetic_refuses_a_huge_size_in_one_line(capsys, tmp_path):
    status, _, err = run(capsys, "make-synthetic", str(tmp_path / "s"), "--size", "40000")
    one_line_error(status, err, "size 40000 px (--size) is above the limit of 2048 px")
    assert not (tmp_path / "s").exists()
    status, _, err = run(capsys, "make-synthetic", str(tmp_path / "s"), "--seed", "-1")
    one_line_error(status, err, "argument --seed: must be an integer from 0")
