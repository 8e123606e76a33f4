"""On paper: how KDAS training scales over N GPUs with torchrun (DistributedDataParallel).

Nothing here is timed on a GPU. The script counts what can be counted on any machine, and
combines it with stated hardware assumptions into a step-time model:

- **FLOPs**: the forward FLOPs of the student (Polyp-PVT on PVTv2-b0) and of the teacher
  (PVTv2-b2) per image at each multi-scale training size, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` on the ``meta`` device (no arithmetic is
  done). A training step costs ≈ 3× the student's forward (forward + backward) plus, for
  KDAS distillation, the frozen teacher's forward.
- **Communication**: DistributedDataParallel all-reduces the student's gradients (fp32, also
  under AMP) once per optimiser step, and the paper's recipe makes one step per scale (3 per
  batch). A ring all-reduce of S bytes over N GPUs takes ``2(N−1)/N · S / bandwidth +
  latency``. SyncBatchNorm adds two small, latency-bound collectives per batch-norm layer and
  step (statistics forward, gradients backward) on the critical path.
- **Step time** per scale: ``floor + b · FLOPs_train / (peak · MFU) + BN sync + exposed
  all-reduce``, with ``b`` images per GPU. DDP overlaps the all-reduce with the backward pass,
  so only the part longer than the backward is exposed. ``floor`` is the launch-bound time of
  one step that does not shrink with the batch (hundreds of kernels for a PVT forward and
  backward): an assumption until benchmarks/gpu_check.sh measures it.

Two ways to use N GPUs are tabled: the paper's global batch of 16 split N ways (the same run,
``kdas-lite train-teacher/distill`` under torchrun: ``batch_size`` is the global batch) and 16
images per GPU (global batch 16·N: another recipe, whose learning rate would need retuning).

Run: ``.venv/bin/python benchmarks/scaling_estimate.py > docs/bench/scaling.md``
"""

from __future__ import annotations

import argparse
import platform
import sys
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from kdas_lite.config import get_preset
from kdas_lite.models import PolypPVT, count_parameters


@dataclass(frozen=True)
class Interconnect:
    """Bandwidth (GB/s, NCCL all-reduce bus bandwidth) and latency of one collective (µs)."""

    name: str
    bandwidth_gbps: float
    latency_us: float


