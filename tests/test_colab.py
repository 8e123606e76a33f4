"""The Colab path without Colab, Google Drive or a network (issue 18).

- PraNet's TrainDataset / TestDataset: zips assembled here from a few real files (or synthetic
  ones where ``shared/data`` is absent), served on 127.0.0.1, fetched through direct URLs and
  through a fake ``gdown`` (the Drive ids, the quota refusal, the older fallback ids);
- the real gdown against a fake Google Drive on 127.0.0.1 (a transport adapter on gdown's
  session): the redirect, the virus-scan form, the quota page, a truncated body, gdown's
  leftover ``.part`` files and its private file mode;
- the quota fallback to Kvasir-SEG (its zip cached), and the data cell run again after a
  refusal: Drive is tried again and replaces the fallback split, never a user's own;
- sets with a wrong count, the size cap;
- Google Drive for runs and downloads through a fake ``google.colab.drive``; the no-GPU
  message; the loaded models described and quick stand-ins boxed;
- ``scripts/set_repository.py``: every badge and install cell names the setting.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import types
import urllib.parse
import urllib.request
import warnings
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from kdas_lite import walkthrough
from kdas_lite.checkpoint_files import save_checkpoint
from kdas_lite.colab import NO_GPU_MESSAGE, check_test_sets, course_setup
from kdas_lite.config import TrainConfig
from kdas_lite.data import (
    DATASETS,
    PRANET_DRIVE_FILES,
    TEST_SETS,
    DataWarning,
    course_data,
    fetch_pranet,
    make_synthetic_dataset,
    pair_files,
    pranet_kvasir_test_names,
    prepare_kvasir_split,
)
from kdas_lite.data import pranet as pranet_module
from kdas_lite.errors import DownloadError, KDASError

REPO = Path(__file__).resolve().parents[1]
PER_SET = {"TrainDataset": 2, **dict.fromkeys(TEST_SETS, 2), "ETIS-LaribPolypDB": 1}


def _shared_data() -> Path | None:
    for candidate in (REPO.parent / "shared" / "data", REPO.parents[1] / "shared" / "data"):
        if (candidate / "TrainDataset").is_dir():
            return candidate
    return None


@pytest.fixture(scope="module")
def source_pairs(tmp_path_factory) -> dict[str, list[tuple[Path, Path]]]:
    """A few image/mask pairs per set: real files of shared/data, else synthetic ones."""
    shared = _shared_data()
    if shared is None:
        synthetic = make_synthetic_dataset(tmp_path_factory.mktemp("syn"), n_train=2, n_test=2,
                                           size=32, seed=0)
        train = pair_files(synthetic / "TrainDataset" / "images",
                           synthetic / "TrainDataset" / "masks")
        return {name: train[:n] for name, n in PER_SET.items()}
    pairs = {}
    for name in PER_SET:
        folder = shared / DATASETS[name].folder
        pairs[name] = pair_files(folder / "images", folder / "masks")[:PER_SET[name]]
    return pairs


def _zip(entries: dict[str, Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, path in entries.items():
            archive.write(path, name)
    return buffer.getvalue()


def _pranet_zips(pairs: dict[str, list[tuple[Path, Path]]], extra_kvasir: int = 0
                 ) -> dict[str, bytes]:
    """TrainDataset.zip and TestDataset.zip in PraNet's layout (test: five sets)."""
    train = {f"TrainDataset/{sub}/train-{i}{path.suffix}": path  # names unlike any test image
             for i, pair in enumerate(pairs["TrainDataset"])
             for sub, path in zip(("images", "masks"), pair, strict=True)}
    test = {}
    for name in TEST_SETS:
        chosen = pairs[name] + pairs[name][:1] * (extra_kvasir if name == "Kvasir" else 0)
        for i, pair in enumerate(chosen):
            for sub, path in zip(("images", "masks"), pair, strict=True):
                test[f"TestDataset/{name}/{sub}/{i}{path.suffix}"] = path
    return {"TrainDataset": _zip(train), "TestDataset": _zip(test)}


def _serve(folder: Path, base: str, zips: dict[str, bytes]) -> dict[str, list[str]]:
    for name, data in zips.items():
        (folder / f"{name}.zip").write_bytes(data)
    return {name: [f"{base}/{name}.zip"] for name in zips}


class FileURLRetrievalError(Exception):
    """What gdown raises when Drive refuses a file (its quota)."""


def _fake_gdown(monkeypatch, routes: dict[str, str | Exception]) -> list[str]:
    """Install a fake ``gdown`` whose ``download(id=...)`` fetches ``routes[id]`` (a loopback
    URL) or raises it; returns the list of ids asked for."""
    calls: list[str] = []
    module = types.ModuleType("gdown")

    def download(id: str | None = None, output: str | None = None, quiet: bool = False,
                 **_kw) -> str:
        calls.append(id)
        target = routes.get(id, FileURLRetrievalError(f"no route for {id}"))
        if isinstance(target, Exception):
            raise target
        with urllib.request.urlopen(target) as response, open(output, "wb") as out:
            shutil.copyfileobj(response, out)
        return output

    module.download = download
    monkeypatch.setitem(sys.modules, "gdown", module)
    return calls


