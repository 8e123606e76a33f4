"""ONNX export of the student, checked against PyTorch with onnxruntime."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
import torch

from kdas_lite.export import (
    MARK,
    ExportError,
    export_onnx,
    is_kdas_export,
    unfaithful_path,
    verify_onnx,
)
from kdas_lite.models import build_student


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build_student().train()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "student.onnx", image_size=64)
    return model, path


@pytest.mark.slow
def test_export_matches_pytorch_for_any_batch_size(exported):
    import onnxruntime as ort

    model, path = exported
    assert model.training  # the caller's model is left as it was
    assert [p.name for p in path.parent.iterdir()] == ["student.onnx"]  # weights inside
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["p1", "p2"]
    model.eval()
    for batch in (1, 3):
        x = torch.randn(batch, 3, 64, 64)
        p1, p2 = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            t1, t2 = model(x)
        assert p1.shape == p2.shape == (batch, 1, 64, 64)
        np.testing.assert_allclose(p1, t1.numpy(), atol=1e-4)
        np.testing.assert_allclose(p2, t2.numpy(), atol=1e-4)
    model.train()
    assert verify_onnx(model, path, 64) < 1e-4


@pytest.mark.slow
def test_verify_detects_a_different_model_and_sets_the_file_aside(exported, tmp_path):
    path = tmp_path / "student.onnx"
    shutil.copyfile(exported[1], path)
    torch.manual_seed(1)
    other = build_student()
    assert verify_onnx(other, path, 64) > 1e-2
    assert path.exists()  # without atol it only measures
    with pytest.raises(ExportError, match=r"not faithful, so it was renamed to .*student\."
                                          r"unfaithful\.onnx"):
        verify_onnx(other, path, 64, atol=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.unfaithful.onnx"]


class ExportsDifferently(torch.nn.Module):
    """Stands in for an exporter bug: the traced graph adds 1 to P1, eager PyTorch does not."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)

    def forward(self, x):
        shift = 1.0 if torch.compiler.is_exporting() else 0.0
        return self.conv(x) + shift, self.conv(x)


def earlier_export(path):
    """A small ONNX file marked as written by export_onnx (an identity graph)."""
    import onnx
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [value],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    model.metadata_props.add(key=MARK, value="an earlier export")
    onnx.save(model, str(path))
    return path.read_bytes()


@pytest.mark.slow
def test_unfaithful_export_never_takes_the_place_of_a_good_file(tmp_path):
    path = tmp_path / "model.onnx"
    before = earlier_export(path)
    assert is_kdas_export(path)
    with pytest.raises(ExportError, match=r"differ from PyTorch by 1\.00e\+00.*renamed to "
                                          r".*model\.unfaithful\.onnx"):
        export_onnx(ExportsDifferently(), path, image_size=32)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.unfaithful.onnx"]
    assert unfaithful_path(path).stat().st_size > 0


def test_bad_size_and_missing_onnxruntime(tmp_path, monkeypatch):
    model = torch.nn.Conv2d(3, 1, 1)
    with pytest.raises(ExportError, match="multiple of 32"):
        export_onnx(model, tmp_path / "m.onnx", image_size=50)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(ExportError, match="pip install onnxruntime"):
        verify_onnx(model, tmp_path / "m.onnx", 64)


def test_export_failure_is_an_export_error(tmp_path):
    class NotSegmentation(torch.nn.Module):
        def forward(self, x):
            return x.sum()  # no (P1, P2) pair

    with pytest.raises(ExportError, match="ONNX export of NotSegmentation"):
        export_onnx(NotSegmentation(), tmp_path / "bad.onnx", image_size=32)
