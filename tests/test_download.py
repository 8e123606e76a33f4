"""Downloads and zip extraction against a real HTTP server on 127.0.0.1 (started here).

Every failure case also checks that nothing half-written is left behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import socket
import stat
import threading
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kdas_lite.data import DATASETS, DataWarning, download_dataset, download_file, safe_extract
from kdas_lite.data.download import SIZE_MARGIN, dataset_size_limit
from kdas_lite.errors import DownloadError

ENDLESS_MAX = 64 * 2**20  # what an "endless" route sends at most


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (kind, body)``; kind "ok", "truncated" or "endless"."""

    def do_GET(self) -> None:
        self.server.hits[self.path] += 1
        if self.path not in self.server.routes:
            self.send_error(404, "Not Found")
            return
        kind, body = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        if kind == "endless":  # no Content-Length: repeat body until the client hangs up
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(ENDLESS_MAX // len(body)):  # a safety stop for the old code
                    self.wfile.write(body)
            return
        # "truncated": announce twice the length, send half of it, then close (HTTP/1.0)
        announced = len(body) * 2 if kind == "truncated" else len(body)
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # never route loopback via a proxy
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.hits = {}, Counter()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def make_zip(entries, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """A zip in memory; ``entries`` maps names (or ready ZipInfo objects) to bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tree(folder) -> list[str]:
    """Every path under ``folder`` (hidden ones included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


KVASIR_ZIP = make_zip({
    "Kvasir-SEG/images/cju0qkwl35piu0993l0dewei2.jpg": b"image bytes",
    "Kvasir-SEG/masks/cju0qkwl35piu0993l0dewei2.jpg": b"mask bytes",
    "Kvasir-SEG/kavsir_bboxes.json": b"{}",
})


# ---------------------------------------------------------------- download_file


def test_download_verifies_checksum_and_leaves_only_the_file(server, tmp_path):
    server.routes["/data.zip"] = ("ok", KVASIR_ZIP)
    dest = download_file(f"{server.base}/data.zip", tmp_path / "d" / "data.zip",
                         sha256=sha(KVASIR_ZIP), progress=False)
    assert dest.read_bytes() == KVASIR_ZIP
    assert tree(tmp_path / "d") == ["data.zip"]
    # present and matching: not downloaded again
    download_file(f"{server.base}/data.zip", dest, sha256=sha(KVASIR_ZIP), progress=False)
    assert server.hits["/data.zip"] == 1


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    server.routes["/data.zip"] = ("ok", KVASIR_ZIP)
    with pytest.raises(DownloadError, match=r"checksum mismatch for http://127\.0\.0\.1"):
        download_file(f"{server.base}/data.zip", tmp_path / "data.zip", sha256="0" * 64,
                      progress=False)
    assert tree(tmp_path) == []


def test_connection_dropped_mid_file(server, tmp_path):
    server.routes["/data.zip"] = ("truncated", KVASIR_ZIP)
    with pytest.raises(DownloadError, match=rf"interrupted after {len(KVASIR_ZIP)} of "
                                            rf"{2 * len(KVASIR_ZIP)} bytes"):
        download_file(f"{server.base}/data.zip", tmp_path / "data.zip", progress=False)
    assert tree(tmp_path) == []


def test_http_error_and_unreachable_host(server, tmp_path):
    with pytest.raises(DownloadError, match=r"HTTP 404.*browser"):
        download_file(f"{server.base}/missing.zip", tmp_path / "x.zip", progress=False)
    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match=f"127.0.0.1:{port}"):
        download_file(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", progress=False)
    assert tree(tmp_path) == []


# ---------------------------------------------------------------- safe_extract


def write(tmp_path, data: bytes, name="archive.zip"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_safe_extract_good_zip(tmp_path):
    archive = write(tmp_path, KVASIR_ZIP)
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "Kvasir-SEG/images/cju0qkwl35piu0993l0dewei2.jpg").read_bytes() == \
        b"image bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive.zip", "out"]


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil.txt", "a/../../evil.txt",
                                  "C:/evil.txt", "..\\evil.txt"])
def test_zip_slip_is_refused_before_writing(tmp_path, name):
    archive = write(tmp_path, make_zip({"fine.txt": b"ok", name: b"pwned"}))
    with pytest.raises(DownloadError, match="zip slip"):
        safe_extract(archive, tmp_path / "sub" / "out")
    assert tree(tmp_path) == ["archive.zip", "sub"]  # not even fine.txt was written


def test_symlink_member_is_refused(tmp_path):
    link = zipfile.ZipInfo("Kvasir-SEG/images/link.jpg")
    link.create_system = 3  # Unix
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = write(tmp_path, make_zip({"a.txt": b"ok", link: b"/etc/passwd"}))
    with pytest.raises(DownloadError, match="symbolic link"):
        safe_extract(archive, tmp_path / "out")
    assert tree(tmp_path) == ["archive.zip"]


