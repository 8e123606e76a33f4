"""Rewrite the generated blocks of notebooks/README.md from their sources.

    python scripts/notebook_readme.py            # rewrite the blocks
    python scripts/notebook_readme.py --check    # exit 1 when a block is out of date (tests)

Two blocks, each between ``<!-- NAME: begin (written by scripts/notebook_readme.py) -->`` and
``<!-- NAME: end -->`` (the drift check of ``tests/test_notebooks_teaching.py`` accepts numbers
about our runs only inside such blocks):

- ``cpu-lab-parameters``: the values of the notebooks' parameter cells (the ``cpu-lab`` set),
  read from the notebooks themselves;
- ``colab-budget``: the epochs of the ``colab-t4`` set (``kdas_lite.colab.COURSE_SETS``), its
  estimated time per notebook and the memory of the paper's training step, from
  ``docs/bench/colab.json`` (``benchmarks/colab_budget.py``).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
README = REPO / "notebooks" / "README.md"
COLAB = REPO / "docs" / "bench" / "colab.json"
SCRIPT = "scripts/notebook_readme.py"


def parameter_values(notebook: Path) -> dict[str, Any]:
    """The literal values assigned in a notebook's ``parameters`` cell."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    values = {}
    for node in ast.parse("".join(cell["source"])).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return values


def cpu_lab_block() -> str:
    """The ``cpu-lab`` set in one sentence, from the parameter cells of 01 and 04."""
    teacher = parameter_values(next((REPO / "notebooks").glob("01_*.ipynb")))
    students = parameter_values(next((REPO / "notebooks").glob("04_*.ipynb")))
    variants = ", ".join(students["variants"])
    seeds = ", ".join(map(str, students["seeds"]))
    return (f"The parameter cells' values: {teacher['image_size']} px, batch "
            f"{teacher['batch_size']}; the teacher (01) {teacher['teacher_epochs']} epochs on "
            f"{teacher['teacher_train_images']} training images, each student (04) "
            f"{students['epochs']} epochs on {students['max_train_images']}; notebook 04 trains "
            f"{variants} for seed(s) {seeds} beside the committed lab.")


def colab_block() -> str:
    """The ``colab-t4`` time table and the memory of the paper's step, from colab.json."""
    from kdas_lite.colab import COURSE_SETS

    budget = json.loads(COLAB.read_text(encoding="utf-8"))
    assumed, memory = budget["assumptions"], budget["memory"]
    t4 = COURSE_SETS["colab-t4"]
    lines = [f"The `colab-t4` set trains the teacher {t4['01']['teacher_epochs']} epochs, each "
             f"student {t4['04']['epochs']}. Assumed (`benchmarks/colab_budget.py`): a T4 sustains "
             f"{assumed['utilisation']:.0%} of its {assumed['t4_peak_tflops']:.0f} TFLOP/s fp16 "
             f"peak, and {assumed['setup_min']:g} min per notebook go to the install, the Drive "
             "sign-in and unpacking the data. Notebook 04's estimate is for the comparison of "
             "`full_lab = True` (less the KDAS run that 02 trains); its default trains fewer "
             "runs.", "",
             "| notebook | GPU (min) | CPU side (min) | setup (min) | total (min, estimate) |",
             "| --- | --- | --- | --- | --- |"]
    for name, row in budget["notebooks"].items():
        if name[:1].isdigit():
            lines.append(f"| {name} | {row['gpu_min']:.1f} | {row['cpu_side_min']:.1f} | "
                         f"{row['setup_min']:g} | {row['total_min']:.0f} |")
    total = sum(r["total_min"] for n, r in budget["notebooks"].items() if n[:1].isdigit())
    parts = memory["parts_gb"]
    measured = " and ".join(map(str, memory["measured_batches"]))
    lines += [f"| **all** | | | | **{total:.0f}** |", "",
              f"**Memory.** One training step at the paper's setting (batch {memory['batch']}, "
              f"{memory['size']} px, the largest multi-scale rate, float32) needs "
              f"**{memory['total_gb']:.2f} GB**: "
              + ", ".join(f"{value:.2f} GB {part}" for part, value in parts.items())
              + f" (activations measured at batch {measured} and scaled linearly); with a "
              f"{assumed['allocator_margin']:g}× allowance, "
              f"{memory['with_margin_gb']:.1f} GB of the T4's 15 GB"
              + (": it fits." if memory["fits_t4"] else ": it does not fit.")]
    return "\n".join(lines)


BLOCKS = {"cpu-lab-parameters": cpu_lab_block, "colab-budget": colab_block}


def rewrite(text: str) -> str:
    """``text`` with every block of :data:`BLOCKS` rewritten (a missing marker: SystemExit)."""
    for name, make in BLOCKS.items():
        start, end = f"<!-- {name}: begin (written by {SCRIPT}) -->", f"<!-- {name}: end -->"
        if start not in text or end not in text:
            raise SystemExit(f"{README}: no {start} … {end} block; add the two markers")
        head, rest = text.split(start, 1)
        text = head + start + "\n" + make() + "\n" + rest[rest.index(end):]
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a block differs from what its source gives")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    new = rewrite(text)
    if args.check:
        if new != text:
            print(f"{README} is out of date: run python {SCRIPT}", file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    print(README)
    return 0


if __name__ == "__main__":
    sys.exit(main())
