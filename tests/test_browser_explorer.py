"""The attention explorer in a real browser: JupyterLab + headless Chromium.

Notebook 02 is parameterised at smoke size (as ``scripts/run_notebooks.py`` does for CI), opened
in a JupyterLab server started here on 127.0.0.1 and run there with "Run All Cells", as a
student would. Then two controls of :class:`kdas_lite.viz.AttentionExplorer` are changed with
browser input (pick the second image in the dropdown, click the "difference" source button):
each must come back from the kernel as a different figure, and no widget error ("Error
displaying widget", "Model not found"), error output or console error may appear. This covers
what the Python-side tests of the explorer cannot: the ipywidgets front end, the comm round
trip and the rendering of the PNG in the page.

Needs Chromium from the system's packages (Debian: ``apt-get install chromium``; Playwright's
own browser download is not used) and Playwright for Python (the ``dev`` extra); skipped with
the reason otherwise. About 2 minutes on a 2-core CPU, mostly the notebook's tiny training.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "02_attention_visualization.ipynb"
# Debian's package installs /usr/bin/chromium; KDAS_CHROMIUM points at another build.
CHROMIUM = os.environ.get("KDAS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Headless, and quiet on a closed network (no sync, updates or background fetches).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WIDGET_ERRORS = ("Error displaying widget", "Model not found", "Failed to load model class")
SERVER_START_S = 120  # JupyterLab's first start on a busy 2-core machine
RUN_ALL_S = 900  # the whole notebook, including the tiny teacher and student it trains
REDRAW_S = 120  # one explorer update: maps of a new image, then a PNG through the comm


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).is_file():
        return (f"no Chromium at {CHROMIUM}: install the system's package "
                "(Debian: apt-get install chromium) or set KDAS_CHROMIUM")
    for module in ("playwright", "jupyterlab", "papermill", "jupyterlab_widgets"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[dev]')"
    return None


SKIP = _skip_reason()
pytestmark.append(pytest.mark.skipif(SKIP is not None, reason=str(SKIP)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare_notebook(folder: Path) -> Path:
    """Notebook 02 with the CI smoke parameters, its run folder inside ``folder``."""
    import papermill as pm

    spec = importlib.util.spec_from_file_location("run_notebooks",
                                                  ROOT / "scripts" / "run_notebooks.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    values = script.parameters("smoke", "auto", folder / "runs")
    declared = pm.inspect_notebook(str(NOTEBOOK))
    target = folder / NOTEBOOK.name
    pm.execute_notebook(str(NOTEBOOK), str(target), kernel_name="python3", prepare_only=True,
                        parameters={k: v for k, v in values.items() if k in declared},
                        progress_bar=False)
    return target


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A private JupyterLab on 127.0.0.1 serving a folder with the prepared notebook.

    Yields the notebook's URL (token included) and the server's log file.
    """
    home = tmp_path_factory.mktemp("lab")
    notebooks = home / "notebooks"
    notebooks.mkdir()
    notebook = _prepare_notebook(notebooks)
    config = home / "config"
    # every cell attached to the page (the default windowing leaves off-screen cells out)
    settings = config / "lab" / "user-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    # window.jupyterapp for the test; no news, update checks or PyPI (a closed network)
    (config / "jupyter_lab_config.json").write_text(json.dumps({"LabApp": {
        "expose_app_in_browser": True, "news_url": None, "extension_manager": "readonly",
        "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate"}}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_PLATFORM_DIRS": "1", "IPYTHONDIR": str(home / "ipython"),
           # inline PNG figures, as in any Jupyter (CI exports MPLBACKEND=Agg for pytest)
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    port, token = _free_port(), "kdas-browser-test"
    log = home / "jupyterlab.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
             f"--port={port}", "--port-retries=0", f"--ServerApp.root_dir={notebooks}",
             f"--IdentityProvider.token={token}", "--allow-root"],  # CI runs as root
            cwd=notebooks, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()}")
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab not answering after {SERVER_START_S} s:\n"
                                f"{log.read_text()}")
                time.sleep(1)
        yield f"{base}/lab/tree/{notebook.name}?token={token}", log
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# JavaScript run in the page. `window.jupyterapp` exists because of expose_app_in_browser.
_PANEL = """() => {
    const app = window.jupyterapp;
    if (!app) return null;
    for (const w of app.shell.widgets('main')) {
        if (w.content && w.content.model && w.sessionContext) return w;
    }
    return null;
}"""
_KERNEL_READY = f"""() => {{
    const panel = ({_PANEL})();
    if (!panel || !panel.context.isReady || !panel.sessionContext.isReady) return false;
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    return !!kernel && kernel.status === 'idle';
}}"""
_RUN_ALL = f"""() => {{
    const panel = ({_PANEL})();
    window.jupyterapp.shell.activateById(panel.id);
    window.__kdasRunAll = undefined;
    window.jupyterapp.commands.execute('notebook:run-all-cells')
        .then(ok => {{ window.__kdasRunAll = ok ? 'ok' : 'stopped'; }},
              err => {{ window.__kdasRunAll = 'failed: ' + err; }});
}}"""
_CELLS = f"""() => {{
    const panel = ({_PANEL})();
    const cells = [];
    for (let i = 0; i < panel.content.model.cells.length; i++) {{
        const cell = panel.content.model.cells.get(i);
        if (cell.type !== 'code') continue;
        cells.push({{index: i, count: cell.executionCount, outputs: cell.outputs.toJSON()}});
    }}
    return cells;
}}"""
# SHA-256 of the PNG the explorer's <img> shows (a blob: URL), once the browser decoded it
_FIGURE = """async () => {
    const img = document.querySelector('img.widget-image');
    if (!img || !img.src || !img.complete || img.naturalWidth === 0) return null;
    const data = await (await fetch(img.src)).arrayBuffer();
    const digest = await crypto.subtle.digest('SHA-256', data);
    return Array.from(new Uint8Array(digest), b => b.toString(16).padStart(2, '0')).join('');
}"""