QUOTA = FileURLRetrievalError("Too many users have viewed or downloaded this file recently. "
                              "Please try accessing the file again later.")


def _exact_counts(monkeypatch, counts: dict[str, int]) -> None:
    """Make the registry expect ``counts`` pairs (so that a tiny archive is complete)."""
    for name, n in counts.items():
        monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], num_images=n))


# ---------------------------------------------------------------------------------------------
# PraNet's benchmark
# ---------------------------------------------------------------------------------------------
def test_fetch_pranet_labels_every_set_with_another_count(source_pairs, file_server,
                                                           tmp_path) -> None:
    served, base = file_server
    urls = _serve(served, base, _pranet_zips(source_pairs))
    cache = tmp_path / "drive-cache"
    with pytest.warns(DataWarning) as caught:
        layout = fetch_pranet(tmp_path / "data", cache=cache, urls=urls, progress=False)
    assert list(layout.test) == list(TEST_SETS) and layout.kind == "pranet"
    labels = {name: status.label for name, status in layout.status.items()}
    assert labels["ETIS-LaribPolypDB"] == "ETIS-LaribPolypDB (1/196)"
    assert labels["Kvasir"] == "Kvasir (2/100)"
    assert labels["TrainDataset"] == "TrainDataset (2/1450)"
    assert not any(status.comparable for status in layout.status.values())
    warned = " ".join(str(w.message) for w in caught)
    assert "ETIS-LaribPolypDB: 1 of the 196 benchmark pairs" in warned
    manifest = json.loads((tmp_path / "data" / "MANIFEST.json").read_text())
    assert manifest["made_by"] == "kdas_lite.data.fetch_pranet"
    assert manifest["sets"]["CVC-ColonDB"]["status"] == "partial"
    assert sorted(p.name for p in cache.iterdir()) == ["TestDataset.zip", "TrainDataset.zip"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "MANIFEST.json", "TestDataset", "TrainDataset"]  # no scratch folder left behind
    # A new runtime: the zips kept in the cache are unpacked, the server is not asked again.
    for name in urls:
        (served / f"{name}.zip").unlink()
    with pytest.warns(DataWarning):
        again = fetch_pranet(tmp_path / "data2", cache=cache, urls=urls, progress=False)
    assert list(again.test) == list(TEST_SETS)


def test_drive_ids_through_gdown_with_the_older_id_as_fallback(source_pairs, file_server,
                                                               tmp_path, monkeypatch) -> None:
    served, base = file_server
    urls = _serve(served, base, _pranet_zips(source_pairs))
    (new_test, old_test), (new_train, _) = (PRANET_DRIVE_FILES["TestDataset"],
                                            PRANET_DRIVE_FILES["TrainDataset"])
    assert new_test == "1Y2z7FD5p5y31vkZwQQomXFRB0HutHyao"
    assert new_train == "1YiGHLw4iTvKdvbT6MgwO9zcCv8zJ_Bnb"
    calls = _fake_gdown(monkeypatch, {new_test: QUOTA, old_test: urls["TestDataset"][0],
                                      new_train: urls["TrainDataset"][0]})
    _exact_counts(monkeypatch, {name: len(source_pairs[name]) for name in PER_SET})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every count right: nothing to warn about
        layout = fetch_pranet(tmp_path / "data", progress=False)
    assert calls == [new_test, old_test, new_train]
    assert all(status.status == "complete" for status in layout.status.values())
    assert [status.label for status in layout.status.values()] == ["TrainDataset", *TEST_SETS]
    assert not list((tmp_path / "data").glob(".*"))  # scratch and .part files are gone


def test_drive_refusal_names_the_reason_and_leaves_nothing(source_pairs, tmp_path,
                                                           monkeypatch) -> None:
    _fake_gdown(monkeypatch, dict.fromkeys(PRANET_DRIVE_FILES["TestDataset"], QUOTA))
    with pytest.raises(DownloadError, match=r"Google Drive refused PraNet's TestDataset "
                                            r"\(1Y2z7FD5p5y31vkZwQQomXFRB0HutHyao: Too many users"):
        fetch_pranet(tmp_path / "data", cache=tmp_path / "cache", progress=False)
    assert list((tmp_path / "data").iterdir()) == [] and list((tmp_path / "cache").iterdir()) == []
    monkeypatch.setitem(sys.modules, "gdown", None)  # not installed
    with pytest.raises(DownloadError, match=r"needs gdown \(`pip install gdown`"):
        fetch_pranet(tmp_path / "data", progress=False)
    page = tmp_path / "cache" / "TestDataset.zip"  # e.g. Drive's web page saved by hand
    page.write_text("<html>quota</html>")
    with pytest.raises(DownloadError, match="exists but is not a zip archive: delete it"):
        fetch_pranet(tmp_path / "data", cache=tmp_path / "cache", progress=False)
    assert page.read_text() == "<html>quota</html>"  # a file it did not write is kept


