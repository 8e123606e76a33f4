"""The notebooks teach without contradicting their own outputs, and their pages are clean.

- **Drift check.** A number about this package's own runs is produced by code (a Markdown cell
  rendered from the run's table or history), never typed into a notebook's Markdown: a
  Markdown cell may hold a decimal number or a duration ("9 min", "3 minutes") only when it
  is a published figure of :data:`PUBLISHED`, each with its source.
- **Drift check of the docs.** The same rule for ``README.md``, ``notebooks/README.md`` and
  ``docs/*.md`` (:data:`DOCS`), outside generated blocks: a generated block is the text between
  ``<!-- NAME: begin (written by SCRIPT) -->`` and ``<!-- NAME: end -->``, SCRIPT an existing
  file of the repository that rewrites it from a JSON or the notebooks (as
  ``experiments/real_lab.py`` does for docs/RESULTS.md). Outside them, and outside code,
  equations, link targets and HTML comments, the prose may state integers (settings and
  counts: px, epochs, batch, images, seeds are design), version numbers (Python 3.10, compute
  capability 8.0, arXiv 2312.08555: :data:`VERSION`), published figures (:data:`PUBLISHED`,
  cited) and design values (:data:`DESIGN`, each with what it sets), and no other decimal
  number and no duration: those are numbers about our runs.
- **Exercises.** Every notebook has 2–4 "Exercise N" cells, each followed by its worked
  solution: a code cell, collapsed in Jupyter, that CI executes at smoke size with the rest of
  the notebook (``scripts/run_notebooks.py``); a "Prerequisites" line at the top and a "Key
  takeaways" cell at the end.
- **Clean pages.** No warning or traceback in a rendered page; no absolute machine path in
  ``docs/``, ``notebooks/`` or the results JSON.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))

PUBLISHED: dict[str, str] = {
    # the KDAS paper (Trinh, Nguyen & Vo Thi, ICME 2024): its hyper-parameters (Eq. 6) ...
    "0.3": "KDAS paper, Eq. 6 and the public train_kd_paper.py: alpha = 0.3",
    # ... and its Table of mDice (kdas_lite.evaluate.PAPER_RESULTS)
    "0.917": "KDAS paper: Polyp-PVT teacher, Kvasir mDice",
    "0.913": "KDAS paper: KDAS student, Kvasir mDice",
    # the public code's multi-scale training rates (train_kd_paper.py, size_rates)
    "0.75": "train_kd_paper.py: size_rates = [0.75, 1, 1.25]",
    "1.25": "train_kd_paper.py: size_rates = [0.75, 1, 1.25]",
    # PVTv2 parameter counts as published (Wang et al., PVTv2, 2022, Table 1)
    "25.4": "PVTv2 paper, Table 1: PVTv2-b2 has 25.4 M parameters",
    "3.7": "PVTv2 paper, Table 1: PVTv2-b0 has 3.7 M parameters",
}
"""The decimal numbers a notebook's Markdown may state: published figures, with their source."""

DESIGN: dict[str, str] = {
    "0.5": "the public code's gradient clip (clip_gradient, ±0.5)",
    "0.1": "Polyp-PVT's learning-rate decay factor (adjust_lr, decay_rate = 0.1)",
    "127.5": "kdas_lite.data.read_mask's binarisation threshold (grey levels)",
    "90 minutes": "the length of the lab the course is planned for",
    # the statistics rules of docs/RESULTS.md (kdas_lite.lab_stats): settings, not results
    "0.05": "the significance level the Holm-adjusted p-values are read at",
    "0.020": "the equivalence margin of the TOST (2 mDice points)",
    "0.7": "the (1 - alpha) control's loss scale, seg_weight = 1 - 0.3",
}
"""Design values the docs may state (settings, not results), each with what it sets."""

DOCS = [REPO / "README.md", NOTEBOOK_DIR / "README.md", *sorted((REPO / "docs").glob("*.md"))]
GENERATED = re.compile(r"<!-- ([\w-]+): begin \(written by ([^)\s]+)[^)]*\) -->.*?"
                       r"<!-- \1: end -->", re.S)
VERSION = re.compile(r"(?:Python|PyTorch|torch|arXiv|capability|version)[\s*≥>=<]*"
                     r"\d+\.\d+(?:\.\d+)?")

DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
DURATION = re.compile(r"\b\d+(?:[.,]\d+)?\s*(?:–\s*\d+\s*)?(?:min|minutes?|s|seconds?|h|hours?)\b")
EXERCISE = re.compile(r"^#+\s*Exercise (\d+)\b", re.M)
SOLUTION = re.compile(r"^# Solution to exercise (\d+)\b")


def _load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def _prose(cell: nbformat.NotebookNode) -> str:
    """A Markdown cell without its code spans, code blocks, equations and links: what the
    reader takes as a statement (``1e-4`` in a code span is a setting, not a claim)."""
    text = re.sub(r"```.*?```", " ", cell.source, flags=re.S)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\$\$.*?\$\$|\$[^$]*\$", " ", text, flags=re.S)
    return re.sub(r"\]\([^)]*\)", "]", text)


def drift(source: str) -> list[str]:
    """The decimal numbers and durations of ``source`` (Markdown prose) that are not published
    figures of :data:`PUBLISHED`."""
    found = [m for m in DECIMAL.findall(source) if m not in PUBLISHED]
    return found + DURATION.findall(source)


def test_the_drift_check_catches_typed_numbers_and_spares_published_ones() -> None:
    assert drift("the student gains 0.010 ± 0.006 on Kvasir") == ["0.010", "0.006"]
    assert drift("two to three minutes each, 3.1 min measured") == ["3.1", "3.1 min"]
    assert drift("about 9 minutes on a CPU") == ["9 minutes"]
    assert drift("α = 0.3 (paper), Kvasir 0.917 published; 352 px, 100 epochs, Eq. 6") == []


@pytest.mark.parametrize("name", NAMES)
def test_markdown_states_no_hand_typed_number_about_our_runs(name: str) -> None:
    typed = {cell.id: drift(_prose(cell)) for cell in _load(name).cells
             if cell.cell_type == "markdown"}
    typed = {cell: found for cell, found in typed.items() if found}
    assert not typed, (f"{name}: numbers about our runs belong in generated Markdown (or, if "
                       f"published, in PUBLISHED with their source): {typed}")


def doc_drift(text: str) -> dict[int, list[str]]:
    """Line number → the numbers about our runs that a doc states outside generated blocks
    (the rule in the module docstring)."""
    def blank(match: re.Match[str]) -> str:  # keep the line numbers
        return "\n" * match.group(0).count("\n")
    text = GENERATED.sub(blank, text)
    text = re.sub(r"```.*?```|<!--.*?-->|\$\$.*?\$\$", blank, text, flags=re.S)
    text = VERSION.sub(" ", re.sub(r"`[^`\n]*`|\$[^$\n]*\$", " ", text))
    text = re.sub(r"\]\([^)]*\)", "]", text)
    found = {}
    for number, line in enumerate(text.splitlines(), 1):
        hits = [hit for hit in drift(line) if hit not in DESIGN]
        if hits:
            found[number] = hits
    return found


