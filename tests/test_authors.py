"""The authors' released checkpoints, offline: files in the authors' key layout written here,
served from 127.0.0.1, told apart by their weights and loaded with the key map; bad downloads
are never kept, downloads are bounded, and the plain state dicts run in the CLI."""

from __future__ import annotations

import io
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from inference_helpers import disc_image
from test_key_maps import to_original

from kdas_lite.checkpoint_files import save_checkpoint
from kdas_lite.cli import main
from kdas_lite.errors import CheckpointError, DownloadError, KDASError
from kdas_lite.models import authors as authors_module
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
    # A second call finds the files in place and downloads nothing; another file there that
    # is not a checkpoint is left alone, as nothing needs fetching.
    (served / "a.pth").unlink()
    (tmp_path / "authors" / "mine.pth").write_text("my notes")
    assert fetch_authors_checkpoints(tmp_path / "authors") == paths
    assert (tmp_path / "authors" / "mine.pth").read_text() == "my notes"


def test_wrong_files_and_missing_gdown_are_explained(released, file_server, tmp_path,
                                                     monkeypatch):
    served, base = file_server
    save_checkpoint({"weights": torch.zeros(3)}, served / "junk.pth")
    with pytest.raises(CheckpointError, match=r"teacher \(pvt_v2_b2\) and student \(pvt_v2_b0\) "
                       r"checkpoint is missing.*junk\.pth does not load and was deleted"):
        fetch_authors_checkpoints(tmp_path / "a", urls={"junk.pth": f"{base}/junk.pth"},
                                  progress=False)
    assert not (tmp_path / "a" / "junk.pth").exists()
    monkeypatch.setitem(sys.modules, "gdown", None)  # not installed
    with pytest.raises(CheckpointError, match=r"needs gdown: `pip install gdown`"):
        fetch_authors_checkpoints(tmp_path / "empty")
    student = save_checkpoint(to_original(released["student"].state_dict()), tmp_path / "s.pth")
    with pytest.raises(KDASError, match=r"not the authors' teacher checkpoint.*it is the student"):
        load_authors_models({"teacher": student})


# ---------------------------------------------------------------------------------------------
# bad downloads are never kept; downloads are bounded
# ---------------------------------------------------------------------------------------------
class Payload:
    """Unpickling this runs code (``print``); ``weights_only=True`` must refuse it."""

    def __reduce__(self):
        return (print, ("code ran while loading",))


def _pickled(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def original_bytes(released):
    """The two released files' bytes, in the authors' layout."""
    return {role: _pickled(to_original(model.state_dict())) for role, model in released.items()}


def bad_teacher(kind: str, original_bytes) -> bytes:
    return {
        "html": b"<!DOCTYPE html><html><title>Google Drive - Virus scan warning</title></html>",
        "wrong-keys": _pickled({"weights": torch.zeros(3)}),
        "truncated": original_bytes["teacher"][: 1 << 20],
        "code": _pickled({"model": Payload()}),
    }[kind]


def test_a_bad_download_is_deleted_named_and_not_reused(released, original_bytes, file_server,
                                                        tmp_path, capsys):
    served, base = file_server
    dest = tmp_path / "authors"
    urls = {name: f"{base}/{name}" for name in ("teacher.pth", "student.pth")}
    (served / "student.pth").write_bytes(original_bytes["student"])
    reasons = {"html": "not a PyTorch checkpoint", "wrong-keys": "not a Polyp-PVT state dict",
               "truncated": "truncated", "code": r"refusing to load .*possibly code"}
    for kind, reason in reasons.items():
        (served / "teacher.pth").write_bytes(bad_teacher(kind, original_bytes))
        # Today's main returned the student alone and kept the bad teacher.pth for later calls.
        with pytest.raises(CheckpointError, match=rf"the authors' teacher \(pvt_v2_b2\) "
                           rf"checkpoint is missing.*teacher\.pth does not load and was deleted "
                           rf"\(.*{reason}"):
            fetch_authors_checkpoints(dest, urls=urls, progress=False)
        assert not (dest / "teacher.pth").exists(), kind
        assert (dest / "student.pth").is_file()
    assert "code ran" not in capsys.readouterr().out

    # A bad teacher.pth already there (left by an older version, or put there by hand) is
    # moved aside, not deleted, and fetched again; the .part of a killed download is removed.
    html = bad_teacher("html", original_bytes)
    (dest / "teacher.pth").write_bytes(html)
    stale = dest / ".teacher.pth.0123456789ab.part"
    stale.write_bytes(b"half a download")
    (served / "teacher.pth").write_bytes(original_bytes["teacher"])
    with pytest.warns(UserWarning, match=r"teacher\.pth does not load .*moved it to "
                      r".*teacher\.pth\.rejected"):
        paths = fetch_authors_checkpoints(dest, urls=urls, progress=False)
    assert paths == {"teacher": dest / "teacher.pth", "student": dest / "student.pth"}
    assert (dest / "teacher.pth.rejected").read_bytes() == html
    assert not stale.exists()


def test_a_missing_or_failed_file_is_an_error_naming_it(original_bytes, file_server, tmp_path):
    served, base = file_server
    (served / "student.pth").write_bytes(original_bytes["student"])
    with pytest.raises(CheckpointError, match=r"the authors' teacher \(pvt_v2_b2\) checkpoint "
                       r"is missing from .*after fetching the given URLs: no file loads as it"):
        fetch_authors_checkpoints(tmp_path / "a", urls={"student.pth": f"{base}/student.pth"},
                                  progress=False)
    # files already in place: a bad teacher there is set aside, and gdown is needed to refetch
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "student.pth").write_bytes(original_bytes["student"])
    (tmp_path / "b" / "teacher.pth").write_bytes(original_bytes["teacher"][:4096])
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "gdown", None)  # not installed
        with pytest.warns(UserWarning, match=r"teacher\.pth does not load \(cannot read "
                          r"checkpoint .*truncated"), \
                pytest.raises(CheckpointError, match=r"needs gdown"):
            fetch_authors_checkpoints(tmp_path / "b")
    assert (tmp_path / "b" / "teacher.pth.rejected").stat().st_size == 4096