def test_a_set_with_more_pairs_than_the_benchmark_is_refused(source_pairs, file_server,
                                                             tmp_path, monkeypatch) -> None:
    served, base = file_server
    urls = _serve(served, base, _pranet_zips(source_pairs, extra_kvasir=1))
    _exact_counts(monkeypatch, {"Kvasir": len(source_pairs["Kvasir"])})
    with pytest.raises(DownloadError, match=r"TestDataset.zip: Kvasir holds 3 image/mask pairs, "
                                            r"the benchmark has 2"):
        fetch_pranet(tmp_path / "data", urls=urls, progress=False)
    assert not (tmp_path / "data" / "TestDataset").exists()  # nothing moved into place
    assert not (tmp_path / "data" / "TrainDataset").exists()


def test_an_archive_over_the_size_cap_is_refused(source_pairs, file_server, tmp_path,
                                                 monkeypatch) -> None:
    served, base = file_server
    urls = _serve(served, base, _pranet_zips(source_pairs))
    monkeypatch.setattr(pranet_module, "dataset_size_limit", lambda name: 100)
    with pytest.raises(DownloadError, match="more than the limit of 100"):
        fetch_pranet(tmp_path / "data", cache=tmp_path / "cache", urls=urls, progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def _kvasir_seg_zip(pairs: dict[str, list[tuple[Path, Path]]]) -> bytes:
    """A tiny raw Kvasir-SEG release: two PraNet Kvasir test names and two training names."""
    names = [*sorted(pranet_kvasir_test_names())[:2], "cju0aaaaaaaaaaaa", "cju0bbbbbbbbbbbb"]
    sources = (pairs["Kvasir"] + pairs["TrainDataset"])[:4]
    entries = {}
    for name, (image, mask) in zip(names, sources, strict=True):
        entries[f"Kvasir-SEG/images/{name}{image.suffix}"] = image
        entries[f"Kvasir-SEG/masks/{name}{mask.suffix}"] = mask
    return _zip(entries)


def test_quota_falls_back_to_kvasir_seg_and_notebook_05_says_so(source_pairs, file_server,
                                                                no_local_data, monkeypatch,
                                                                capsys) -> None:
    served, base = file_server
    (served / "kvasir-seg.zip").write_bytes(_kvasir_seg_zip(source_pairs))
    calls = _fake_gdown(monkeypatch, {})  # every id refused
    with pytest.warns(DataWarning, match="the registry expects 1000"):
        layout = course_data(url=f"{base}/kvasir-seg.zip", pranet=True, progress=False,
                             cache=no_local_data / "cache")
    assert calls == list(PRANET_DRIVE_FILES["TestDataset"])
    assert list(layout.test) == ["Kvasir"] and not layout.synthetic
    out = capsys.readouterr().out
    assert "PraNet's benchmark could not be fetched from Google Drive" in out
    assert "only Kvasir-SEG is available" in out
    assert check_test_sets(layout) is False
    box = capsys.readouterr().out
    assert "⚠ not the five test sets" in box and "Missing: CVC-ClinicDB, CVC-ColonDB" in box


# ---------------------------------------------------------------------------------------------
# The real gdown against a fake Google Drive on 127.0.0.1
# ---------------------------------------------------------------------------------------------
QUOTA_PAGE = ('<html><body><p class="uc-error-caption">Sorry, you can&#39;t view or download this '
              'file at this time.</p><p class="uc-error-subcaption">Too many users have viewed or '
              'downloaded this file recently. Please try accessing the file again later. If the '
              'file you are trying to access is particularly large or is shared with many people, '
              'it may take up to 24 hours to be able to view or download the file.</p></body>'
              '</html>')


class _FakeDrive(BaseHTTPRequestHandler):
    """Google Drive's download protocol as gdown meets it. The path is ``/<host>/<path>`` (the
    adapter below keeps the host there); ``server.modes[id]`` says how a file id is answered:
    ``redirect`` (303 to drive.usercontent.google.com), ``confirm`` (the virus-scan warning's
    form first), ``quota`` (Drive's quota page) or ``truncated`` (half the announced bytes)."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        host, _, path = url.path.lstrip("/").partition("/")
        query = urllib.parse.parse_qs(url.query)
        file_id = query.get("id", [""])[0]
        mode = self.server.modes.get(file_id, "missing")
        self.server.asked.append((host, path, file_id))
        if mode == "missing" or file_id not in self.server.files:
            return self._send(404, "text/html", b"<html>not found</html>")
        if host == "drive.google.com" and path == "uc":
            if mode == "redirect":
                self.send_response(303)
                self.send_header("Location", "https://drive.usercontent.google.com/download?id="
                                 f"{file_id}&export=download")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            if mode == "confirm":
                form = ('<form id="download-form" action="https://drive.usercontent.google.com/'
                        'download" method="get"><input type="hidden" name="id" value="'
                        f'{file_id}"><input type="hidden" name="confirm" value="t"><input '
                        'type="hidden" name="uuid" value="1234"></form>')
                page = f"<html><body><p>Virus scan warning</p>\n{form}\n</body></html>"
                return self._send(200, "text/html; charset=utf-8", page.encode())
            if mode == "quota":
                return self._send(200, "text/html; charset=utf-8", QUOTA_PAGE.encode())
        if mode == "confirm" and query.get("confirm") != ["t"]:
            return self._send(400, "text/html", b"<html>no confirmation</html>")
        data = self.server.files[file_id]
        sent = data[:len(data) // 2] if mode == "truncated" else data
        self._send(200, "application/octet-stream", sent, length=len(data),
                   disposition=f'attachment; filename="{file_id}.zip"')

    def _send(self, code: int, kind: str, body: bytes, length: int | None = None,
              disposition: str | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        if disposition:
            self.send_header("Content-Disposition", disposition)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def fake_drive(tmp_path, monkeypatch):
    """The real ``gdown`` whose requests session sends drive.google.com's and
    drive.usercontent.google.com's requests to :class:`_FakeDrive` on 127.0.0.1 (a transport
    adapter mounted on the session gdown creates). Yields the server: set ``.files[id]`` (the
    bytes) and ``.modes[id]``; ``.asked`` lists the requests."""
    gdown_download = importlib.import_module("gdown.download")
    import requests

    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeDrive)
    server.files, server.modes, server.asked = {}, {}, []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    port = server.server_address[1]

    class Loopback(requests.adapters.HTTPAdapter):
        def send(self, request, **kwargs):
            parts = urllib.parse.urlsplit(request.url)
            assert parts.netloc.endswith("google.com"), request.url  # nothing else is asked
            request.url = urllib.parse.urlunsplit(
                ("http", f"127.0.0.1:{port}", f"/{parts.netloc}{parts.path}", parts.query, ""))
            return super().send(request, **kwargs)

    real_session = requests.Session

    def session() -> requests.Session:
        made = real_session()
        made.trust_env = False  # no proxy for the loopback server
        made.mount("https://", Loopback())
        return made

    monkeypatch.setattr(requests, "session", session)
    monkeypatch.setattr(gdown_download, "DEFAULT_COOKIES_FILE", str(tmp_path / "cookies.txt"))
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _drive_ids(server, zips: dict[str, bytes], modes: dict[str, str]) -> None:
    for name, data in zips.items():
        for file_id in PRANET_DRIVE_FILES[name]:
            server.files[file_id] = data
    server.modes.update(modes)


def test_real_gdown_through_the_redirect_and_the_virus_scan_form(source_pairs, fake_drive,
                                                                 tmp_path) -> None:
    new_test, new_train = (PRANET_DRIVE_FILES[name][0] for name in ("TestDataset", "TrainDataset"))
    _drive_ids(fake_drive, _pranet_zips(source_pairs), {new_test: "confirm", new_train: "redirect"})
    cache = tmp_path / "drive-cache"
    cache.mkdir()
    stale = cache / ".TestDataset.zip.partab12cd34.part"  # a runtime that ended mid-download
    stale.write_bytes(b"half")
    umask = os.umask(0o022)
    try:
        with pytest.warns(DataWarning):
            layout = fetch_pranet(tmp_path / "data", cache=cache, progress=False)
    finally:
        os.umask(umask)
    assert list(layout.test) == list(TEST_SETS)
    asked = [(host, path) for host, path, _ in fake_drive.asked]
    assert asked == [("drive.google.com", "uc"), ("drive.usercontent.google.com", "download")] * 2
    assert sorted(p.name for p in cache.iterdir()) == ["TestDataset.zip", "TrainDataset.zip"]
    for archive in cache.iterdir():  # gdown makes its files 0600; the cache follows the umask
        assert stat.S_IMODE(archive.stat().st_mode) == 0o644, archive


def test_real_gdown_quota_and_truncation_give_one_line_each_and_leave_nothing(
        source_pairs, fake_drive, tmp_path) -> None:
    new_test, old_test = PRANET_DRIVE_FILES["TestDataset"]
    _drive_ids(fake_drive, _pranet_zips(source_pairs), {new_test: "quota", old_test: "truncated"})
    cache = tmp_path / "drive-cache"
    with pytest.raises(DownloadError) as refused:
        fetch_pranet(tmp_path / "data", cache=cache, progress=False)
    message = str(refused.value)
    assert "\n" not in message
    assert (f"Google Drive refused PraNet's TestDataset ({new_test}: Too many users have viewed "
            "or downloaded this file recently. Please try accessing the file again later.") \
        in message  # gdown's reason, from the third line of its message
    assert f"{old_test}: Download is incomplete: received " in message
    assert "quota): run the data cell again later" in message
    assert list(cache.iterdir()) == []  # gdown's .part files are gone
    fake_drive.modes[new_test] = "truncated"  # nothing but truncated bodies: not the quota
    with pytest.raises(DownloadError) as dropped:
        fetch_pranet(tmp_path / "data", cache=cache, progress=False)
    message = str(dropped.value)
    assert "\n" not in message and "(its quota)" not in message and "Too many" not in message
    assert message.startswith("Google Drive did not send all of PraNet's TestDataset")
    assert "The connection dropped before the end (nothing was kept)" in message
    assert list(cache.iterdir()) == [] and not any((tmp_path / "data").iterdir())


def test_after_a_refusal_the_data_cell_again_replaces_the_fallback_split(
        source_pairs, fake_drive, file_server, no_local_data, capsys) -> None:
    served, base = file_server
    (served / "kvasir-seg.zip").write_bytes(_kvasir_seg_zip(source_pairs))
    zips = _pranet_zips(source_pairs)
    _drive_ids(fake_drive, zips, dict.fromkeys(PRANET_DRIVE_FILES["TestDataset"], "quota"))
    cache = no_local_data / "drive-cache"
    with pytest.warns(DataWarning):
        first = course_data(url=f"{base}/kvasir-seg.zip", pranet=True, progress=False,
                            cache=cache)
    assert list(first.test) == ["Kvasir"]
    assert sorted(p.name for p in cache.iterdir()) == ["kvasir-seg.zip"]  # the fallback is kept
    (served / "kvasir-seg.zip").unlink()  # a new runtime takes Kvasir-SEG from the cache
    shutil.rmtree(no_local_data / "data")
    with pytest.warns(DataWarning):
        assert list(course_data(url=f"{base}/kvasir-seg.zip", pranet=True, progress=False,
                                cache=cache).test) == ["Kvasir"]
    capsys.readouterr()
    asked = len(fake_drive.asked)  # the data cell again, same runtime, Drive still refusing
    again = course_data(url=f"{base}/kvasir-seg.zip", pranet=True, progress=False, cache=cache)
    assert list(again.test) == ["Kvasir"] and len(fake_drive.asked) > asked
    assert "falling back to the Kvasir-SEG split already here" in capsys.readouterr().out
    fake_drive.modes.update(dict.fromkeys(PRANET_DRIVE_FILES["TestDataset"]
                                          + PRANET_DRIVE_FILES["TrainDataset"], "redirect"))
    with pytest.warns(DataWarning):  # Drive answers now: the five sets replace the fallback
        healed = course_data(url=f"{base}/kvasir-seg.zip", pranet=True, progress=False,
                             cache=cache)
    assert list(healed.test) == list(TEST_SETS)
    assert "replaces the Kvasir-SEG fallback split" in capsys.readouterr().out
    data = no_local_data / "data"
    assert json.loads((data / "MANIFEST.json").read_text())["made_by"] == \
        "kdas_lite.data.fetch_pranet"
    assert (data / "Kvasir-SEG" / "images").is_dir()  # the raw download stays
    assert not list(data.glob(".*")) and sorted(p.name for p in cache.iterdir()) == [
        "TestDataset.zip", "TrainDataset.zip", "kvasir-seg.zip"]


def test_a_split_the_user_prepared_is_never_replaced(source_pairs, fake_drive,
                                                      no_local_data) -> None:
    raw = no_local_data / "raw"
    with zipfile.ZipFile(io.BytesIO(_kvasir_seg_zip(source_pairs))) as archive:
        archive.extractall(raw)
    prepare_kvasir_split(raw / "Kvasir-SEG", no_local_data / "data")
    _drive_ids(fake_drive, _pranet_zips(source_pairs), {})  # Drive would answer
    fake_drive.modes.update(dict.fromkeys(PRANET_DRIVE_FILES["TestDataset"]
                                          + PRANET_DRIVE_FILES["TrainDataset"], "redirect"))
    layout = course_data(pranet=True, progress=False)
    assert list(layout.test) == ["Kvasir"] and fake_drive.asked == []


# ---------------------------------------------------------------------------------------------
# Colab: Google Drive, the device, the parameter sets
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def fake_colab(monkeypatch):
    """A fake ``google.colab`` whose ``drive.mount`` creates ``<mountpoint>/MyDrive``;
    yields the list of mount points asked for (set ``.fail`` to make it raise)."""
    mounts: list[str] = []
    state = SimpleNamespace(fail=None)
    google, colab, drive = (types.ModuleType(n) for n in
                            ("google", "google.colab", "google.colab.drive"))

    def mount(mountpoint: str) -> None:
        mounts.append(mountpoint)
        if state.fail:
            raise state.fail
        (Path(mountpoint) / "MyDrive").mkdir(parents=True, exist_ok=True)

    drive.mount, colab.drive, google.colab = mount, drive, colab
    for name, module in (("google", google), ("google.colab", colab),
                         ("google.colab.drive", drive)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return SimpleNamespace(mounts=mounts, state=state)


def test_no_gpu_on_colab_says_how_to_switch_and_keeps_the_cpu_set(fake_colab, tmp_path,
                                                                  capsys) -> None:
    setup = course_setup("01", mountpoint=tmp_path / "drive")
    out = capsys.readouterr().out
    assert "⚠ no GPU" in out and "Runtime → Change runtime type → Hardware accelerator: T4" in out
    assert NO_GPU_MESSAGE[:40] in out
    assert setup.scale == "cpu-lab" and setup.device.device.type == "cpu"
    assert set(setup.parameters) == {"run_root"}  # the cell's own (CPU) values stay


def test_off_colab_nothing_is_mounted_and_no_gpu_box(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "google.colab", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    setup = course_setup("03", run_root="runs/x")
    assert not setup.on_colab and setup.run_root == Path("runs/x") and setup.data_cache is None
    assert "⚠" not in capsys.readouterr().out


def test_a_gpu_gets_the_colab_t4_set(fake_colab, tmp_path, monkeypatch, capsys) -> None:
    t4 = SimpleNamespace(name="Tesla T4", major=7, minor=5, total_memory=15 * 2**30)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: t4)
    setup = course_setup("04", mountpoint=tmp_path / "drive")
    out = capsys.readouterr().out
    assert "Tesla T4, compute capability 7.5" in out and "⚠ no GPU" not in out
    assert setup.scale == "colab-t4" and setup.device.amp_dtype == torch.float16
    assert setup.parameters["image_size"] == 352 and setup.parameters["batch_size"] == 16
    assert "parameters: the colab-t4 set (image_size = 352" in out
    with pytest.raises(KDASError, match="unknown parameter set"):
        course_setup("04", scale="tpu", mountpoint=tmp_path / "drive")


def test_runs_and_downloads_persist_on_google_drive(fake_colab, source_pairs, file_server,
                                                    no_local_data, monkeypatch,
                                                    capsys) -> None:
    mountpoint = no_local_data / "content" / "drive"
    first = course_setup("01", mountpoint=mountpoint)
    drive_root = mountpoint / "MyDrive" / "kdas_lite"
    assert first.on_drive and first.run_root == drive_root / "runs" / "notebooks"
    assert first.data_cache == drive_root / "data-cache"
    assert first.parameters["run_root"] == str(first.run_root)
    # notebook 01 fetches the data (zips kept on Drive) and trains its teacher onto Drive
    served, base = file_server
    urls = _serve(served, base, _pranet_zips(source_pairs))
    ids = {PRANET_DRIVE_FILES[name][0]: url[0] for name, url in urls.items()}
    calls = _fake_gdown(monkeypatch, ids)
    with pytest.warns(DataWarning):
        course_data(cache=first.data_cache, progress=False)
    assert len(calls) == 2 and (first.data_cache / "TestDataset.zip").is_file()
    teacher = first.run_root / "teacher" / "best.pth"
    teacher.parent.mkdir(parents=True)
    teacher.write_bytes(b"a checkpoint")
    # notebook 02, a new runtime: its local data is gone, Drive is mounted again
    shutil.rmtree(no_local_data / "data")
    second = course_setup("02", mountpoint=mountpoint)
    assert fake_colab.mounts == [str(mountpoint)] * 2 and second.run_root == first.run_root
    with pytest.warns(DataWarning):
        layout = course_data(cache=second.data_cache, progress=False)
    assert len(calls) == 2 and list(layout.test) == list(TEST_SETS)  # no second download
    config = TrainConfig(output_dir=second.parameters["run_root"])
    assert walkthrough.walkthrough_teacher(config) == teacher  # 01's teacher, not a stand-in
    assert "stand-in" not in capsys.readouterr().out


def test_without_drive_a_warning_says_the_next_notebook_will_not_find_the_runs(
        fake_colab, tmp_path, capsys) -> None:
    setup = course_setup("01", drive=False, mountpoint=tmp_path / "drive")
    assert fake_colab.mounts == [] and not setup.on_drive and setup.run_root == Path(
        "runs/notebooks")
    out = capsys.readouterr().out
    assert "⚠ drive = False" in out and "the next notebook (its own runtime) will not find" in out
    fake_colab.state.fail = RuntimeError("mount failed: sign-in declined")
    declined = course_setup("02", mountpoint=tmp_path / "drive")
    assert not declined.on_drive and declined.data_cache is None
    out = capsys.readouterr().out
    assert "⚠ runs stay in this runtime" in out and "sign-in declined" in out


def test_a_quick_stand_in_is_announced_in_a_box_and_models_are_described(tmp_path, monkeypatch,
                                                                          capsys) -> None:
    config = TrainConfig(output_dir=str(tmp_path / "runs"), image_size=64)
    quick = tmp_path / "runs" / "quick" / "teacher" / "best.pth"
    monkeypatch.setattr(walkthrough, "train_teacher",
                        lambda cfg, **kw: SimpleNamespace(best_path=quick))
    assert walkthrough.walkthrough_teacher(config, progress=False) == quick
    out = capsys.readouterr().out
    assert "⚠ quick stand-in teacher" in out and "notebook 01 has not trained" in out
    path = save_checkpoint({"role": "student", "epoch": 7, "val_dice": 0.8125,
                            "train_config": config.replace(epochs=9).to_dict()},
                           tmp_path / "best.pth")
    assert walkthrough.describe_checkpoint(path) == (
        f"student: {path} (pvt_v2_b0, 64 px, 9 epochs, best epoch 7, val Dice 0.812)")


def test_a_checkpoint_trained_with_other_settings_is_named_in_a_box(tmp_path, capsys) -> None:
    """05 at image_size = 96 on 64-px models, or 04/05 on a T4 with 01's CPU-runtime teacher."""
    cpu = TrainConfig(output_dir=str(tmp_path / "runs"), image_size=64,
                      teacher_encoder="efficientnet_lite2", student_encoder="efficientnet_lite0")
    run = cpu.run_dir
    for role, folder in (("teacher", "teacher"), ("student", "kdas/student")):
        save_checkpoint({"role": role, "epoch": 1, "train_config": cpu.to_dict()},
                        run / folder / "best.pth")
    assert walkthrough.check_checkpoint(run / "teacher" / "best.pth", cpu)
    assert "⚠" not in capsys.readouterr().out  # the same settings: nothing to say
    t4 = cpu.replace(image_size=352, teacher_encoder="pvt_v2_b2", student_encoder="pvt_v2_b0")
    walkthrough.walkthrough_checkpoints(t4, progress=False)
    out = " ".join(w for w in capsys.readouterr().out.split() if w != "│")  # lines joined
    assert out.count("⚠ the teacher checkpoint differs from this notebook's settings") == 1
    assert out.count("⚠ the student checkpoint differs from this notebook's settings") == 1
    assert ("was trained with encoder 'efficientnet_lite2' (this notebook: 'pvt_v2_b2') and "
            "image size 64 (this notebook: 352)") in out
    assert not walkthrough.check_checkpoint(run / "kdas" / "student" / "best.pth",
                                            cpu.replace(image_size=96))
    out = " ".join(w for w in capsys.readouterr().out.split() if w != "│")
    assert "encoder" not in out.split("was trained with")[1].split(".")[0]  # only the size
    assert "image size 64 (this notebook: 96)" in out


