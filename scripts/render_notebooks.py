"""One command renders the course: every notebook executed in order in one run, then all pages.

    python scripts/render_notebooks.py            # make notebooks: cpu-lab, real data -> docs/
    python scripts/render_notebooks.py --smoke    # smoke size: <run>/pages, docs/ untouched
    python scripts/render_notebooks.py --rerender build/course/<run id>   # all pages of that run

Step 1 makes the run folder (``--run``; default ``build/course/<run id>``), which must be empty
or absent (a non-empty one is refused, nothing deleted), and executes every numbered notebook
(01 → 05, and any further one, e.g. 06) in order with ``scripts/run_notebooks.py`` at the
``cpu-lab`` parameters (the notebooks' own defaults: the lab scale, on CPU; ``--smoke``: the
smoke ones), in this one environment, on the real data when found:

    <run>/run.json        the run id, parameters, git HEAD (and whether the tree was dirty), date
    <run>/executed/       the executed notebooks
    <run>/runs/           the run folder the notebooks share (checkpoints, tables), and
    <run>/runs/facts.json the facts the pages state about each checkpoint (kdas_lite.facts)

The run id (:func:`run_notebooks.new_run_id`: UTC date, git HEAD's short hash, a random part)
reaches every kernel as ``KDAS_RUN_ID``; each notebook's setup cell prints it, so all pages of a
run show the same id. Step 2 converts all executed notebooks, together, to self-contained HTML
pages (figures embedded, as JPEG where that is smaller; exercise solutions collapsed in
``<details>``, as in Jupyter), writes ``index.md`` (the run id, each notebook's execution time
in this first run and the total, and which runs a notebook reused) and copies the facts file as
``facts.json`` beside them: ``docs/notebooks/`` for a ``cpu-lab`` run, ``<run>/pages/`` for a
smoke one. There is no way to render some pages from one run and others from another:
``--rerender`` renders all pages of one complete run again (e.g. after a change to this script).

The pages are made to be read anywhere: widget outputs (the tqdm bars, which a static page
would show frozen at 0 %, and the explorer's controls) are left out; the machine's paths
become repository-relative ones (``build/...``, ``../shared/data``); and the equations are
converted to MathML with ``latex2mathml`` (browsers draw it natively), so no MathJax is
loaded from the network.

``make notebooks`` runs this script. Exit status: 1 when a notebook fails (nothing rendered) or
when two pages state different values for one checkpoint (rendered, the disagreements listed),
2 for a refused run folder or bad arguments.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import io
import json
import platform
import re
import sys
from importlib.metadata import version
from pathlib import Path

import jinja2
import nbformat
import run_notebooks  # the sibling script (scripts/ is on sys.path when run as a script)
from latex2mathml.converter import convert as latex_to_mathml
from nbconvert import HTMLExporter
from PIL import Image

from kdas_lite.config import encoder_pair
from kdas_lite.facts import disagreements, load_facts, page_run_ids

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


SOLUTIONS = jinja2.DictLoader({"kdas_lab.html.j2": """{%- extends 'index.html.j2' -%}
{% block codecell %}
{%- if 'solution' in cell.metadata.get('tags', []) -%}
<details class="kdas-solution"><summary>Solution (click to show)</summary>
{{ super() }}
</details>
{%- else -%}
{{ super() }}
{%- endif -%}
{% endblock codecell %}
"""})
"""The lab template with each solution cell (tag ``solution``) collapsed in ``<details>``."""


def exporter() -> HTMLExporter:
    """nbconvert's lab HTML exporter, solutions collapsed (:data:`SOLUTIONS`)."""
    return HTMLExporter(template_name="lab", template_file="kdas_lab.html.j2",
                        extra_loaders=[SOLUTIONS])


def printed_run_ids(nb: nbformat.NotebookNode) -> set[str]:
    """The run ids an executed notebook's outputs print (its setup cell: one)."""
    texts = [o.get("text", "") for c in nb.cells for o in c.get("outputs", [])]
    return set().union(*(page_run_ids(t) for t in texts))


