"""Render the notebooks, executed at the CPU-lab scale, as HTML pages in docs/notebooks/.

    python scripts/render_notebooks.py                          # run (cpu-lab), then render
    python scripts/render_notebooks.py --executed build/notebooks-cpu-lab   # render only

Step 1 executes every notebook with ``scripts/run_notebooks.py --params cpu-lab`` (the
notebooks' own defaults: the lab scale, on CPU) into ``build/notebooks-cpu-lab``; step 2
converts each executed notebook to a self-contained HTML page (figures embedded, as JPEG
where that is smaller) with nbconvert, and writes ``docs/notebooks/index.md`` listing the
pages with the data and models used, the date and each notebook's execution time. Widgets
are not interactive in the pages; the notebooks' static figures stand in for them.

The pages are made to be read anywhere: widget outputs (the tqdm bars, which a static page
would show frozen at 0 %, and the explorer's controls) are left out; the machine's paths
become repository-relative ones (``build/...``, ``../shared/data``); and the equations are
converted to MathML with ``latex2mathml`` (browsers draw it natively), so no MathJax is
loaded from the network.

``make notebooks`` runs this script. A failing notebook stops the rendering (exit status 1).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import io
import platform
import re
import sys
from pathlib import Path

import nbformat
import run_notebooks  # the sibling script (scripts/ is on sys.path when run as a script)
from latex2mathml.converter import convert as latex_to_mathml
from nbconvert import HTMLExporter
from PIL import Image

from kdas_lite.config import encoder_pair

REPO = run_notebooks.REPO
DOCS = REPO / "docs" / "notebooks"


def shrink(nb: nbformat.NotebookNode, quality: int = 85) -> None:
    """Make the pages light enough for git: a PNG figure becomes a JPEG when that is smaller
    (image overlays: about 5× smaller; line plots stay PNG), and the saved widget state goes
    (the pages show the explorer's static figure)."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" not in data:
                continue
            png = base64.b64decode(data["image/png"])
            buffer = io.BytesIO()
            Image.open(io.BytesIO(png)).convert("RGB").save(buffer, "JPEG", quality=quality,
                                                            optimize=True)
            if buffer.tell() < len(png):
                del data["image/png"]
                data["image/jpeg"] = base64.b64encode(buffer.getvalue()).decode("ascii")
    nb.metadata.pop("widgets", None)


WIDGET = "application/vnd.jupyter.widget-view+json"
MATH = re.compile(r"\$\$(.+?)\$\$|\$([^$\n]+?)\$", re.S)
MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)


DATA_ROOTS = [REPO.parent / "shared" / "data"]
"""Real-data roots shown as ``../shared/data`` in the pages (``--data-root`` adds its own)."""


def machine_paths(text: str) -> str:
    """This machine's absolute paths as the repository-relative ones a reader can use (a data
    root anywhere on the machine becomes ``../shared/data``, where the repository expects it)."""
    for root in DATA_ROOTS:
        text = text.replace(str(root), "../shared/data")
    shared = str(REPO.parent / "shared")
    return text.replace(shared, "../shared").replace(str(REPO) + "/", "").replace(
        str(REPO), ".")


def mathml(markdown: str) -> str:
    """``$…$`` and ``$$…$$`` of a Markdown cell as inline / centred display MathML."""
    def one(match: re.Match[str]) -> str:
        display = match.group(1) is not None
        latex = " ".join((match.group(1) or match.group(2)).split())
        math = latex_to_mathml(latex, display="block" if display else "inline")
        if not display:
            return math
        return f'\n\n<div style="text-align:center;font-size:1.15em">{math}</div>\n\n'
    return MATH.sub(one, markdown)


def readable(nb: nbformat.NotebookNode) -> None:
    """Make a page readable offline and free of this machine: drop widget outputs (frozen
    progress bars), make paths repository-relative, convert the equations to MathML."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = mathml(cell.source)
            continue
        cell.source = machine_paths(cell.source)
        outputs = [o for o in cell.get("outputs", []) if WIDGET not in o.get("data", {})]
        for output in outputs:
            if "text" in output:
                output["text"] = machine_paths(output["text"])
            for kind, value in output.get("data", {}).items():
                if kind.startswith("text/") and isinstance(value, str):
                    output["data"][kind] = machine_paths(value)
        cell["outputs"] = outputs


def render(executed: Path, docs: Path, only: list[str] | None = None
           ) -> list[tuple[str, float | None, dict]]:
    """Convert the executed notebooks in ``executed`` to ``docs/<name>.html`` (``only``: those
    whose names start with one of these prefixes, e.g. ``["04"]``).

    Returns ``(name, seconds, parameters)`` per notebook, from papermill's metadata.
    """
    docs.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    rendered = []
    for source in run_notebooks.notebooks():
        if only and not source.name.startswith(tuple(only)):
            continue
        path = executed / source.name
        if not path.is_file():
            raise SystemExit(f"{path} not found: execute the notebooks first (omit --executed)")
        nb = nbformat.read(path, as_version=4)
        shrink(nb)
        run = nb.metadata.get("papermill", {})
        parameters = {k: machine_paths(v) if isinstance(v, str) else v
                      for k, v in run.get("parameters", {}).items()}
        nb.metadata.pop("papermill", None)  # its input/output paths are this machine's
        readable(nb)
        html, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
        (docs / f"{path.stem}.html").write_text(MATHJAX.sub("", html), encoding="utf-8")
        rendered.append((path.stem, run.get("duration"), parameters))
        print(f"{docs / path.stem}.html", flush=True)
    return rendered


def index_row(stem: str, seconds: float | None) -> str:
    """The index's row of one page: its link and the execution time of the rendered copy."""
    took = "—" if seconds is None else f"{seconds / 60:.1f} min"
    return f"| [{stem}]({stem}.html) | {took} |"