# ---------------------------------------------------------------------------------------------
# scripts/set_repository.py
# ---------------------------------------------------------------------------------------------
def _set_repository():
    spec = importlib.util.spec_from_file_location("set_repository",
                                                  REPO / "scripts" / "set_repository.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_badge_install_cell_and_readme_link_agrees_with_the_setting() -> None:
    script = _set_repository()
    setting = script.read_setting(REPO)
    assert script.disagreements(REPO) == []
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"https://github.com/{setting.slug}" in readme
    assert all(setting.colab(p.name) in readme for p in (REPO / "notebooks").glob("*.ipynb"))


def _copy_course(tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "set_repository.py", copy / "scripts")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, copy / name)
    shutil.copytree(REPO / "notebooks", copy / "notebooks")
    return copy


def _run(copy: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(copy / "scripts" / "set_repository.py"), *args],
                          capture_output=True, text=True, check=False)


def test_set_repository_rewrites_every_badge_and_install_url(tmp_path) -> None:
    copy = _copy_course(tmp_path)
    old = _set_repository().read_setting(copy)
    result = _run(copy, "acme/course")
    assert result.returncode == 0, result.stderr
    script = _set_repository()
    assert script.read_setting(copy) == script.Setting("acme", "course", "main")
    assert script.disagreements(copy) == []
    for path in script.course_files(copy):
        text = path.read_text(encoding="utf-8")
        assert old.slug not in text, path
        if path.suffix == ".ipynb":
            assert f"colab.research.google.com/github/acme/course/blob/main/notebooks/{path.name}" \
                in text
            assert "git+https://github.com/acme/course@main" in text
    assert "https://arxiv.org/abs/2312.08555" in (copy / "README.md").read_text()  # others stay
    assert _run(copy, "acme/course", "--ref", "v1.2").returncode == 0
    assert script.read_setting(copy).ref == "v1.2" and script.disagreements(copy) == []
    assert "blob/v1.2/notebooks" in (copy / "notebooks" / "01_teacher_training.ipynb").read_text()
    assert _run(copy, "--check").returncode == 0


