"""Where do the L_AT and CWD targets put their probability? Mass inside the polyp, per test set.

L_AT (kdas_lite's mode) and CWD both match the student to a distribution over the H·W positions,
``softmax(target / T)``; they differ only in the target: the self-attention ``A_t`` of the
teacher's map (paper Eq. 2, :func:`kdas_lite.losses.attention_target`) or the map itself. This
script scores each target by the share of its probability that falls inside the ground-truth
polyp, averaged over the images of a test set and over the teacher's two maps P1 and P2, next
to a uniform map (the polyp's area share). docs/RESULTS.md quotes it.

Usage::

    .venv/bin/python experiments/target_mass.py build/notebook-runs/cpu-lab/teacher/best.pth \
        --data ../shared/data --sets Kvasir CVC-ColonDB
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from kdas_lite.data import PolypDataset, find_layout
from kdas_lite.losses import attention_target
from kdas_lite.runs import load_trained, trained_image_size


def target_mass(teacher: torch.nn.Module, dataset: PolypDataset, temperature: float = 2.0,
                batch_size: int = 20) -> dict[str, float]:
    """Mean probability mass inside the mask of ``softmax(A_t / T)``, ``softmax(P_t / T)`` and
    a uniform map, over the images of ``dataset`` and the teacher's output maps."""
    mass: dict[str, list[torch.Tensor]] = {"A_t": [], "P_t": [], "uniform": []}
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            images = torch.stack([item[0] for item in items])
            masks = torch.stack([item[1] for item in items]).flatten(1)
            for p in teacher(images):
                for key, target in (("P_t", p), ("A_t", attention_target(p))):
                    q = F.softmax(target.flatten(1) / temperature, dim=1)
                    mass[key].append((q * masks).sum(1))
                mass["uniform"].append(masks.mean(1))
    return {key: torch.cat(values).mean().item() for key, values in mass.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("teacher", type=Path, help="a teacher checkpoint (best.pth)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--sets", nargs="+", default=["Kvasir", "CVC-ColonDB"])
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=352,
                        help="input side (px) for a checkpoint without a training config")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    teacher = load_trained(args.teacher, torch.device("cpu")).eval()
    size = trained_image_size(args.teacher) or args.size
    layout = find_layout(args.data)
    print("| test set | images | A_t (L_AT) | P_t (CWD) | uniform |\n"
          "| --- | ---: | ---: | ---: | ---: |")
    for name in args.sets:
        dataset = PolypDataset.from_folder(layout.test[name], size=size,
                                           mean=teacher.input_mean, std=teacher.input_std)
        m = target_mass(teacher, dataset, args.temperature)
        print(f"| {name} | {len(dataset)} | {m['A_t']:.3f} | {m['P_t']:.3f} | {m['uniform']:.3f} |")


if __name__ == "__main__":
    main()