def _wait_for(page: Any, script: str, seconds: float, what: str, until: Any = bool,
              log: Path | None = None) -> Any:
    """Poll ``script`` in the page until ``until(value)``; fail with ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = page.evaluate(script)
        if until(value):
            return value
        if time.monotonic() > deadline:
            detail = f"\nJupyterLab log:\n{log.read_text()[-4000:]}" if log else ""
            pytest.fail(f"{what} (still {value!r} after {seconds:.0f} s){detail}")
        page.wait_for_timeout(500)


def _error_outputs(cells: list[dict[str, Any]]) -> list[str]:
    return [f"cell {c['index']}: {o.get('ename')}: {o.get('evalue')}"
            for c in cells for o in c["outputs"] if o.get("output_type") == "error"]


def _widget_errors(page: Any) -> list[str]:
    text = page.inner_text("body")
    return [message for message in WIDGET_ERRORS if message in text]


def test_notebook_02_explorer_redraws_when_controls_change_in_chromium(
        lab: tuple[str, Path], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, log = lab
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        try:
            page = browser.new_page()
            # uncaught exceptions and console errors (the widget manager logs failed views
            # there), except resources the closed network cannot fetch (the Colab badge)
            page_errors: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            page.on("console", lambda m: page_errors.append(m.text) if m.type == "error"
                    and not m.text.startswith("Failed to load resource") else None)
            page.goto(url, timeout=SERVER_START_S * 1000)
            _wait_for(page, _KERNEL_READY, SERVER_START_S, "the notebook's kernel is not idle",
                      log=log)

            page.evaluate(_RUN_ALL)
            status = _wait_for(page, "() => window.__kdasRunAll", RUN_ALL_S,
                               "'Run all cells' did not finish", log=log)
            cells = page.evaluate(_CELLS)
            assert status == "ok", f"run all cells: {status}; errors: {_error_outputs(cells)}"
            assert not _error_outputs(cells)
            assert all(c["count"] for c in cells), "a code cell was not executed"

            explorer = page.locator(".jp-OutputArea-output .widget-vbox").filter(
                has=page.locator("img.widget-image"))
            explorer.scroll_into_view_if_needed()
            first = _wait_for(page, _FIGURE, REDRAW_S, "the explorer's figure is not shown")
            assert not _widget_errors(page), _widget_errors(page)

            # control 1: the image dropdown (labelled "image") -> the second image's maps
            image = explorer.locator(".widget-dropdown").filter(
                has=page.get_by_text("image", exact=True)).locator("select")
            options = image.locator("option").all_inner_texts()
            assert len(options) >= 2, f"the image dropdown offers {options}"
            image.select_option(index=1)
            second = _wait_for(page, _FIGURE, REDRAW_S,
                               "the figure did not change after picking another image",
                               until=lambda h: h is not None and h != first)
            info = explorer.locator(".widget-html").inner_text()
            assert info.startswith(f"{options[1]} ·"), info  # the caption names the new image

            # control 2: the source toggle buttons -> teacher − student difference
            source = explorer.locator(".widget-toggle-buttons button", has_text="difference")
            source.click()
            _wait_for(page, _FIGURE, REDRAW_S,
                      "the figure did not change after choosing the difference source",
                      until=lambda h: h is not None and h not in (first, second))
            assert "mod-active" in (source.get_attribute("class") or "")

            assert not _widget_errors(page), _widget_errors(page)
            assert not _error_outputs(page.evaluate(_CELLS))
            assert not page_errors, page_errors
        finally:
            browser.close()