def test_zip_bomb_and_size_limit(tmp_path):
    bomb = write(tmp_path, make_zip({"zeros.bin": bytes(20 * 2**20)}))  # 20 MiB → ~20 KiB
    assert bomb.stat().st_size < 2**20
    with pytest.raises(DownloadError, match="zip bomb"):
        safe_extract(bomb, tmp_path / "out")
    big = write(tmp_path, make_zip({"a.bin": b"x" * 3000}), name="big.zip")
    with pytest.raises(DownloadError, match="more than the limit of 1000"):
        safe_extract(big, tmp_path / "out", max_total_bytes=1000)
    assert tree(tmp_path) == ["archive.zip", "big.zip"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "crc"])
def test_corrupt_zip_leaves_nothing(tmp_path, damage):
    data = make_zip({"a.txt": b"A" * 1000, "b.txt": b"B" * 1000}, zipfile.ZIP_STORED)
    if damage == "garbage":
        data = b"this is not a zip file at all" * 10
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:  # flip a byte inside b.txt: a.txt extracts fine, then the CRC check fails
        index = data.index(b"B" * 1000) + 500
        data = data[:index] + b"C" + data[index + 1:]
    archive = write(tmp_path, data)
    with pytest.raises(DownloadError, match=r"corrupt.*download it again"):
        safe_extract(archive, tmp_path / "out")
    assert tree(tmp_path) == ["archive.zip"]


def test_extract_refuses_a_non_empty_destination(tmp_path):
    archive = write(tmp_path, KVASIR_ZIP)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(DownloadError, match="not empty"):
        safe_extract(archive, tmp_path / "out")
    assert tree(tmp_path / "out") == ["keep.txt"]


# ---------------------------------------------------------------- download_dataset


def test_download_dataset_kvasir_seg(server, tmp_path):
    server.routes["/kvasir-seg.zip"] = ("ok", KVASIR_ZIP)
    with pytest.warns(DataWarning, match="has 1 images, the registry expects 1000"):
        folder = download_dataset("kvasir-seg", tmp_path / "data",
                                  url=f"{server.base}/kvasir-seg.zip", sha256=sha(KVASIR_ZIP),
                                  progress=False)
    assert folder == tmp_path / "data" / "Kvasir-SEG"
    assert tree(tmp_path / "data") == [
        "Kvasir-SEG", "Kvasir-SEG/images", "Kvasir-SEG/images/cju0qkwl35piu0993l0dewei2.jpg",
        "Kvasir-SEG/kavsir_bboxes.json", "Kvasir-SEG/masks",
        "Kvasir-SEG/masks/cju0qkwl35piu0993l0dewei2.jpg"]  # no zip, no scratch folder
    assert download_dataset("kvasir-seg", tmp_path / "data", progress=False) == folder
    assert server.hits["/kvasir-seg.zip"] == 1  # already there: no second download


def test_download_dataset_finds_a_nested_test_set(server, tmp_path):
    server.routes["/TestDataset.zip"] = ("ok", make_zip({
        "TestDataset/Kvasir/images/1.png": b"i", "TestDataset/Kvasir/masks/1.png": b"m",
        "TestDataset/CVC-300/images/2.png": b"i", "TestDataset/CVC-300/masks/2.png": b"m"}))
    with pytest.warns(DataWarning):
        folder = download_dataset("CVC-300", tmp_path, url=f"{server.base}/TestDataset.zip",
                                  progress=False)
    assert folder == tmp_path / "TestDataset" / "CVC-300"
    assert tree(tmp_path) == ["TestDataset", "TestDataset/CVC-300",
                              "TestDataset/CVC-300/images", "TestDataset/CVC-300/images/2.png",
                              "TestDataset/CVC-300/masks", "TestDataset/CVC-300/masks/2.png"]


@pytest.mark.parametrize("route", ["truncated", "wrong-content", "bad-checksum"])
def test_download_dataset_failures_leave_the_root_clean(server, tmp_path, route):
    body = make_zip({"README.txt": b"no images here"}) if route == "wrong-content" \
        else KVASIR_ZIP
    server.routes["/k.zip"] = ("truncated" if route == "truncated" else "ok", body)
    checksum = "f" * 64 if route == "bad-checksum" else None
    with pytest.raises(DownloadError, match=r"127\.0\.0\.1"):
        download_dataset("kvasir-seg", tmp_path, url=f"{server.base}/k.zip", sha256=checksum,
                         progress=False)
    assert tree(tmp_path) == []


def test_download_dataset_without_direct_link_explains_the_manual_way(tmp_path):
    with pytest.raises(DownloadError, match=r"drive\.google\.com.*unzip it into"):
        download_dataset("CVC-ColonDB", tmp_path)
    with pytest.raises(DownloadError, match=r"unknown dataset 'kvasir'.*kvasir-seg"):
        download_dataset("kvasir", tmp_path)
    assert tree(tmp_path) == []