def forward_flops(encoder: str, size: int) -> int:
    """FLOPs of one forward pass of Polyp-PVT on ``encoder`` for one ``size²`` image."""
    with torch.device("meta"):
        model = PolypPVT(encoder, drop_path_rate=0.0)
        image = torch.empty(1, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        model(image)
    return counter.get_total_flops()


def batch_norm_layers(model: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def all_reduce_s(nbytes: float, gpus: int, link: Interconnect) -> float:
    """Seconds of a ring all-reduce of ``nbytes`` over ``gpus`` GPUs."""
    if gpus == 1:
        return 0.0
    return 2 * (gpus - 1) / gpus * nbytes / (link.bandwidth_gbps * 1e9) + link.latency_us * 1e-6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="dense bf16 peak of one GPU (H100/H200 SXM: 989; A100: 312)")
    parser.add_argument("--mfu", type=float, default=0.25,
                        help="assumed fraction of the peak a step's arithmetic reaches")
    parser.add_argument("--floor-ms", type=float, default=10.0,
                        help="assumed launch-bound time of one optimiser step (ms)")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    args = parser.parse_args()

    recipe = get_preset("paper")
    sizes = recipe.train_sizes
    student_encoder, teacher_encoder = recipe.student_encoder, recipe.teacher_encoder
    student = PolypPVT(student_encoder)
    params = count_parameters(student, trainable_only=True)
    grad_bytes = 4 * params
    bn_layers = batch_norm_layers(student)
    s_flops = {size: forward_flops(student_encoder, size) for size in sizes}
    t_flops = {size: forward_flops(teacher_encoder, size) for size in sizes}
    nvlink = Interconnect("NVLink (one node)", 300.0, 20.0)
    infiniband = Interconnect("InfiniBand 400 Gb/s (two nodes)", 40.0, 40.0)
    flops_per_s = args.peak_tflops * 1e12 * args.mfu

    def step_s(images: float, size: int, gpus: int, distil: bool) -> dict[str, float]:
        train = 3 * s_flops[size] + (t_flops[size] if distil else 0)
        compute = images * train / flops_per_s
        backward = images * 2 * s_flops[size] / flops_per_s
        link = nvlink if gpus <= 8 else infiniband
        reduce = all_reduce_s(grad_bytes, gpus, link)
        bn = 2 * bn_layers * all_reduce_s(8.0 * 256, gpus, link) if gpus > 1 else 0.0
        exposed = max(0.0, reduce - backward)
        return {"compute": compute, "reduce": reduce, "exposed": exposed, "bn": bn,
                "total": args.floor_ms * 1e-3 + compute + bn + exposed,
                "no_floor": compute + bn + exposed}

    def batch_s(global_batch: int, gpus: int, distil: bool, key: str) -> float:
        return sum(step_s(global_batch / gpus, size, gpus, distil)[key] for size in sizes)

    out = sys.stdout.write
    out("# Scaling KDAS training over GPUs: an estimate on paper\n\n")
    out("Computed by `benchmarks/scaling_estimate.py` (FLOPs counted, hardware assumed; "
        "**no GPU was used**). Command: `.venv/bin/python benchmarks/scaling_estimate.py > "
        "docs/bench/scaling.md`; torch " + torch.__version__ + ", Python "
        + platform.python_version() + ".\n\n")
    out("## What is counted\n\n")
    out(f"- Student {student_encoder}: {params / 1e6:.2f} M trainable parameters → "
        f"{grad_bytes / 1e6:.1f} MB of fp32 gradients all-reduced per optimiser step; "
        f"{bn_layers} batch-norm layers (SyncBatchNorm: 2 small collectives each per step).\n")
    out("- Forward GFLOPs per image (FlopCounterMode, meta device) at the paper's training "
        f"sizes {', '.join(map(str, sizes))} px: student "
        + ", ".join(f"{s_flops[s] / 1e9:.2f}" for s in sizes) + "; teacher "
        + ", ".join(f"{t_flops[s] / 1e9:.2f}" for s in sizes) + ".\n")
    per_image = {d: sum(3 * s_flops[s] + (t_flops[s] if d else 0) for s in sizes)
                 for d in (False, True)}
    out(f"- Training GFLOPs per image per epoch (3 scales): student alone "
        f"{per_image[False] / 1e9:.1f}, KDAS distillation {per_image[True] / 1e9:.1f} "
        "(3× the student's forward + the teacher's forward).\n\n")
    out("## What is assumed\n\n")
    out(f"- One GPU: {args.peak_tflops:.0f} TFLOP/s dense bf16 peak, {args.mfu:.0%} of it "
        f"reached (MFU); a launch-bound floor of {args.floor_ms:.0f} ms per optimiser step.\n")
    out(f"- {nvlink.name}: {nvlink.bandwidth_gbps:.0f} GB/s bus bandwidth, "
        f"{nvlink.latency_us:.0f} µs per collective, up to 8 GPUs; beyond: {infiniband.name}, "
        f"{infiniband.bandwidth_gbps:.0f} GB/s, {infiniband.latency_us:.0f} µs.\n\n")

    header = ("| GPUs | images per GPU | compute ms | all-reduce ms (exposed) | BN sync ms | "
              "step ms | images/s per GPU | images/s total | speed-up | efficiency | "
              "speed-up without the floor |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
              "---: | ---: | ---: | ---: |\n")
    best_same_run = (1, 1.0)  # the paper's batch: (GPUs, speed-up) of the fastest
    for title, per_gpu in (("the paper's global batch of 16, split N ways (the same run)",
                            False),
                           ("16 images per GPU (global batch 16·N: another recipe)", True)):
        out(f"## KDAS distillation, {title}\n\nPer batch: one optimiser step per scale "
            f"({len(sizes)} steps), milliseconds summed over them.\n\n{header}")
        base = batch_s(16, 1, True, "total")
        base_flops = batch_s(16, 1, True, "no_floor")
        rates: dict[int, tuple[float, float]] = {}  # GPUs → (images/s, efficiency)
        for gpus in args.gpus:
            global_batch = 16 * gpus if per_gpu else 16
            if global_batch % gpus:
                continue
            parts = {key: batch_s(global_batch, gpus, True, key) for key in
                     ("compute", "reduce", "exposed", "bn", "total", "no_floor")}
            total_ips = global_batch / parts["total"]
            speedup = total_ips / (16 / base)
            flops_speedup = (global_batch / parts["no_floor"]) / (16 / base_flops)
            out(f"| {gpus} | {global_batch // gpus} | {parts['compute'] * 1e3:.2f} | "
                f"{parts['reduce'] * 1e3:.2f} ({parts['exposed'] * 1e3:.2f}) | "
                f"{parts['bn'] * 1e3:.2f} | {parts['total'] * 1e3:.1f} | "
                f"{total_ips / gpus:.0f} | {total_ips:.0f} | {speedup:.2f} | "
                f"{speedup / gpus:.0%} | {flops_speedup:.2f} |\n")
            rates[gpus] = (total_ips, speedup / gpus)
        fastest = max(rates, key=lambda n: rates[n][0])
        paying = max((n for n, (_, eff) in rates.items() if eff >= 0.5), default=1)
        if not per_gpu:
            best_same_run = (fastest, rates[fastest][0] / rates[min(rates)][0])
        out(f"\nWhere it stops paying off: the most images/s with {fastest} GPU(s) "
            f"({rates[fastest][0] / rates[min(rates)][0]:.2f}× one GPU); each GPU still does "
            f"at least half of its own share (efficiency ≥ 50%) up to {paying} GPU(s).\n\n")
    one = batch_s(16, 1, True, "total")
    floor_share = len(sizes) * args.floor_ms * 1e-3 / one
    out("## Reading\n\n")
    out(f"With the paper's batch of 16 a KDAS step on one GPU is mostly the per-step floor "
        f"({floor_share:.0%} of it, as assumed), which does not shrink when the batch is split "
        "N ways, while the gradient all-reduce and SyncBatchNorm's collectives are added to "
        f"every step: torchrun runs the *same* run at best {best_same_run[1]:.2f}× as fast "
        f"(with {best_same_run[0]} GPUs). What does use N GPUs "
        "well is more images per step (the second table: a larger global batch, which is a "
        "different recipe, with its learning rate to retune) or N independent runs at once "
        "(seeds, ablations: one per GPU with `CUDA_VISIBLE_DEVICES=k`). The floor and the MFU "
        "are the assumptions that decide; the column without the floor shows the FLOP-bound "
        "limit. Replace them with measured values (`--floor-ms`, `--mfu`) once a step has been "
        "timed on the GPU (`benchmarks/bench_train.py --device cuda` at batch 1 and 16 gives "
        "both).\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
