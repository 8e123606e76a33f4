"""Does the paper's training step fit a T4, and how long do notebooks 01 → 05 take on one?

Two measurements on the CPU (no GPU is needed: the tensors are the same on any device):

1. **Memory of one training step at the paper's setting**: the PVTv2-b2 teacher's forward pass
   under ``no_grad`` and the PVTv2-b0 student's forward and backward pass with L_KDAS, at
   448 px (the largest multi-scale rate of 352 px) in float32 (the ``paper`` preset trains
   without AMP). Activation memory = the bytes of every tensor autograd saves for the backward
   pass (``torch.autograd.graph.saved_tensors_hooks``, each storage counted once, parameters
   left out), measured at batch 1 and 2 and extrapolated **linearly** to batch 16; plus the
   largest activation of the teacher's forward pass (transient, also scaled), the weights of
   both models, the student's gradients and its AdamW state (two moments).
2. **FLOPs per image** (``torch.utils.flop_counter.FlopCounterMode``, batch 1, forward passes;
   a training step counted as 3 × its forward pass) of a teacher training step, a
   distillation step, a student-alone step and an inference pass, at the
   size of the ``colab-t4`` parameter set; with :data:`kdas_lite.colab.COURSE_SETS` they give
   each notebook's FLOPs, and an *assumed* effective T4 throughput turns them into minutes:
   **estimates**, until measured on a GPU.

Writes ``docs/bench/colab.json`` and ``docs/bench/colab.md``. Usage (one thread, a few
minutes on the 2-core VM)::

    OMP_NUM_THREADS=1 python benchmarks/colab_budget.py
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from kdas_lite.colab import COURSE_SETS
from kdas_lite.config import get_preset
from kdas_lite.models import count_parameters
from kdas_lite.train import build_model, make_objective

REPO = Path(__file__).resolve().parents[1]
T4_MEMORY_GB = 15.0  # what a Colab T4 offers (15 GB of its 16 GiB are usable)
T4_PEAK_TFLOPS = 65.0  # fp16 tensor cores (NVIDIA's T4 datasheet)
ASSUMED_UTILISATION = 0.12  # of that peak, for PVTv2 + a small decoder with AMP: ASSUMED
ALLOCATOR_MARGIN = 1.3  # caching allocator, cuDNN workspaces, activation gradients: ASSUMED
SETUP_MIN = 3.0  # per notebook: pip install, Drive sign-in, unpacking the data: ASSUMED
EVAL_CPU_S_PER_IMAGE = 150.0 / (3 * 622)  # notebook 05 on the 2-core CPU: 2.5 min for three
# models × 622 test images (notebooks/README.md, measured); the protocol's metrics run on the
# CPU on Colab too (2 vCPUs), so this is the CPU side of every evaluation
TRAIN_FRACTION = 0.9  # of the 1450 training images (val_fraction 0.1)
TEST_IMAGES = 100 + 62 + 380 + 60 + 196  # PraNet's five test sets


def _models() -> tuple[Any, torch.nn.Module, torch.nn.Module]:
    config = get_preset("paper", image_size=352, pretrained=False, device="cpu")
    teacher = build_model(config.teacher_encoder, config).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = build_model(config.student_encoder, config).train()
    return config, teacher, student


def _batch(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator)
    masks = (torch.rand(batch, 1, size, size, generator=generator) > 0.5).float()
    return images, masks


def saved_bytes(objective: Any, student: torch.nn.Module, batch: int, size: int
                ) -> tuple[int, int]:
    """(bytes autograd saves in one distillation step, largest teacher activation in bytes)."""
    params = {p.untyped_storage().data_ptr() for p in student.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    largest = [0]

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            largest[0] = max(largest[0], output.nbytes)

    handles = [m.register_forward_hook(hook) for m in objective.teacher.modules()]
    images, masks = _batch(batch, size)
    student.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = objective(student, images, masks)
    out.total.backward()
    for handle in handles:
        handle.remove()
    return sum(storages.values()), largest[0]


def memory(size: int = 448, batches: tuple[int, int] = (1, 2), target: int = 16
           ) -> dict[str, Any]:
    """The memory estimate of one paper-setting training step at batch ``target``."""
    config, teacher, student = _models()
    objective = make_objective(config, teacher, student)
    measured = {b: saved_bytes(objective, student, b, size) for b in batches}
    (b1, (s1, t1)), (b2, (s2, t2)) = sorted(measured.items())
    per_image, per_image_teacher = (s2 - s1) / (b2 - b1), (t2 - t1) / (b2 - b1)
    activations = s1 + per_image * (target - b1)
    teacher_peak = t1 + per_image_teacher * (target - b1)
    weight_bytes = 4 * (count_parameters(teacher) + count_parameters(student))
    student_bytes = 4 * count_parameters(student)
    parts = {"activations saved for backward": activations,
             "largest teacher activation (transient)": teacher_peak,
             "weights (teacher + student, float32)": weight_bytes,
             "student gradients": student_bytes, "AdamW state (2 moments)": 2 * student_bytes}
    total = sum(parts.values())
    return {
        "size": size, "batch": target, "measured_batches": list(batches),
        "saved_bytes_measured": {str(b): s for b, (s, _) in measured.items()},
        "parts_gb": {k: v / 1e9 for k, v in parts.items()},
        "total_gb": total / 1e9, "with_margin_gb": ALLOCATOR_MARGIN * total / 1e9,
        "fits_t4": ALLOCATOR_MARGIN * total / 1e9 <= T4_MEMORY_GB,
    }


def flops_per_image(size: int) -> dict[str, float]:
    """GFLOPs per image of each kind of step at ``size`` px (batch 1).

    Forward passes are counted (``FlopCounterMode``); a training step is the usual 3 × its
    forward pass (the backward pass costs about twice the forward: the gradients of the
    inputs and of the weights). The counter's own backward figures are not used: it counts a
    depthwise convolution's backward as a dense one (PVTv2's MLPs have one per block).
    """
    _, teacher, student = _models()
    images = _batch(1, size)[0]

    def forward(model: torch.nn.Module) -> float:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(images)
        return counter.get_total_flops() / 1e9

    t, s = forward(teacher), forward(student)
    return {"teacher step": 3 * t, "distillation step": t + 3 * s, "student-alone step": 3 * s,
            "teacher inference": t, "student inference": s}


def notebook_minutes(flops: dict[str, float]) -> dict[str, dict[str, float]]:
    """Estimated minutes of each notebook of the ``colab-t4`` set, run in order 01 → 05."""
    sets = COURSE_SETS["colab-t4"]
    rate = T4_PEAK_TFLOPS * ASSUMED_UTILISATION * 1e3  # GFLOP/s
    train = 1450 * TRAIN_FRACTION
    val = sets["02"]["max_val_images"]

    def run(epochs: int, step_flops: float, inference: float) -> float:
        return epochs * (train * step_flops + val * inference) / rate

    teacher = run(sets["01"]["teacher_epochs"], flops["teacher step"], flops["teacher inference"])
    epochs = sets["04"]["epochs"]
    kdas = run(epochs, flops["distillation step"], flops["student inference"])
    alone = run(epochs, flops["student-alone step"], flops["student inference"])
    variants = ["student alone", "+L_SGM", "+L_AT", "KDAS", "CWD"]  # notebook 04's defaults
    seeds = sets["04"].get("seeds", [0, 1, 2])  # notebook 04's default: three seeds
    runs_04 = [alone if v == "student alone" else kdas for v in variants] * len(seeds)
    runs_04.remove(kdas)  # the KDAS student of the first seed: trained by notebook 02
    kvasir_eval = 100 * EVAL_CPU_S_PER_IMAGE  # notebook 04 scores each run on Kvasir
    gpu = {"01": teacher, "02": kdas, "03": 0.0, "04": sum(runs_04),
           "05": 3 * TEST_IMAGES * flops["teacher inference"] / rate}
    cpu = {"01": 0.0, "02": 0.0, "03": 0.0, "04": len(runs_04) * kvasir_eval,
           "05": 3 * TEST_IMAGES * EVAL_CPU_S_PER_IMAGE}
    return {nb: {"gpu_min": gpu[nb] / 60, "cpu_side_min": cpu[nb] / 60, "setup_min": SETUP_MIN,
                 "total_min": (gpu[nb] + cpu[nb]) / 60 + SETUP_MIN} for nb in gpu}


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "colab.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    mem, est = result["memory"], result["notebooks"]
    lines = [
        "# Colab T4: memory of the paper's training step, and the 90-minute course",
        "",
        "Written by `benchmarks/colab_budget.py` (" + result["command"] + ") on "
        + result["machine"] + ". Read its docstring for the method.",
        "",
        f"## Memory: one training step at {mem['size']} px, batch {mem['batch']}, float32",
        "",
        "PVTv2-b2 teacher forward (no_grad) + PVTv2-b0 student forward/backward with L_KDAS. "
        f"Activations measured on the CPU at batch {mem['measured_batches'][0]} and "
        f"{mem['measured_batches'][1]} (saved-tensor bytes: "
        + ", ".join(f"batch {b}: {v / 1e9:.2f} GB" for b, v in mem["saved_bytes_measured"].items())
        + f") and **scaled linearly to batch {mem['batch']}**.",
        "",
        "| part | GB |",
        "| --- | --- |",
        *[f"| {k} | {v:.2f} |" for k, v in mem["parts_gb"].items()],
        f"| **total** | **{mem['total_gb']:.2f}** |",
        f"| with a {ALLOCATOR_MARGIN}× allowance (allocator, cuDNN workspaces, activation "
        f"gradients; assumed) | {mem['with_margin_gb']:.2f} |",
        "",
        f"A Colab T4 offers {T4_MEMORY_GB:.0f} GB: the step "
        + ("**fits**" if mem["fits_t4"] else "**does not fit**; use `accumulate_steps`")
        + " (in float32; AMP's fp16 activations are smaller still).",
        "",
        "## Time of the `colab-t4` set, notebook by notebook (ESTIMATES)",
        "",
        f"GFLOPs per image at {result['flops_size']} px (forward passes measured, batch 1; a "
        "training step = 3 × forward): "
        + ", ".join(f"{k} {v:.1f}" for k, v in result["flops_per_image_g"].items()) + ".",
        f"Assumed: a T4 sustains {ASSUMED_UTILISATION:.0%} of its {T4_PEAK_TFLOPS:.0f} TFLOP/s "
        f"fp16 peak; the evaluation protocol's CPU side costs {EVAL_CPU_S_PER_IMAGE:.3f} s per "
        f"image (measured on the 2-core CPU); {SETUP_MIN:.0f} min per notebook for the install, "
        "the Drive sign-in and unpacking the data. Data loading on Colab's two vCPUs is not "
        "modelled. Estimates until measured on a GPU.",
        "",
        "| notebook | GPU (min) | CPU side (min) | setup (min) | total (min) |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {nb} | {v['gpu_min']:.1f} | {v['cpu_side_min']:.1f} | {v['setup_min']:.0f} | "
          f"{v['total_min']:.0f} |" for nb, v in est.items()],
        f"| **01 → 05** | | | | **{sum(v['total_min'] for v in est.values()):.0f}** |",
        "",
    ]
    (out / "colab.md").write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench")
    parser.add_argument("--size", type=int, default=448, help="memory: side in px (448)")
    parser.add_argument("--flops-size", type=int, default=COURSE_SETS["colab-t4"]["01"][
        "image_size"], help="FLOPs: side in px (the colab-t4 set's)")
    args = parser.parse_args()
    torch.manual_seed(0)
    start = time.perf_counter()
    mem = memory(args.size)
    flops_size = args.flops_size
    flops = flops_per_image(flops_size)
    result = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/colab_budget.py",
        "machine": f"{platform.machine()}, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} thread(s), {time.perf_counter() - start:.0f} s",
        "memory": mem, "flops_size": flops_size, "flops_per_image_g": flops,
        "assumptions": {"t4_peak_tflops": T4_PEAK_TFLOPS, "utilisation": ASSUMED_UTILISATION,
                        "allocator_margin": ALLOCATOR_MARGIN, "setup_min": SETUP_MIN,
                        "eval_cpu_s_per_image": EVAL_CPU_S_PER_IMAGE},
        "notebooks": notebook_minutes(flops),
    }
    write(result, args.out)
    print((args.out / "colab.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