def render(run: Path, docs: Path) -> list[tuple[str, float | None, dict]]:
    """Convert every executed notebook of ``run`` (``<run>/executed/``) to
    ``<docs>/<name>.html``: all of them or none (a missing notebook, or one that does not
    print the run's id, stops it before a page is written).

    Returns ``(name, seconds, parameters)`` per notebook, from papermill's metadata.
    """
    run_id = json.loads((run / "run.json").read_text(encoding="utf-8"))["run_id"]
    executed = {}
    for source in run_notebooks.notebooks():
        path = run / "executed" / source.name
        if not path.is_file():
            raise SystemExit(f"{path} not found: the run is incomplete; render a complete run "
                             "(run the command again without --rerender)")
        nb = nbformat.read(path, as_version=4)
        if printed_run_ids(nb) != {run_id}:
            raise SystemExit(f"{path} prints run id(s) {sorted(printed_run_ids(nb))}, not "
                             f"{run_id}: it is not this run's notebook")
        executed[path] = nb
    docs.mkdir(parents=True, exist_ok=True)
    html_exporter = exporter()
    rendered = []
    for path, nb in executed.items():
        shrink(nb)
        papermill = nb.metadata.get("papermill", {})
        parameters = {k: machine_paths(v) if isinstance(v, str) else v
                      for k, v in papermill.get("parameters", {}).items()}
        nb.metadata.pop("papermill", None)  # its input/output paths are this machine's
        readable(nb)
        html, _ = html_exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
        (docs / f"{path.stem}.html").write_text(MATHJAX.sub("", html), encoding="utf-8")
        rendered.append((path.stem, papermill.get("duration"), parameters))
        print(f"{docs / path.stem}.html", flush=True)
    return rendered


def reuse_notes(facts: dict) -> dict[str, str]:
    """Notebook number → what it reused, from the facts file's run records: ``"reuses
    kdas/student (trained by 02 in this run)"``; a run reused that no notebook of this run
    trained is said to be from before this run."""
    runs = facts.get("notebooks", {})
    trained_by = {r["run"]: nb for nb, entry in sorted(runs.items()) for r in entry["runs"]
                  if r["trained_epochs"] > 0}
    notes = {}
    for nb, entry in runs.items():
        reused = sorted({r["run"] for r in entry["runs"] if r["trained_epochs"] == 0})
        if reused:
            notes[nb] = "reuses " + ", ".join(
                f"{name} (trained by {trained_by[name]} in this run: its time is there)"
                if name in trained_by else f"{name} (from before this run: not a lab time)"
                for name in reused)
    return notes


def index_lines(run_info: dict, rendered: list[tuple[str, float | None, dict]],
                facts: dict) -> list[str]:
    """``index.md``: the run id, how the run was made, each page's first-run time, the total."""
    parameters = rendered[0][2]
    data = ("the SYNTHETIC stand-in dataset" if parameters.get("use_synthetic")
            else f"the real datasets ({parameters.get('data_root') or 'found automatically'})")
    overrides = ", ".join(f"`{k} = {v!r}`" for k, v in parameters.items()
                          if k not in ("run_root", "use_synthetic", "data_root"))
    pair = encoder_pair(parameters.get("encoders"), parameters.get("pretrained"))
    models = (f"teacher `{pair['teacher_encoder']}`, student `{pair['student_encoder']}`, "
              + ("ImageNet-pretrained" if pair["pretrained"] else "random initialisation"))
    git = run_info["git"]
    notes = reuse_notes(facts)
    lines = [
        "# The notebooks, executed",
        "",
        f"**Run id `{run_info['run_id']}`**: every page below shows it in its setup cell. All "
        f"pages come from this one run, executed from an empty folder on "
        f"{run_info['date']} (UTC) on a {run_info['machine']} machine in one environment "
        f"({run_info.get('environment', 'not recorded')}), at git commit "
        f"`{git['head']}`{' with uncommitted changes' if git['dirty'] else ''}, with {data} and "
        f"the `{run_info['params']}` parameters (the notebooks' defaults"
        f"{', except ' + overrides if overrides else ''}); rendered by "
        "`scripts/render_notebooks.py` (`make notebooks`). Models: "
        f"{models} (what `encoders = None` chooses on this machine). The attention explorer "
        "is interactive only in Jupyter; each page shows its static figure instead. "
        "[facts.json](facts.json) lists what the pages state about each checkpoint.",
        "",
        "Times are of this first run, in order 01 → last; a notebook that reused a run "
        "another notebook trained says so (that training time is in the other's row).",
        "",
        "| notebook | execution time, first run | note |",
        "| --- | ---: | --- |",
    ]
    total, lab = 0.0, True
    for stem, seconds, _ in rendered:
        note = notes.get(stem[:2], "")
        lab = lab and seconds is not None and "not a lab time" not in note
        total += seconds or 0.0
        took = "—" if seconds is None else f"{seconds / 60:.1f} min"
        lines.append(f"| [{stem}]({stem}.html) | {took} | {note} |")
    lines.append(f"| **total** | **{total / 60:.1f} min** | "
                 + ("the lab's time, 01 → last in order |" if lab else
                    "not a lab time: a notebook reused runs from before this run |"))
    return lines


