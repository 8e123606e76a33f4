"""predict_folder: what is written, what is skipped, what is refused, and the overlays."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from inference_helpers import RednessModel, disc_image
from PIL import Image

from kdas_lite.config import ConfigError
from kdas_lite.errors import DataError
from kdas_lite.predict import PRED_RGB, RESEARCH_ONLY, overlay_image, predict_folder


def rows(folder) -> list[dict[str, str]]:
    with (folder / "predictions.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_masks_overlays_manifest_and_readme(tmp_path):
    disc_image(tmp_path / "in" / "a.png")
    disc_image(tmp_path / "in" / "b.jpg", size=96)
    model = RednessModel()
    report = predict_folder(model, tmp_path / "in", tmp_path / "out", size=64, label="toy")
    assert [p.name for p in report.written] == ["a.png", "b.png"] and not report.skipped
    assert {shape for shape, _ in model.seen} == {(2, 3, 64, 64)}
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / "b.png"))
    assert mask.shape == (96, 96) and set(np.unique(mask)) == {0, 255}
    assert mask[48, 48] == 255 and mask[2, 2] == 0
    assert [(r["image"], r["status"], r["mask"]) for r in rows(tmp_path / "out")] == [
        ("a.png", "written", "masks/a.png"), ("b.jpg", "written", "masks/b.png")]
    assert "RESEARCH USE ONLY" in (tmp_path / "out" / "README.txt").read_text()
    overlay = Image.open(tmp_path / "out" / "overlays" / "a.png")
    assert "model toy" in overlay.text["Description"] and "input 64 px" in overlay.text[
        "Description"]
    assert overlay.text["Disclaimer"] == RESEARCH_ONLY


def test_overlay_has_an_outline_and_a_banner_above_the_untouched_image():
    image = np.full((120, 160, 3), 200, np.uint8)
    mask = np.zeros((120, 160), bool)
    mask[40:80, 50:110] = True
    out = overlay_image(image, mask, ["model toy | input 64 px"])
    banner = out.shape[0] - 120
    assert banner > 0 and out.shape[1] >= 160
    below = out[banner:, :160]
    assert (below[40, 50:110] == PRED_RGB).all()  # the outline on the region's edge
    assert (below[60, 80] != PRED_RGB).any() and (below[60, 80] != 200).any()  # light tint
    assert (below[5, 5] == 200).all()  # outside: the image as it was
    assert len(np.unique(out[:banner].reshape(-1, 3), axis=0)) > 2  # text was drawn


def test_an_unreadable_frame_is_skipped_and_reported_the_rest_is_written(tmp_path):
    for name in ("a.png", "c.png", "d.png"):
        disc_image(tmp_path / "in" / name)
    (tmp_path / "in" / "b.png").write_bytes(b"\x89PNG truncated")
    report = predict_folder(RednessModel(), tmp_path / "in", tmp_path / "out", size=64,
                            batch_size=2)
    assert [p.name for p in report.written] == ["a.png", "c.png", "d.png"]
    assert list(report.skipped) == [tmp_path / "in" / "b.png"]
    assert "cannot decode" in report.skipped[tmp_path / "in" / "b.png"]
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == [
        "a.png", "c.png", "d.png"]
    assert [(r["image"], r["status"]) for r in rows(tmp_path / "out")] == [
        ("a.png", "written"), ("b.png", "skipped"), ("c.png", "written"), ("d.png", "written")]


def test_refusals_write_nothing(tmp_path):
    disc_image(tmp_path / "in" / "a.png")
    disc_image(tmp_path / "in" / "a.jpg")
    with pytest.raises(DataError, match=r"a\.jpg and a\.png would write the same mask"):
        predict_folder(RednessModel(), tmp_path / "in", tmp_path / "out", size=64)
    assert not (tmp_path / "out").exists()
    for kwargs, message in (({"threshold": 7.0}, "between 0 and 1"),
                            ({"threshold": 0.0}, "between 0 and 1"),
                            ({"batch_size": 0}, "at least 1"),
                            ({"size": 100}, "multiple of 32")):
        with pytest.raises(ConfigError, match=message):
            predict_folder(RednessModel(), tmp_path / "in", tmp_path / "out",
                           **{"size": 64, **kwargs})
    assert not (tmp_path / "out").exists()


def test_a_reused_output_folder_is_refused_unless_overwrite(tmp_path):
    disc_image(tmp_path / "first" / "old.png")
    disc_image(tmp_path / "second" / "new.png")
    predict_folder(RednessModel(), tmp_path / "first", tmp_path / "out", size=64)
    with pytest.raises(DataError, match=r"already holds predictions.*--overwrite"):
        predict_folder(RednessModel(), tmp_path / "second", tmp_path / "out", size=64)
    assert [p.name for p in (tmp_path / "out" / "masks").iterdir()] == ["old.png"]
    predict_folder(RednessModel(), tmp_path / "second", tmp_path / "out", size=64,
                   overwrite=True)
    for sub in ("masks", "overlays"):
        assert [p.name for p in (tmp_path / "out" / sub).iterdir()] == ["new.png"]
    assert [r["image"] for r in rows(tmp_path / "out")] == ["new.png"]