def test_set_repository_check_names_a_stray_badge_and_bad_input_is_one_line(tmp_path) -> None:
    copy = _copy_course(tmp_path)
    notebook = copy / "notebooks" / "03_sgm_covariance_guidance.ipynb"
    setting = _set_repository().read_setting(copy)
    notebook.write_text(notebook.read_text().replace(f"github/{setting.slug}/", "github/x/y/"))
    result = _run(copy, "--check")
    assert result.returncode == 1
    assert "03_sgm_covariance_guidance.ipynb: badge https://colab.research.google.com/github/x/y/" \
        in result.stdout
    bad = _run(copy, "acme")
    assert bad.returncode == 2 and "give the repository as OWNER/NAME" in bad.stderr


@pytest.mark.parametrize("args", [
    ["acme/kdas\n"], ["acme/kdas", "--ref", "x\n"], ["a/.."], ["a/."], ["-a/b"], ["a-/b"],
    ["a--b/c"], ["o" * 40 + "/n"], ["o/" + "n" * 101], ["acme/kdas", "--ref", "v1..2"],
    ["acme/kdas", "--ref", "x.lock"], ["acme/kdas", "--ref", "a//b"], ["acme/kdas", "--ref", "-x"],
    ["acme/kdas", "--ref", ".x"], ["acme/kdas", "--ref", "x/"], ["acme/kdas", "--ref", "@"],
])
def test_set_repository_refuses_names_github_or_git_refuse_and_writes_nothing(tmp_path, args):
    """A trailing newline passed ``re.match(...$)`` and wrote invalid JSON into every notebook;
    ``a/..``, over-long owners/names and refs with ``..`` passed too (issue 26, item 4)."""
    copy = _copy_course(tmp_path)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    result = _run(copy, *args)
    assert result.returncode == 2, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before


