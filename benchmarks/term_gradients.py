"""Summarise the gradient measurements of distillation runs: what each term did to the student.

Runs trained with ``probe_gradients=True`` (notebook 04 trains every run that way) record, at
the start of every epoch, the norm of each weighted loss term's gradient on the student and its
cosine with the segmentation term's (:func:`kdas_lite.gradients.term_gradients`). This script
reads the ``history.json`` of every such run under a folder, groups the seeds of a variant
(notebook 04's folders: ``kdas``, ``kdas-seed1``, ``kdas-seed2``, …) and prints one Markdown
row per variant and term: the size ratio ``‖∇α·term‖ / ‖∇(1−α)·L_seg‖`` and the cosine at the
first and the last epoch, mean ± std over seeds.

Usage (after ``make notebooks``, which runs notebook 04 at the lab scale into
``build/notebook-runs/cpu-lab``)::

    .venv/bin/python benchmarks/term_gradients.py build/notebook-runs/cpu-lab
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from lab_experiment import spread

TERMS = {"at": "L_AT", "sgm": "L_SGM", "kd": "L_KD"}


def probed_runs(root: Path) -> dict[str, list[list[dict]]]:
    """Variant folder → one history per seed, for every student run with gradient records."""
    runs: dict[str, list[list[dict]]] = {}
    for path in sorted(root.glob("*/student/history.json")):
        history = json.loads(path.read_text(encoding="utf-8"))
        if history and "grad_seg" in history[0]:
            variant = re.sub(r"-seed\d+$", "", path.parent.parent.name)
            runs.setdefault(variant, []).append(history)
    return runs


def table(runs: dict[str, list[list[dict]]]) -> str:
    lines = ["| run | term | seeds | size ratio, epoch 1 | size ratio, last epoch "
             "| cosine, epoch 1 | cosine, last epoch |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for variant, seeds in runs.items():
        for term, label in TERMS.items():
            if f"grad_{term}" not in seeds[0][0]:
                continue
            cells = []
            for key in (f"grad_{term}", f"cos_{term}"):
                for record in (0, -1):
                    values = [h[record][key] / (h[record]["grad_seg"] if key.startswith("grad")
                                                else 1.0) for h in seeds]
                    cells.append(spread(values, digits=2))
            lines.append(f"| {variant} | {label} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder holding <run>/student/history.json")
    args = parser.parse_args(argv)
    runs = probed_runs(args.root)
    if not runs:
        raise SystemExit(f"no run under {args.root} recorded gradients: train with "
                         "probe_gradients=True (notebook 04 does)")
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