def test_the_authors_loader_reports_an_unsafe_pickle_as_unsafe(tmp_path, capsys):
    path = tmp_path / "teacher.pth"
    path.write_bytes(_pickled({"model": Payload()}))
    # Today's main said "not the authors' teacher checkpoint (unrecognised layout)".
    with pytest.raises(CheckpointError, match=r"refusing to load .*teacher\.pth.*possibly code"):
        load_authors_models({"teacher": path})
    assert "code ran" not in capsys.readouterr().out


class _Endless(BaseHTTPRequestHandler):
    """Streams zeros without a Content-Length until the client hangs up (at most 60 s)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        chunk, deadline = bytes(1 << 16), time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                self.wfile.write(chunk)
        except OSError:  # the client stopped reading
            pass

    def log_message(self, *args) -> None:
        pass


def test_downloads_stop_at_a_few_times_the_known_size(released, tmp_path, monkeypatch):
    sizes = {role: sum(v.numel() * v.element_size() for v in model.state_dict().values())
             for role, model in released.items()}
    for role, size in sizes.items():  # the known sizes are those of the real models
        assert size <= authors_module.AUTHORS_FILE_BYTES[role] <= 1.05 * size
    assert 4 * sizes["teacher"] >= authors_module.MAX_DOWNLOAD_BYTES  # today: 20 GiB

    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(authors_module, "MAX_DOWNLOAD_BYTES", 8 << 20)  # a quick test
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/teacher.pth"
    start = time.monotonic()
    try:
        with pytest.raises(DownloadError, match=r"teacher\.pth sent more than the limit of "
                           rf"{8 << 20} bytes"):
            fetch_authors_checkpoints(tmp_path / "a", urls={"teacher.pth": url}, progress=False)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert time.monotonic() - start < 30
    assert list((tmp_path / "a").iterdir()) == []  # nothing kept, no .part left


# ---------------------------------------------------------------------------------------------
# the released weights as plain state dicts: load_trained and the CLI
# ---------------------------------------------------------------------------------------------
def test_the_released_plain_state_dicts_run_in_the_cli(released, original_bytes, tmp_path,
                                                       capsys, monkeypatch):
    teacher, student = tmp_path / "teacher.pth", tmp_path / "student.pth"
    teacher.write_bytes(original_bytes["teacher"])
    student.write_bytes(original_bytes["student"])
    for name in ("a.png", "b.png"):
        disc_image(tmp_path / "frames" / name)
    status = main(["predict", str(student), str(tmp_path / "frames"), "--output",
                   str(tmp_path / "pred"), "--quiet", "--batch-size", "2"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert f"{student}: the KDAS student, Polyp-PVT on pvt_v2_b0 (a plain state dict like the " \
           "authors' released student" in out
    assert "352 px, the paper's size" in out and "wrote 2 masks" in out

    from kdas_lite.data import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", n_train=1, n_test=1, size=64)
    status = main(["evaluate", str(student), "--data", str(data), "--sets", "Kvasir", "--quiet"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "the KDAS student, Polyp-PVT on pvt_v2_b0" in out and "| Kvasir" in out

    exported = {}

    def fake_export(model, path, image_size, **kwargs):
        exported.update(model=model, size=image_size)
        path.write_bytes(b"onnx")
        return path

    monkeypatch.setattr("kdas_lite.export.export_onnx", fake_export)
    status = main(["export", str(teacher), str(tmp_path / "t.onnx"), "--no-verify"])
    out, err = capsys.readouterr()
    assert status == 0, err  # today: "no architecture description ('arch')"
    assert "the KDAS teacher, Polyp-PVT on pvt_v2_b2" in out and exported["size"] == 352
    model = exported["model"]
    assert (model.encoder_name, model.training) == ("pvt_v2_b2", False)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), released["teacher"](x))
