"""Shared pytest settings (headless matplotlib, torch on few threads) and fixtures."""

from __future__ import annotations

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True, scope="session")
def _cache_in_a_temporary_folder(tmp_path_factory):
    """Decode caches (evaluation caches test sets by default) go to a temporary folder, never
    to the user's ~/.cache; subprocesses inherit it."""
    patch = pytest.MonkeyPatch()
    patch.setenv("KDAS_CACHE", str(tmp_path_factory.mktemp("kdas-cache")))
    yield
    patch.undo()


@pytest.fixture
def file_server(tmp_path_factory, monkeypatch):
    """Serve a fresh folder over HTTP on 127.0.0.1: yields ``(folder, base_url)``."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # never route loopback via a proxy
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    folder = tmp_path_factory.mktemp("served")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def no_local_data(tmp_path, monkeypatch):
    """A fresh working directory with no KDAS_DATA and no shared folder."""
    from kdas_lite.data import registry

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KDAS_DATA", raising=False)
    monkeypatch.setattr(registry, "find_shared_data", lambda: None)
    return tmp_path