# ---------------------------------------------------------------- bounded disk use


@pytest.fixture
def umask():
    """Set the process umask for one test (restored afterwards)."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def test_download_stops_at_max_bytes_with_or_without_a_content_length(server, tmp_path):
    server.routes["/endless.zip"] = ("endless", b"x" * 65536)
    server.routes["/big.zip"] = ("ok", b"x" * 300_000)
    with pytest.raises(DownloadError, match=r"sent more than the limit of 100000 bytes.*"
                                            r"nothing was kept"):
        download_file(f"{server.base}/endless.zip", tmp_path / "a.zip", progress=False,
                      max_bytes=100_000)
    with pytest.raises(DownloadError, match=r"announces 300000 bytes, more than the limit of "
                                            r"100000"):
        download_file(f"{server.base}/big.zip", tmp_path / "b.zip", progress=False,
                      max_bytes=100_000)
    assert tree(tmp_path) == []
    assert download_file(f"{server.base}/big.zip", tmp_path / "b.zip", progress=False,
                         max_bytes=300_000).stat().st_size == 300_000


def test_every_registry_dataset_caps_its_download(server, tmp_path, monkeypatch):
    """A mirror link that streams without end stops at SIZE_MARGIN × the registry's size,
    for every dataset (here shrunk to 10 kB so that the test stays small)."""
    server.routes["/mirror.zip"] = ("endless", b"x" * 4096)
    assert all(info.archive_bytes > 0 for info in DATASETS.values())
    for name, info in DATASETS.items():
        monkeypatch.setitem(DATASETS, name, dataclasses.replace(info, archive_bytes=10_000))
        assert dataset_size_limit(name) == SIZE_MARGIN * 10_000
        with pytest.raises(DownloadError, match=rf"more than the limit of {SIZE_MARGIN * 10_000}"):
            download_dataset(name, tmp_path, url=f"{server.base}/mirror.zip", progress=False)
    assert tree(tmp_path) == []


def test_many_harmless_members_adding_up_are_a_zip_bomb(tmp_path):
    """Twelve members of 1 MiB of zeros: no single member is large, the archive inflates
    12 MiB from about 12 kB (the ratio over the whole archive)."""
    archive = write(tmp_path, make_zip({f"{i}.bin": bytes(2**20) for i in range(12)}))
    assert archive.stat().st_size < 2**16
    with pytest.raises(DownloadError, match=r"inflates \d+ bytes to 12582912 .*zip bomb"):
        safe_extract(archive, tmp_path / "out")
    assert tree(tmp_path) == ["archive.zip"]


def test_download_dataset_caps_the_unpacked_size(server, tmp_path):
    server.routes["/k.zip"] = ("ok", make_zip({"Kvasir-SEG/images/a.bin": bytes(40_000)}))
    with pytest.raises(DownloadError, match=r"would unpack to 40000 bytes, more than the limit "
                                            r"of 20000.*max_bytes above 20000"):
        download_dataset("kvasir-seg", tmp_path, url=f"{server.base}/k.zip", progress=False,
                         max_bytes=20_000)
    assert tree(tmp_path) == []


@pytest.mark.parametrize("route", ["not-a-zip", "missing", "dropped"])
def test_download_dataset_errors_name_the_url_not_the_deleted_archive(server, tmp_path, route):
    """The archive lived in a scratch folder that is gone when the error is shown: the message
    names the URL and says what to do, never "Delete it" or "save it as <scratch>"."""
    if route == "not-a-zip":
        server.routes["/k.zip"] = ("ok", b"<html>a web page about the dataset</html>")
    elif route == "dropped":
        server.routes["/k.zip"] = ("truncated", KVASIR_ZIP)
    url = f"{server.base}/k.zip"
    with pytest.raises(DownloadError) as caught:
        download_dataset("kvasir-seg", tmp_path / "data", url=url, progress=False)
    message = str(caught.value)
    assert url in message
    assert "archive.zip" not in message and ".download" not in message
    assert "Delete it" not in message
    assert "run the download again" in message if route == "not-a-zip" else "unzip it" in message
    assert tree(tmp_path / "data") == []


def test_downloaded_and_extracted_files_follow_the_umask(server, tmp_path, umask):
    server.routes["/k.zip"] = ("ok", KVASIR_ZIP)
    for mask, file_mode, dir_mode in ((0o022, 0o644, 0o755), (0o077, 0o600, 0o700)):
        umask(mask)
        out = tmp_path / oct(mask)
        archive = download_file(f"{server.base}/k.zip", out / "k.zip", progress=False)
        folder = safe_extract(archive, out / "unpacked")
        assert stat.S_IMODE(archive.stat().st_mode) == file_mode
        assert stat.S_IMODE(folder.stat().st_mode) == dir_mode
        image = folder / "Kvasir-SEG/images/cju0qkwl35piu0993l0dewei2.jpg"
        assert stat.S_IMODE(image.stat().st_mode) == file_mode
