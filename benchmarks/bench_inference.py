"""Inference speed: teacher vs student in PyTorch, and the student exported to ONNX Runtime.

Three set-ups run side by side in one process on the same random input:

- the teacher (Polyp-PVT on PVTv2-b2, or EfficientNet-Lite2 with ``--pair offline``) and the
  student (PVTv2-b0 / EfficientNet-Lite0) in PyTorch: eval mode, ``torch.inference_mode``; on
  CUDA with AMP (bf16 from compute capability 8.0, else fp16) and channels-last, timed with
  ``torch.cuda.synchronize``; on CPU in float32;
- the student exported with :func:`kdas_lite.export.export_onnx` (checked against PyTorch)
  and run by onnxruntime (CUDA execution provider when available and asked for, else CPU).

For each: throughput in images/s at ``--batch-size`` (8) and latency at batch 1. Every figure
is the median of ``--repeats`` timed calls after ``--warmup`` untimed ones; the tables also
give the fastest and slowest call, since a shared machine makes single calls noisy. Speed does
not depend on the weights, so the models are randomly initialised (no download needed).
torch and onnxruntime use ``--threads`` CPU threads (default: every core).

Usage::

    .venv/bin/python benchmarks/bench_inference.py                   # 352 px, PVTv2 pair
    .venv/bin/python benchmarks/bench_inference.py --pair offline --size 224 --repeats 5
    .venv/bin/python benchmarks/bench_inference.py --markdown docs/bench/inference.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch

from kdas_lite.deploy import time_calls
from kdas_lite.export import export_onnx
from kdas_lite.models import PolypPVT, count_parameters
from kdas_lite.train import amp_dtype_for, resolve_device

PAIRS = {"pvt": ("pvt_v2_b2", "pvt_v2_b0"),
         "offline": ("tf_efficientnet_lite2", "tf_efficientnet_lite0")}


def torch_call(model: torch.nn.Module, x: torch.Tensor, device: torch.device
               ) -> Callable[[], object]:
    """One blocking forward pass: AMP + channels-last on CUDA, float32 on CPU."""
    cuda = device.type == "cuda"
    dtype = amp_dtype_for(device) if cuda else torch.float16  # bf16 only where native
    memory_format = torch.channels_last if cuda else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format).eval()
    x = x.to(device).contiguous(memory_format=memory_format)

    def call() -> object:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=cuda):
            out = model(x)
        if cuda:
            torch.cuda.synchronize(device)
        return out

    return call


def onnx_call(path: Path, x: torch.Tensor, threads: int, use_cuda: bool
              ) -> tuple[Callable[[], object], str]:
    """One blocking onnxruntime run of ``path`` on ``x``, and the execution provider used."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    providers = ["CPUExecutionProvider"]
    if use_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(str(path), options, providers=providers)
    feed = {"image": x.numpy()}
    return (lambda: session.run(None, feed)), session.get_providers()[0]


def describe_machine(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    load = f", load average {os.getloadavg()[0]:.1f} at the start" if hasattr(
        os, "getloadavg") else ""
    return f"{model}, {os.cpu_count()} cores, {threads} threads{load}"


def summary(seconds: list[float]) -> tuple[float, float, float]:
    """(median, min, max) of the per-call seconds."""
    return statistics.median(seconds), min(seconds), max(seconds)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=sorted(PAIRS), default="pvt")
    parser.add_argument("--size", type=int, default=352, help="input side in px (paper: 352)")
    parser.add_argument("--batch-size", type=int, default=8, help="throughput batch")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per figure (default 7 on CPU, 50 on CUDA)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime rows")
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "benchmarks/bench_inference.py",
                          *(sys.argv[1:] if argv is None else argv)])

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    repeats = args.repeats or (50 if device.type == "cuda" else 7)
    precision = ("AMP " + ("bf16" if amp_dtype_for(device) == torch.bfloat16 else "fp16")
                 if device.type == "cuda" else "float32")
    teacher_name, student_name = PAIRS[args.pair]
    torch.manual_seed(0)
    models = {f"teacher {teacher_name}": PolypPVT(teacher_name),
              f"student {student_name}": PolypPVT(student_name)}
    generator = torch.Generator().manual_seed(0)
    inputs = {b: torch.randn(b, 3, args.size, args.size, generator=generator)
              for b in (args.batch_size, 1)}
    machine = describe_machine(device, args.threads)
    print(f"{machine}; {precision}; torch {torch.__version__}", flush=True)

    rows: dict[str, dict[str, object]] = {}
    for label, model in models.items():
        figures = {b: summary(time_calls(torch_call(model, x, device), args.warmup, repeats))
                   for b, x in inputs.items()}
        rows[f"{label} (PyTorch, {precision})"] = {"params": count_parameters(model),
                                                    "figures": figures}
        print(f"  {label}: done", flush=True)
    onnx_note = ""
    if not args.no_onnx:
        import onnxruntime as ort

        student = models[f"student {student_name}"]
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            path = export_onnx(student, Path(tmp) / "student.onnx", image_size=args.size)
            export_s = time.perf_counter() - start
            size_mb = path.stat().st_size / 1e6
            figures = {}
            for b, x in inputs.items():
                call, provider = onnx_call(path, x, args.threads, device.type == "cuda")
                figures[b] = summary(time_calls(call, args.warmup, repeats))
        rows[f"student {student_name} (ONNX Runtime {ort.__version__}, {provider}, float32)"] = {
            "params": count_parameters(student), "figures": figures}
        onnx_note = (f"ONNX file: {size_mb:.1f} MB (opset 18, dynamic batch), exported and "
                     f"checked against PyTorch (max |Δlogit| ≤ 1e-3) by "
                     f"kdas_lite.export.export_onnx in {export_s:.0f} s.")

    b = args.batch_size
    lines = [
        f"# Inference speed at {args.size}×{args.size} px ({date.today().isoformat()})", "",
        f"command: `{command}`", "",
        f"machine: {machine}; torch {torch.__version__}; Python {platform.python_version()}", "",
        f"Each figure: median of {repeats} timed calls after {args.warmup} warm-up calls "
        "(fastest–slowest call in brackets). Random weights (speed does not depend on them).",
        "",
        f"| model | params (M) | batch {b}: images/s | batch {b}: ms per batch "
        "| batch 1: latency ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, row in rows.items():
        (med8, lo8, hi8), (med1, lo1, hi1) = row["figures"][b], row["figures"][1]
        lines.append(f"| {label} | {row['params'] / 1e6:.2f} | {b / med8:.2f} | "
                     f"{1e3 * med8:.0f} [{1e3 * lo8:.0f}–{1e3 * hi8:.0f}] | "
                     f"{1e3 * med1:.1f} [{1e3 * lo1:.1f}–{1e3 * hi1:.1f}] |")
    labels = list(rows)
    teacher, student = rows[labels[0]]["figures"], rows[labels[1]]["figures"]
    ratios = [
        ("student vs teacher, PyTorch", teacher, student),
        *([("ONNX Runtime vs PyTorch, student", student, rows[labels[2]]["figures"])]
          if len(labels) > 2 else []),
        *([("ONNX student vs PyTorch teacher", teacher, rows[labels[2]]["figures"])]
          if len(labels) > 2 else []),
    ]
    lines += ["", f"| speed-up (median vs median) | batch {b} throughput | batch 1 latency |",
              "|---|---:|---:|"]
    for name, slow, fast in ratios:
        lines.append(f"| {name} | {slow[b][0] / fast[b][0]:.2f}× | "
                     f"{slow[1][0] / fast[1][0]:.2f}× |")
    if onnx_note:
        lines += ["", onnx_note]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
