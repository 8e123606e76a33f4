"""Training throughput: teacher, student alone, and KDAS distillation, side by side.

For each image size, one optimiser step (forward, loss, backward, clipping, AdamW) is timed
for three set-ups on the same random batch:

- ``teacher``: Polyp-PVT on the teacher encoder, structure loss (paper Eq. 1);
- ``student alone``: the student, structure loss;
- ``KDAS distillation``: the student with L_KDAS (paper Eq. 6), i.e. plus the frozen teacher's
  forward pass and the L_AT / L_SGM terms.

The distillation overhead is ``time(KDAS step) / time(student-alone step) − 1``. Throughput
is images per second of optimiser steps at one scale (the multi-scale recipe makes one step
per scale, so an epoch costs the sum over its scales). On CUDA the steps run with AMP (bf16
where supported), channels-last, as :func:`kdas_lite.train.fit` does; on CPU in float32.

Usage::

    python benchmarks/bench_train.py                       # 352 px and 160 px, CPU or CUDA
    python benchmarks/bench_train.py --sizes 352 --batch-size 16 --steps 20 --device cuda
    python benchmarks/bench_train.py --pair offline        # EfficientNet-Lite2 / Lite0
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from kdas_lite.config import TrainConfig
from kdas_lite.models import PolypPVT, count_parameters
from kdas_lite.train import (
    DistillationObjective,
    Objective,
    SupervisedObjective,
    TrainStep,
    autocast_dtype,
    make_objective,
    make_optimizer,
    resolve_device,
)

PAIRS = {"pvt": ("pvt_v2_b2", "pvt_v2_b0"), "offline": ("tf_efficientnet_lite2",
                                                        "tf_efficientnet_lite0")}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(model: torch.nn.Module, objective: Objective, images: torch.Tensor,
               masks: torch.Tensor, device: torch.device, steps: int, repeats: int,
               warmup: int = 1) -> float:
    """Seconds per optimiser step: the mean over ``steps`` steps, best of ``repeats`` such
    timings (robust to other processes on a shared machine), after ``warmup`` untimed steps."""
    config = TrainConfig(device=str(device))
    amp_dtype = autocast_dtype(config, device)
    channels_last = device.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    model.to(device=device, memory_format=memory_format).train()
    objective.to(device=device, memory_format=memory_format).train()
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    step = TrainStep(model, objective, make_optimizer(model, config), None, scaler, device,
                     amp_dtype, config.clip, config.clip_mode, channels_last)
    for _ in range(warmup):
        step(images, masks)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step(images, masks)  # ends with a host sync (the logged loss values)
        _sync(device)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[352, 160])
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default 2 on CPU, 16 on CUDA")
    parser.add_argument("--steps", type=int, default=None, help="default 2 on CPU, 20 on CUDA")
    parser.add_argument("--repeats", type=int, default=3, help="report the best of N timings")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pair", choices=sorted(PAIRS), default="pvt")
    args = parser.parse_args()

    device = resolve_device(args.device)
    batch = args.batch_size or (16 if device.type == "cuda" else 2)
    steps = args.steps or (20 if device.type == "cuda" else 2)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
    precision = {None: "float32", torch.bfloat16: "AMP bf16", torch.float16: "AMP fp16"}[
        autocast_dtype(TrainConfig(), device)]
    print(f"# kdas_lite training throughput\n\ndevice: {where} ({precision}); torch "
          f"{torch.__version__}; Python {platform.python_version()}; batch {batch}; best of "
          f"{args.repeats} timings of {steps} steps, after 1 warm-up step\n")

    teacher_name, student_name = PAIRS[args.pair]
    torch.manual_seed(0)
    teacher, student = PolypPVT(teacher_name), PolypPVT(student_name)
    print(f"teacher {teacher_name} ({count_parameters(teacher) / 1e6:.2f} M parameters), "
          f"student {student_name} ({count_parameters(student) / 1e6:.2f} M)\n")
    print("| size | teacher img/s | student alone img/s | KDAS distillation img/s "
          "| distillation overhead |")
    print("|---:|---:|---:|---:|---:|")
    reps = (steps, args.repeats)
    for size in args.sizes:
        generator = torch.Generator().manual_seed(size)
        images = torch.randn(batch, 3, size, size, generator=generator)
        masks = (torch.rand(batch, 1, size, size, generator=generator) > 0.7).float()
        t_teacher = time_steps(teacher, SupervisedObjective(), images, masks, device, *reps)
        t_alone = time_steps(student, SupervisedObjective(), images, masks, device, *reps)
        kdas = make_objective(TrainConfig(), teacher, student)
        assert isinstance(kdas, DistillationObjective)
        t_kdas = time_steps(student, kdas, images, masks, device, *reps)
        teacher.requires_grad_(True)  # the objective froze it; unfreeze for the next size
        print(f"| {size} | {batch / t_teacher:.2f} | {batch / t_alone:.2f} | "
              f"{batch / t_kdas:.2f} | {100 * (t_kdas / t_alone - 1):+.0f} % |", flush=True)


if __name__ == "__main__":
    main()
