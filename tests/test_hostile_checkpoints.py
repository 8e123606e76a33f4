"""Hostile architecture records: a tiny ``.pth`` that asks for a huge model is refused before
anything is built (no call to timm), by the library and by every inference command."""

from __future__ import annotations

import math
import re
import time

import pytest
import timm
import torch

from kdas_lite.cli import main
from kdas_lite.errors import CheckpointError
from kdas_lite.runs import trained_image_size
from kdas_lite.train import load_trained

B0 = {"name": "PolypPVT", "encoder": "pvt_v2_b0", "channel": 32, "drop_path_rate": 0.1}

HOSTILE = {  # name → (checkpoint, what the one-line error must say)
    # today: a 3.46 G-parameter model (5.3 GB, 20 s) before the weights were checked
    "channel-4000": ({"arch": {**B0, "channel": 4000}, "model": {}},
                     r"asks for the decoder width channel=4000; it must be an integer from 1 "
                     r"to 256"),
    # today: timm built the encoder (3.2 GB for this one) before the stride check refused it
    "unknown-encoder": ({"arch": {**B0, "encoder": "vit_huge_patch14_224"}, "model": {}},
                        r"asks for the encoder 'vit_huge_patch14_224', which kdas_lite does "
                        r"not rebuild from a file"),
    # today: the model was built, then inference ran at 8192 px until memory ran out
    "image-size-8192": ({"arch": B0, "model": {}, "train_config": {"image_size": 8192}},
                        r"records the training size image_size=8192; kdas_lite trains and runs "
                        r"at multiples of 32 from 32 to 1024 px"),
}


@pytest.fixture
def builds(monkeypatch):
    """Every call to ``timm.create_model`` (none may happen), which is refused."""
    calls = []

    def refuse(name, *args, **kwargs):
        calls.append(name)
        raise RuntimeError(f"the test forbids building {name}")

    monkeypatch.setattr(timm, "create_model", refuse)
    return calls


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    for name, (content, _) in HOSTILE.items():
        torch.save(content, folder / f"{name}.pth")
        assert (folder / f"{name}.pth").stat().st_size < 2000  # a tiny file ...
    return folder


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_record_is_refused_before_any_model_is_built(hostile_files, builds, name):
    path = hostile_files / f"{name}.pth"
    start = time.monotonic()
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}.*{HOSTILE[name][1]}"):
        load_trained(path)
    assert builds == []  # ... asks for a huge model: nothing was built
    assert time.monotonic() - start < 5


def test_a_hostile_training_size_is_refused_by_trained_image_size(hostile_files):
    with pytest.raises(CheckpointError, match=HOSTILE["image-size-8192"][1]):
        trained_image_size(hostile_files / "image-size-8192.pth")


@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
def test_the_cli_refuses_hostile_records_in_one_line(hostile_files, builds, tmp_path, capsys,
                                                     command):
    for name, (_, message) in HOSTILE.items():
        path = str(hostile_files / f"{name}.pth")
        argv = {"evaluate": ["evaluate", path, "--data", str(tmp_path), "--quiet"],
                "predict": ["predict", path, str(tmp_path), "--output", str(tmp_path / "out")],
                "export": ["export", path, str(tmp_path / "m.onnx")]}[command]
        assert main(argv) == 2, name
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1 and captured.err.startswith("kdas-lite: error: ")
        assert re.search(message, captured.err) and path in captured.err
    assert builds == []
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("field, value", [
    ("channel", 0), ("channel", 257), ("channel", 32.0), ("channel", True), ("channel", "32"),
    ("encoder", ["pvt_v2_b0"]), ("encoder", "resnet18"),
    ("drop_path_rate", math.nan), ("drop_path_rate", 1.0), ("drop_path_rate", -0.1),
])
def test_validate_config_accepts_only_what_a_file_may_ask_for(field, value):
    from kdas_lite.models.polyp_pvt import validate_config

    with pytest.raises(CheckpointError, match=rf"x\.pth asks for .*{field}|x\.pth asks for "
                       r"the encoder"):
        validate_config({**B0, field: value}, source="x.pth")


def test_validate_config_passes_the_known_architectures():
    from kdas_lite.models.polyp_pvt import MAX_CHANNEL, validate_config

    for encoder in ("pvt_v2_b0", "pvt_v2_b2", "tf_efficientnet_lite0", "tf_efficientnet_lite2"):
        assert validate_config({"encoder": encoder}) == {"encoder": encoder, "channel": 32,
                                                         "drop_path_rate": 0.1}
    assert validate_config({**B0, "channel": MAX_CHANNEL})["channel"] == MAX_CHANNEL