def write_index(docs: Path, rendered: list[tuple[str, float | None, dict]]) -> Path:
    """``docs/index.md``: one line per page, with how and when it was produced."""
    today = datetime.date.today().isoformat()
    parameters = rendered[0][2]
    data = ("the SYNTHETIC stand-in dataset" if parameters.get("use_synthetic")
            else f"the real datasets ({parameters.get('data_root') or 'found automatically'})")
    overrides = ", ".join(f"`{k} = {v!r}`" for k, v in parameters.items()
                          if k not in ("run_root", "use_synthetic", "data_root"))
    pair = encoder_pair(parameters.get("encoders"), parameters.get("pretrained"))
    models = (f"teacher `{pair['teacher_encoder']}`, student `{pair['student_encoder']}`, "
              + ("ImageNet-pretrained" if pair["pretrained"] else "random initialisation"))
    lines = [
        "# The notebooks, executed",
        "",
        f"Executed on {today} on a {platform.machine()} machine with {data} and the notebooks' "
        f"default parameters (the CPU-lab scale){', except ' + overrides if overrides else ''}; "
        "rendered by `scripts/render_notebooks.py` (`make notebooks`). The attention explorer "
        f"is interactive only in Jupyter; each page shows its static figure instead. Models: "
        f"{models} (what `encoders = None` chooses on this machine). A notebook that found "
        "its runs already trained (`resume = True`, e.g. when re-executed after a text change) "
        "only evaluates them, so its time below can be far shorter than a first run's.",
        "",
        "| notebook | execution time of the rendered copy |",
        "| --- | ---: |",
    ]
    lines += [index_row(stem, seconds) for stem, seconds, _ in rendered]
    path = docs / "index.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def update_index(docs: Path, rendered: list[tuple[str, float | None, dict]]) -> Path:
    """Replace the rows of the re-rendered pages in an existing ``docs/index.md`` (the other
    pages keep theirs); without an index, write a whole one."""
    path = docs / "index.md"
    if not path.is_file():
        return write_index(docs, rendered)
    lines = path.read_text(encoding="utf-8").splitlines()
    for stem, seconds, _ in rendered:
        row = index_row(stem, seconds)
        at = [i for i, line in enumerate(lines) if line.startswith(f"| [{stem}](")]
        if at:
            lines[at[0]] = row
        else:
            lines.append(row)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executed", type=Path, default=None,
                        help="render these executed notebooks instead of running them")
    parser.add_argument("--output", type=Path, default=DOCS,
                        help="folder for the HTML pages (default: docs/notebooks)")
    parser.add_argument("--data", choices=("auto", "synthetic", "real"), default="auto",
                        help="dataset for the run (see run_notebooks.py)")
    parser.add_argument("--data-root", type=Path, default=run_notebooks.SHARED_DATA,
                        help="where the real datasets are (default: ../shared/data)")
    parser.add_argument("--only", nargs="+", metavar="NN",
                        help="render only these notebooks (e.g. 04) and update their rows of "
                        "the existing index; with --executed")
    args = parser.parse_args(argv)
    if args.only and args.executed is None:
        parser.error("--only renders already executed notebooks: give --executed")
    DATA_ROOTS.insert(0, args.data_root.resolve())

    executed = args.executed
    if executed is None:
        executed = REPO / "build" / "notebooks-cpu-lab"
        status = run_notebooks.main(["--params", "cpu-lab", "--output", str(executed),
                                     "--data", args.data, "--data-root", str(args.data_root)])
        if status:
            return status
    rendered = render(executed.resolve(), args.output, args.only)
    print(update_index(args.output, rendered) if args.only else write_index(args.output, rendered))
    return 0


if __name__ == "__main__":
    sys.exit(main())
