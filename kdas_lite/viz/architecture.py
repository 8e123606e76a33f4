"""Polyp-PVT's blocks and their parameter counts, teacher vs student."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

# ---------------------------------------------------------------------------------------------
# Architecture
# ---------------------------------------------------------------------------------------------
BLOCKS: dict[str, tuple[str, ...]] = {
    "encoder": ("backbone",),
    "CIM": ("ca", "sa", "translayer2_0"),
    "CFM": ("translayer2_1", "translayer3_1", "translayer4_1", "cfm"),
    "SAM": ("sam",),
    "heads": ("out_cfm", "out_sam"),
}
"""Polyp-PVT's top-level modules grouped by block: the encoder; the CIM (channel + spatial
attention on X1 and its 1×1 translayer to c channels for the SAM); the CFM (translayers of X2–X4
and the cascaded fusion); the SAM; the two 1×1 prediction heads."""


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters of each block of a Polyp-PVT (:data:`BLOCKS`), plus ``"total"``.

    Modules outside :data:`BLOCKS` are counted under ``"other"`` (present only when non-zero),
    so the blocks always add up to the total.
    """
    owner = {module: block for block, modules in BLOCKS.items() for module in modules}
    counts = dict.fromkeys(BLOCKS, 0)
    for name, child in model.named_children():
        block = owner.get(name, "other")
        counts[block] = counts.get(block, 0) + sum(p.numel() for p in child.parameters())
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def parameter_table(models: Mapping[str, nn.Module]) -> str:
    """Markdown table of :func:`parameter_counts`, one column per model.

    Counts are exact (thousands separated); the total row also gives millions. With several
    models the last column is the ratio of the last model to the first (e.g. student /
    teacher).

    Example:
        >>> print(parameter_table({"teacher": build_teacher(), "student": build_student()}))
        ... # doctest: +SKIP
    """
    if not models:
        raise ValueError("parameter_table needs at least one model")
    names = list(models)
    counts = {name: parameter_counts(model) for name, model in models.items()}
    blocks = list(dict.fromkeys(b for c in counts.values() for b in c if b != "total"))
    ratio = len(names) > 1
    header = ["block", *names, *([f"ratio {names[-1]} / {names[0]}"] if ratio else [])]
    lines = ["| " + " | ".join(header) + " |",
             "| --- |" + " ---: |" * (len(header) - 1)]
    for block in [*blocks, "total"]:
        values = [counts[n].get(block, 0) for n in names]
        if block == "total":
            cells = ["**total**", *(f"{v:,} ({v / 1e6:.2f} M)" for v in values)]
        else:
            cells = [block, *(f"{v:,}" for v in values)]
        if ratio:
            cells.append(f"{values[-1] / values[0]:.2f}" if values[0] else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