def publish(run: Path, docs: Path) -> int:
    """Render all pages of ``run`` into ``docs`` with ``index.md`` and ``facts.json``; 1 when
    the pages disagree about a checkpoint (listed), else 0."""
    run_info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    facts = load_facts(run / "runs" / "facts.json")
    if facts.get("run_id") != run_info["run_id"]:
        raise SystemExit(f"{run / 'runs' / 'facts.json'} is of run {facts.get('run_id')}, not "
                         f"{run_info['run_id']}")
    rendered = render(run, docs)
    (docs / "index.md").write_text("\n".join(index_lines(run_info, rendered, facts)) + "\n",
                                   encoding="utf-8")
    (docs / "facts.json").write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n",
                                     encoding="utf-8")
    print(docs / "index.md", docs / "facts.json", sep="\n")
    disagree = disagreements(facts)
    for line in disagree:
        print(f"PAGES DISAGREE: {line}", file=sys.stderr)
    return 1 if disagree else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=None,
                        help="the run folder, empty or absent (default: build/course/<run id>)")
    parser.add_argument("--smoke", action="store_true",
                        help="smoke parameters (CI, tests); the pages go to <run>/pages")
    parser.add_argument("--rerender", type=Path, default=None, metavar="RUN",
                        help="render all pages of this complete run folder again (no run)")
    parser.add_argument("--data", choices=("auto", "synthetic", "real"), default="auto",
                        help="dataset for the run (see run_notebooks.py)")
    parser.add_argument("--data-root", type=Path, default=run_notebooks.SHARED_DATA,
                        help="where the real datasets are (default: ../shared/data)")
    args = parser.parse_args(argv)
    DATA_ROOTS.insert(0, args.data_root.resolve())
    if args.rerender is not None:
        if args.run is not None or args.smoke:
            parser.error("--rerender renders a finished run: no --run or --smoke")
        run = args.rerender.resolve()
        params = json.loads((run / "run.json").read_text(encoding="utf-8"))["params"]
        return publish(run, DOCS if params == "cpu-lab" else run / "pages")

    run_id = run_notebooks.new_run_id()
    run = (args.run or REPO / "build" / "course" / run_id).resolve()
    if run.exists() and (not run.is_dir() or any(run.iterdir())):
        print(f"{run} is not empty: the course renders into an empty folder; pass --run "
              "NEW_FOLDER (nothing was deleted)", file=sys.stderr)
        return 2
    params = "smoke" if args.smoke else "cpu-lab"
    head, dirty = run_notebooks.git_state()
    run.mkdir(parents=True, exist_ok=True)
    (run / "run.json").write_text(json.dumps({
        "run_id": run_id, "params": params, "git": {"head": head, "dirty": dirty},
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "machine": platform.machine(),
        "environment": f"Python {platform.python_version()}, torch {version('torch')}"},
        indent=1) + "\n", encoding="utf-8")
    status = run_notebooks.main(["--params", params, "--output", str(run / "executed"),
                                 "--runs", str(run / "runs"), "--run-id", run_id,
                                 "--data", args.data, "--data-root", str(args.data_root)])
    if status:
        print(f"a notebook failed: nothing rendered (the executed notebooks: {run / 'executed'})",
              file=sys.stderr)
        return status
    return publish(run, DOCS if params == "cpu-lab" else run / "pages")


if __name__ == "__main__":
    sys.exit(main())