def test_set_repository_accepts_names_at_githubs_limits(tmp_path):
    copy = _copy_course(tmp_path)
    owner, name = "o" * 39, "n._-" * 25
    assert _run(copy, f"{owner}/{name}", "--ref", "release/v1.2").returncode == 0
    script = _set_repository()
    assert script.read_setting(copy) == script.Setting(owner, name, "release/v1.2")
    assert script.disagreements(copy) == []


def test_set_repository_check_reports_an_unreadable_notebook_in_one_line(tmp_path):
    copy = _copy_course(tmp_path)
    notebook = copy / "notebooks" / "02_attention_visualization.ipynb"
    notebook.write_text(notebook.read_text()[:-40])
    result = _run(copy, "--check")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "notebooks/02_attention_visualization.ipynb: not a readable notebook" in result.stdout


def test_notebooks_readme_quotes_the_measured_budget_and_the_colab_set() -> None:
    from kdas_lite.colab import COURSE_SETS

    readme = (REPO / "notebooks" / "README.md").read_text(encoding="utf-8")
    budget = json.loads((REPO / "docs" / "bench" / "colab.json").read_text(encoding="utf-8"))
    memory = budget["memory"]
    assert memory["size"] == 448 and memory["batch"] == 16 and memory["fits_t4"]
    assert f"**{memory['total_gb']:.2f} GB**" in readme
    assert f"{memory['with_margin_gb']:.1f} GB of the T4's 15 GB" in readme
    rows = {line.split(" |")[0][2:]: line for line in readme.splitlines()
            if line.startswith("| 0")}  # the budget table (scripts/notebook_readme.py)
    for notebook, estimate in budget["notebooks"].items():
        assert rows[notebook].endswith(f"| {estimate['total_min']:.0f} |"), notebook
    t4 = COURSE_SETS["colab-t4"]
    assert (f"trains the teacher {t4['01']['teacher_epochs']} epochs, each student "
            f"{t4['04']['epochs']}") in readme
    assert all(values["image_size"] == 352 and values["batch_size"] == 16
               for values in t4.values())


def test_every_value_of_a_parameter_set_is_a_parameter_of_its_notebook() -> None:
    import ast

    from kdas_lite.colab import COURSE_SETS

    for path in sorted((REPO / "notebooks").glob("0*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        source = next("".join(c["source"]) for c in cells
                      if "parameters" in c.get("metadata", {}).get("tags", []))
        declared = {target.id for node in ast.parse(source).body
                    for target in node.targets}
        for scale, notebooks in COURSE_SETS.items():
            missing = set(notebooks[path.name[:2]]) - declared
            assert not missing, f"{scale} sets {missing}, not parameters of {path.name}"