def test_the_doc_drift_check_spares_blocks_versions_and_design_only() -> None:
    doc = ("Python ≥ 3.10, compute capability 8.0, [arXiv 2312.08555](x), clip 0.5, 352 px,\n"
           "`lr 1e-4`, 3 seeds, 100 epochs, published 0.917 (KDAS paper), a 90 minutes lab.\n"
           "<!-- t: begin (written by scripts/notebook_readme.py) -->\nKDAS 0.594, 6 min\n"
           "<!-- t: end -->\nthe teacher reached 0.822 in 16.1 min; +0.010 ± 0.006\n")
    assert doc_drift(doc) == {6: ["0.822", "16.1", "0.010", "0.006", "16.1 min"]}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_docs_state_numbers_about_our_runs_only_in_generated_blocks(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for match in GENERATED.finditer(text):
        assert (REPO / match.group(2)).is_file(), (
            f"{path.name}: block {match.group(1)} names a script that does not exist: "
            f"{match.group(2)}")
    found = doc_drift(text)
    assert not found, (f"{path.relative_to(REPO)}: numbers about our runs outside generated "
                       f"blocks (line: numbers): {found}")


def test_the_notebook_readme_blocks_are_up_to_date(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    blocks = importlib.import_module("notebook_readme")
    assert blocks.main(["--check"]) == 0, "run python scripts/notebook_readme.py"


@pytest.mark.parametrize("name", NAMES)
def test_exercises_each_with_a_collapsed_runnable_solution(name: str) -> None:
    cells = _load(name).cells
    numbers = []
    for i, cell in enumerate(cells):
        heading = EXERCISE.search(cell.source) if cell.cell_type == "markdown" else None
        if heading is None:
            continue
        number = int(heading.group(1))
        numbers.append(number)
        solution = next((c for c in cells[i + 1:] if c.cell_type == "code"), None)
        assert solution is not None and SOLUTION.match(solution.source), (
            f"{name}: exercise {number} needs a code cell '# Solution to exercise {number}'")
        assert int(SOLUTION.match(solution.source).group(1)) == number
        assert solution.metadata.get("jupyter", {}).get("source_hidden") is True, (
            f"{name}: the solution of exercise {number} is collapsed")
        assert "solution" in solution.metadata.get("tags", [])
        ast.parse(solution.source)  # runnable Python (CI executes it with the notebook)
        assert "raise NotImplementedError" not in solution.source
    assert 2 <= len(numbers) <= 4 and numbers == list(range(1, len(numbers) + 1)), numbers


@pytest.mark.parametrize("name", NAMES)
def test_prerequisites_at_the_top_and_key_takeaways_at_the_end(name: str) -> None:
    cells = _load(name).cells
    top = [c for c in cells[:4] if c.cell_type == "markdown"]
    assert any("**Prerequisites**" in c.source for c in top), name
    last = [c for c in cells if c.cell_type == "markdown"][-2:]
    assert any(c.source.lstrip().startswith("## Key takeaways") for c in last), name


# ---------------------------------------------------------------------------------------------
# Clean pages
# ---------------------------------------------------------------------------------------------
MACHINE_PATH = re.compile(r"(?<![\w.~])(?:/work/|/home/|/root/|/tmp/|/Users/|/mnt/|/private/"
                          r"|[A-Z]:\\\\)")
WARNING = re.compile(r"\b\w*(?:Warning|Error): |Traceback \(most recent call last\)")
PAGES = sorted((REPO / "docs" / "notebooks").glob("*.html"))


def _text_files() -> list[Path]:
    roots = [REPO / "docs", NOTEBOOK_DIR]
    suffixes = {".md", ".json", ".ipynb", ".html", ".csv", ".txt"}
    return sorted(p for root in roots for p in root.rglob("*") if p.suffix in suffixes)


def test_the_clean_page_checks_catch_paths_and_warnings() -> None:
    assert MACHINE_PATH.search('"data_root": "/work/shared/data"')
    assert MACHINE_PATH.search("/tmp/ipykernel_2525/734968841.py:1: UserWarning")
    assert not MACHINE_PATH.search("../shared/data, build/notebook-runs/x, https://a.b/work/")
    assert WARNING.search("x.py:1: UserWarning: The given NumPy array is not writable")
    assert not WARNING.search("no warning here; a DataError is raised when ...")


@pytest.mark.parametrize("path", _text_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_absolute_machine_path_in_docs_notebooks_or_results(path: Path) -> None:
    text = path.read_text(encoding="utf-8", errors="replace")
    hits = sorted({text[max(m.start() - 30, 0):m.end() + 30] for m in MACHINE_PATH.finditer(text)})
    assert not hits, f"{path.relative_to(REPO)}: absolute machine path(s): {hits[:3]}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_rendered_pages_carry_no_warning_or_traceback(page: Path) -> None:
    text = re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))
    hits = [text[max(m.start() - 80, 0):m.end() + 80] for m in WARNING.finditer(text)]
    assert not hits, f"{page.name}: {hits[:2]}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_rendered_pages_say_pair_data_and_image_size(page: Path) -> None:
    text = re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))
    assert "This run:" in text and "image size" in text and "data:" in text, page.name


def test_rendering_maps_any_data_root_to_shared_data(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    render = importlib.import_module("render_notebooks")
    monkeypatch.setattr(render, "DATA_ROOTS", [Path("/mnt/polyps/data"), *render.DATA_ROOTS])
    page = render.machine_paths("data: /mnt/polyps/data (real data); run in "
                                f"{REPO}/build/notebook-runs")
    assert page == "data: ../shared/data (real data); run in build/notebook-runs"
    assert not MACHINE_PATH.search(page)
