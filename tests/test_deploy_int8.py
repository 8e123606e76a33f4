"""Static INT8 export (kdas_lite.quantize): calibration on training images only, the Dice
check, refusal, and the CLI's --int8."""

from __future__ import annotations

import shutil

import onnx
import pytest
import torch
from inference_helpers import TinySegmenter

from kdas_lite.data import make_synthetic_dataset
from kdas_lite.errors import DataError
from kdas_lite.export import ExportError, export_onnx, is_kdas_export, unfaithful_path
from kdas_lite.quantize import (
    OnnxSegmenter,
    _batches,
    assert_training_only,
    calibration_pairs,
    int8_path,
    quantize_int8,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    data = make_synthetic_dataset(root / "data", n_train=24, n_test=3, size=64)
    model = TinySegmenter().eval()
    fp32 = export_onnx(model, root / "tiny.onnx", image_size=32)
    return model, fp32, data


def test_int8_file_is_qdq_per_channel_marked_and_checked(setup, tmp_path):
    model, fp32, data = setup
    out, fp32_dice, int8_dice = quantize_int8(fp32, tmp_path / "tiny.int8.onnx", data, 32,
                                              model.input_mean, model.input_std,
                                              calibration=6, check=6)
    assert out == tmp_path / "tiny.int8.onnx" and is_kdas_export(out)
    graph = onnx.load(str(out)).graph
    kinds = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds
    inits = {init.name: init for init in graph.initializer}
    # per-channel weights: a weight's DequantizeLinear has one scale per output channel (8)
    scales = [len(inits[n.input[1]].float_data or onnx.numpy_helper.to_array(inits[n.input[1]]))
              for n in graph.node if n.op_type == "DequantizeLinear" and n.input[1] in inits
              and onnx.numpy_helper.to_array(inits[n.input[1]]).size > 1]
    assert 8 in scales
    assert fp32_dice - int8_dice <= 0.005 and 0 < fp32_dice <= 1
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.int8.onnx"]  # no temp files left
    pairs = calibration_pairs(data, 2, skip=12)  # images like the calibration ones
    x = torch.cat([torch.from_numpy(x) for x, _ in _batches(pairs, 32, model.input_mean,
                                                           model.input_std)])
    p1, _ = OnnxSegmenter(out, model.input_mean, model.input_std)(x)
    with torch.no_grad():
        t1, _ = model(x)
    assert p1.shape == (2, 1, 32, 32) and (p1 != t1).any()  # quantised ...
    assert ((p1 > 0) == (t1 > 0)).float().mean() > 0.95  # ... and the masks agree


def test_a_failed_check_is_refused_in_one_line_and_keeps_the_previous_file(setup, tmp_path):
    model, fp32, data = setup
    good = tmp_path / "tiny.int8.onnx"
    shutil.copyfile(fp32, good)  # a file export wrote stands in for an earlier good INT8
    before = good.read_bytes()
    with pytest.raises(ExportError, match=r"points below the fp32 file's .* refused, kept "
                                          r"only as .*unfaithful") as caught:
        quantize_int8(fp32, good, data, 32, model.input_mean, model.input_std,
                      calibration=4, check=4, max_dice_drop=-1.0)
    assert "\n" not in str(caught.value)
    assert good.read_bytes() == before and is_kdas_export(unfaithful_path(good))


def test_calibration_uses_training_images_only(setup, tmp_path):
    _, _, data = setup
    calib = calibration_pairs(data, 6)
    check = calibration_pairs(data, 6, skip=6)
    assert not {i for i, _ in calib} & {i for i, _ in check}
    assert all((data / "TrainDataset") in image.parents for image, _ in calib + check)
    test_sets = {"Kvasir": data / "TestDataset" / "Kvasir"}
    test_pair = next(iter(sorted((test_sets["Kvasir"] / "images").iterdir())))
    with pytest.raises(DataError, match="is a test image"):
        assert_training_only([(test_pair, test_pair)], test_sets)
    with pytest.raises(DataError, match="too few"):
        calibration_pairs(data, 1000)


def test_a_file_export_did_not_write_is_never_quantised_nor_replaced(setup, tmp_path):
    model, fp32, data = setup
    foreign = tmp_path / "mine.onnx"
    foreign.write_bytes(b"not ours")
    with pytest.raises(ExportError, match="was not written by kdas-lite export"):
        quantize_int8(fp32, foreign, data, 32, model.input_mean, model.input_std)
    with pytest.raises(ExportError, match="quantise only files it wrote"):
        quantize_int8(foreign, tmp_path / "x.int8.onnx", data, 32, model.input_mean,
                      model.input_std)
    assert foreign.read_bytes() == b"not ours" and int8_path(foreign).name == "mine.int8.onnx"


def test_cli_export_int8(setup, tmp_path, monkeypatch, capsys):
    from kdas_lite.cli import main

    model, _, data = setup
    monkeypatch.setattr("kdas_lite.train.load_trained", lambda path, *a, **k: model)
    torch.save({"train_config": {"image_size": 32}}, tmp_path / "toy.pth")
    status = main(["export", str(tmp_path / "toy.pth"), str(tmp_path / "s.onnx"), "--int8",
                   "--data", str(data), "--calibration", "4"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert (tmp_path / "s.onnx").is_file() and is_kdas_export(tmp_path / "s.int8.onnx")
    assert "static INT8" in out and "mean Dice" in out
