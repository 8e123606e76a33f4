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

    .venv/bin/python experiments/term_gradients.py build/notebook-runs/cpu-lab

``--at-modes`` measures instead, on one batch of the first training images, a fresh student's
term gradients with each ``at_mode`` of L_AT (kdas, reference-fixed, reference) against that
folder's ``teacher/best.pth`` (the size of the repaired public L_AT's gradient, RESULTS §1)::

    .venv/bin/python experiments/term_gradients.py build/notebook-runs/cpu-lab --at-modes
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch
from lab_experiment import spread

from kdas_lite.config import TrainConfig
from kdas_lite.data import PolypDataset, find_layout, find_shared_data
from kdas_lite.gradients import term_gradients
from kdas_lite.losses import AT_MODES
from kdas_lite.runs import load_trained, trained_image_size
from kdas_lite.train import build_model, make_objective

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


def at_mode_gradients(root: Path, data: Path | None, batch_size: int = 8) -> str:
    """One batch, a fresh student (seed 0), the teacher of ``root``: ``term_gradients`` for
    every L_AT mode, one Markdown row each."""
    checkpoint = root / "teacher" / "best.pth"
    teacher = load_trained(checkpoint, "cpu").eval()
    config = TrainConfig.from_dict(json.loads(
        (root / "teacher" / "config.json").read_text(encoding="utf-8")))
    layout = find_layout(data or find_shared_data())
    size = trained_image_size(checkpoint)
    dataset = PolypDataset.from_folder(layout.train, size=size, mean=teacher.input_mean,
                                       std=teacher.input_std)
    images = torch.stack([dataset[i][0] for i in range(batch_size)])
    masks = torch.stack([dataset[i][1] for i in range(batch_size)])
    lines = ["| at_mode | ‖∇(1−α)·ΣL_seg‖ | ‖∇α·ΣL_AT‖ | ‖∇α·L_SGM‖ | cos(∇L_AT, ∇L_seg) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for mode in AT_MODES:
        torch.manual_seed(0)
        student = build_model(config.student_encoder, config)
        g = term_gradients(student, make_objective(config.replace(at_mode=mode), teacher,
                                                   student), images, masks)
        lines.append(f"| {mode} | {g['grad_seg']:.3f} | {g['grad_at']:.4g} | "
                     f"{g['grad_sgm']:.3f} | {g['cos_at']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder holding <run>/student/history.json")
    parser.add_argument("--at-modes", action="store_true",
                        help="one batch, a fresh student: the gradient of each L_AT mode")
    parser.add_argument("--data", type=Path, default=None,
                        help="PraNet-layout data (default: ../shared/data); with --at-modes")
    args = parser.parse_args(argv)
    if args.at_modes:
        print(at_mode_gradients(args.root, args.data))
        return 0
    runs = probed_runs(args.root)
    if not runs:
        raise SystemExit(f"no run under {args.root} recorded gradients: train with "
                         "probe_gradients=True (notebook 04 does)")
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
