"""docs/RECIPES.md §3's tables: the student gradient of L_AT ``kdas`` against ``reference-fixed``.

For each pair of maps, the gradients of :func:`kdas_lite.losses.attention_kd_loss` (T = 2,
float32, CPU) with respect to the student map in the two modes: the ratio of their norms (to
three significant figures) and their cosine. Two tables, written between the
``at-mode-gradients`` markers of docs/RECIPES.md (``--check`` only compares):

- polyp-like blobs: teacher ``6·(1 − r²/0.16)`` clipped to ±8, student ``4·(1 − r²/0.16)`` plus
  N(0, 1) noise (seed 0), r the distance from the centre in units of the side, B = 2, at
  44, 88, 176 and 352 px, and random N(0, 1) logits at 44 × 44 (seed 0);
- random maps: both maps ``σ·randn(2, 1, 44, 44)``, ten seeds per σ, the range over seeds.

Usage::

    .venv/bin/python scripts/at_mode_gradients.py          # rewrite the block
    .venv/bin/python scripts/at_mode_gradients.py --check  # exit 1 when the block differs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from kdas_lite.losses import attention_kd_loss

DOC = Path(__file__).resolve().parents[1] / "docs" / "RECIPES.md"
START = "<!-- at-mode-gradients: begin (written by scripts/at_mode_gradients.py) -->"
END = "<!-- at-mode-gradients: end -->"


def compare(student: torch.Tensor, teacher: torch.Tensor) -> tuple[float, float]:
    """‖∇ kdas‖ / ‖∇ reference-fixed‖ and their cosine, for ``(B, 1, H, W)`` maps."""
    grads = []
    for mode in ("kdas", "reference-fixed"):
        s = student.clone().requires_grad_(True)
        attention_kd_loss(s, teacher, 2.0, mode=mode).backward()
        grads.append(s.grad.flatten())
    kdas, fixed = grads
    return float(kdas.norm() / fixed.norm()), float(torch.nn.functional.cosine_similarity(
        kdas, fixed, dim=0))


def blob(side: int, peak: float) -> torch.Tensor:
    """``peak·(1 − r²/0.16)`` on a ``(2, 1, side, side)`` grid, r in units of the side."""
    axis = (torch.arange(side, dtype=torch.float32) + 0.5) / side - 0.5
    r2 = axis[:, None] ** 2 + axis[None, :] ** 2
    return (peak * (1 - r2 / 0.16)).expand(2, 1, side, side).clone()


def _thousands(value: float) -> str:
    """``14356`` as ``14 400``: three significant figures (float32 sums differ between CPUs in
    the fifth; the block must read the same on every machine), the docs' thousands separator."""
    return f"{float(f'{value:.3g}'):_.0f}".replace("_", " ")


def _minus(text: str) -> str:
    """The docs' minus sign."""
    return text.replace("-", "−")


def row(maps: str, ratio: float, cos: float) -> str:
    """One line of the first table."""
    return f"| {maps} | {_thousands(ratio)} | {_minus(f'{cos:.2f}')} |"


def tables() -> str:
    gen = torch.Generator().manual_seed(0)
    lines = ["| maps | ‖∇ kdas‖ / ‖∇ reference-fixed‖ | cosine(∇ kdas, ∇ reference-fixed) |",
             "| --- | --- | --- |"]
    ratio, cos = compare(torch.randn(2, 1, 44, 44, generator=gen),
                         torch.randn(2, 1, 44, 44, generator=gen))
    lines.append(row("random N(0, 1) logits, 44 × 44", ratio, cos))
    for side in (44, 88, 176, 352):
        teacher = blob(side, 6.0).clamp(-8, 8)
        student = blob(side, 4.0) + torch.randn(2, 1, side, side, generator=gen)
        ratio, cos = compare(student, teacher)
        lines.append(row(f"polyp-like blob, {side} × {side}", ratio, cos))
    lines += ["", "| logits | ‖∇ kdas‖ / ‖∇ reference-fixed‖ | cosine |", "| --- | --- | --- |"]
    for sigma in (0.3, 1.0, 3.0, 10.0):
        found = []
        for seed in range(10):
            g = torch.Generator().manual_seed(seed)
            s, t = sigma * torch.randn(2, 2, 1, 44, 44, generator=g)
            found.append(compare(s, t))
        ratios, cosines = zip(*found, strict=True)
        lines.append(f"| σ = {sigma:g} | {_thousands(min(ratios))} – {_thousands(max(ratios))} | "
                     f"{_minus(f'{min(cosines):+.2f}')} to {_minus(f'{max(cosines):+.2f}')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a change")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    doc = DOC.read_text(encoding="utf-8")
    if START not in doc or END not in doc:
        print(f"{DOC}: no {START} … {END} block to write into", file=sys.stderr)
        return 2
    head, rest = doc.split(START, 1)
    new = head + START + "\n" + tables() + rest[rest.index(END):]
    if args.check:
        if new != doc:
            print(f"{DOC}: the at-mode-gradients block is out of date; run "
                  "scripts/at_mode_gradients.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
