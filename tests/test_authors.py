"""The authors' released checkpoints, offline: files in the authors' key layout written here,
served from 127.0.0.1, told apart by their weights and loaded with the key map."""

from __future__ import annotations

import sys

import pytest
import torch
from test_model_checkpoints import to_original

from kdas_lite.checkpoint import save_checkpoint
from kdas_lite.errors import CheckpointError, KDASError
from kdas_lite.models import (
    build_student,
    build_teacher,
    fetch_authors_checkpoints,
    load_authors_models,
)


@pytest.fixture(scope="module")
def released():
    """A teacher (PVTv2-b2) and a student (PVTv2-b0) standing in for the released weights."""
    torch.manual_seed(0)
    return {"teacher": build_teacher().eval(), "student": build_student().eval()}


def test_fetch_tells_teacher_from_student_and_loads_them(released, file_server, tmp_path):
    served, base = file_server
    # File names say nothing about the role: the weights do.
    save_checkpoint(to_original(released["teacher"].state_dict()), served / "a.pth")
    save_checkpoint(to_original(released["student"].state_dict(), "module."), served / "b.pth")
    (served / "notes.txt").write_text("not weights")
    urls = {name: f"{base}/{name}" for name in ("b.pth", "a.pth", "notes.txt")}
    paths = fetch_authors_checkpoints(tmp_path / "authors", urls=urls, progress=False)
    assert {role: p.name for role, p in paths.items()} == {"teacher": "a.pth",
                                                           "student": "b.pth"}
    models = load_authors_models(paths)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        for role, model in models.items():
            torch.testing.assert_close(model(x), released[role](x))
    # A second call finds the files in place and downloads nothing.
    (served / "a.pth").unlink()
    assert fetch_authors_checkpoints(tmp_path / "authors") == paths


def test_wrong_files_and_missing_gdown_are_explained(released, file_server, tmp_path,
                                                     monkeypatch):
    served, base = file_server
    save_checkpoint({"weights": torch.zeros(3)}, served / "junk.pth")
    with pytest.raises(CheckpointError, match=r"none of the downloaded files \(junk.pth\)"):
        fetch_authors_checkpoints(tmp_path / "a", urls={"junk.pth": f"{base}/junk.pth"},
                                  progress=False)
    monkeypatch.setitem(sys.modules, "gdown", None)  # not installed
    with pytest.raises(CheckpointError, match=r"needs gdown: `pip install gdown`"):
        fetch_authors_checkpoints(tmp_path / "empty")
    student = save_checkpoint(to_original(released["student"].state_dict()), tmp_path / "s.pth")
    with pytest.raises(KDASError, match=r"not the authors' teacher checkpoint.*it is the student"):
        load_authors_models({"teacher": student})
