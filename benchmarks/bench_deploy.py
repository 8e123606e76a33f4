"""The student where it would be used: CPU speed and accuracy of PyTorch fp32, ONNX fp32 and
ONNX INT8, no-polyp frames and temporal smoothing (docs/bench/deploy.md).

One run measures, side by side:

1. **speed** at ``--size`` (352) px, batch 1, on 1 and 2 threads: for both pairs' students
   (EfficientNet-Lite0, PVTv2-b0) in PyTorch fp32, exported to ONNX fp32
   (:func:`kdas_lite.export.export_onnx`) and quantised to static INT8
   (:func:`kdas_lite.quantize.quantize_int8`, calibrated on training images), and the
   teachers in PyTorch for reference. Speed does not depend on the weights: these models are
   randomly initialised (INT8 calibrated on them all the same);
2. **accuracy**: the trained student ``--student`` (a checkpoint) in the same three forms, its
   mean Dice (``meanDic``: the mean over 256 thresholds of the Dice of each min–max
   normalised map, as ``kdas-lite evaluate``) on the five test sets at its training size;
3. **no-polyp frames**: crops of training images far from any mask (no polyp in view), the
   fraction with any predicted polyp pixel at threshold 0.5 and the mean predicted area;
4. **smoothing**: Dice at threshold 0.5 on CVC-ColonDB's frames in order (they are video
   frames), without and with the moving average of :class:`kdas_lite.video.EmaSmoother`.

Usage::

    nice .venv/bin/python benchmarks/bench_deploy.py --student runs/x/teacher/best.pth \\
        --data /work/shared/data --markdown docs/bench/deploy.md
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from kdas_lite.checkpoint_files import load_checkpoint
from kdas_lite.data import PolypTestDataset, find_layout
from kdas_lite.deploy import (
    FORMS,
    DeployFiles,
    export_forms,
    false_positives,
    latency_ms,
    no_polyp_crops,
    smoothing_dice,
    three_forms,
)
from kdas_lite.evaluate import soft_maps
from kdas_lite.metrics import threshold_curves
from kdas_lite.models import PolypPVT, count_parameters
from kdas_lite.runs import load_trained, trained_image_size

PAIRS = {"offline": ("tf_efficientnet_lite2", "tf_efficientnet_lite0"),
         "pvt": ("pvt_v2_b2", "pvt_v2_b0")}


def export_both(model: torch.nn.Module, size: int, folder: Path, data: Path,
                calibration: int) -> DeployFiles:
    """The model's ONNX fp32 file and its INT8 version (calibrated on training images; its
    accuracy is reported here, not refused)."""
    name = getattr(model, "encoder_name", "model")
    return export_forms(model, folder / f"{name}_{size}.onnx", data, size,
                        calibration=calibration, check=calibration, max_dice_drop=1.0)


def speed(args: argparse.Namespace, folder: Path) -> tuple[list[str], dict[str, tuple]]:
    """The speed table's lines, and student → INT8 frames/s over ONNX fp32's (1, 2 threads)."""
    lines = [f"| model | form | params (M) | {' | '.join(f'{t} thread(s): ms' for t in (1, 2))}"
             " | frames/s (1 thread) | frames/s vs ONNX fp32 (1 / 2 threads) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    gains: dict[str, tuple] = {}
    for pair, (teacher_name, student_name) in PAIRS.items():
        torch.manual_seed(0)
        student = PolypPVT(student_name)
        files = export_both(student, args.size, folder, args.data, args.calibration)
        forms = {t: three_forms(student, files, t) for t in (1, 2)}
        results: dict[str, list[float]] = {}
        for form in FORMS:
            per_thread = []
            for threads in (1, 2):
                torch.set_num_threads(threads)
                module = forms[threads][form]
                per_thread.append(latency_ms(module, args.size, warmup=args.warmup,
                                             repeats=args.repeats))
            results[form] = per_thread
        teacher = PolypPVT(teacher_name).eval()
        per_thread = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            per_thread.append(latency_ms(teacher, args.size, warmup=args.warmup,
                                         repeats=args.repeats))
        base = results["ONNX fp32"]
        gains[student_name] = tuple(b / q for b, q in zip(base, results["ONNX INT8"],
                                                          strict=True))
        rows = [(f"student {student_name}", form, count_parameters(student), results[form])
                for form in FORMS] + [(f"teacher {teacher_name} (reference)", "PyTorch fp32",
                                       count_parameters(teacher), per_thread)]
        for label, form, params, (one, two) in rows:
            lines.append(f"| {label} | {form} | {params / 1e6:.2f} | {one:.1f} | {two:.1f} | "
                         f"{1e3 / one:.1f} | {base[0] / one:.2f}× / {base[1] / two:.2f}× |")
        print(f"speed, {pair} pair: done", flush=True)
    return lines, gains


def mean_dice(forms: dict[str, torch.nn.Module], folder: Path, size: int,
              limit: int | None) -> dict[str, float]:
    """Form → meanDic on one test set (each image decoded once for all forms)."""
    first = next(iter(forms.values()))
    dataset = PolypTestDataset(folder, size=size, mean=first.input_mean, std=first.input_std)
    scores: dict[str, list[float]] = {form: [] for form in forms}
    for index in range(len(dataset) if limit is None else min(limit, len(dataset))):
        item = dataset[index]
        for form, model in forms.items():
            with torch.inference_mode():
                p1, p2 = model(item["image"][None])[:2]
            pred = soft_maps(p1 + p2, [item["mask"].shape], minmax=True)[0]
            scores[form].append(float(threshold_curves(pred, item["mask"])["Dic"].mean()))
    return {form: float(np.mean(values)) for form, values in scores.items()}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", type=Path, required=True, help="trained student ckpt")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument("--crops", type=int, default=100)
    parser.add_argument("--limit", type=int, help="images per test set (smoke runs)")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    command = shlex.join(["python", "benchmarks/bench_deploy.py", *(
        f"<outside the repository>/{Path(a).name}" if a.startswith("/") else a
        for a in (sys.argv[1:] if argv is None else argv))])  # no machine path on the page
    start = time.perf_counter()
    load = f"{__import__('os').getloadavg()[0]:.1f}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        speed_lines, gains = speed(args, folder)
        torch.set_num_threads(1)
        student = load_trained(args.student)
        trained = trained_image_size(args.student) or 352
        forms = three_forms(student, export_both(student, trained, folder, args.data,
                                                 args.calibration), 1)
        layout = find_layout(args.data)
        acc: dict[str, dict[str, float]] = {form: {} for form in forms}
        for name, path in layout.test.items():
            for form, value in mean_dice(forms, path, trained, args.limit).items():
                acc[form][name] = value
            print(f"accuracy, {name}: done", flush=True)
        crops = no_polyp_crops(args.data, args.crops)
        fps = {form: false_positives(forms[form], crops, trained)
               for form in ("PyTorch fp32", "ONNX INT8")}
        smooth = smoothing_dice(forms["PyTorch fp32"], layout.test["CVC-ColonDB"], trained,
                           (1.0, 0.7, 0.5), args.limit)
    record = load_checkpoint(args.student)
    config = record.get("train_config", {}) if isinstance(record, dict) else {}
    how = "distilled" if record.get("role") == "student" else "trained alone (no distillation)"
    recipe = (f"{how} for {config.get('epochs')} epochs at {config.get('image_size')} px "
              f"on {config.get('max_train_images')} training images, ImageNet-initialised: "
              f"{'yes' if config.get('pretrained') else 'no'} (a few CPU minutes with "
              "kdas-lite train-teacher; far from the paper's recipe)") if config else \
        "recipe not recorded"
    labels = {name: status.label for name, status in layout.status.items()}
    sets = list(acc["PyTorch fp32"])
    acc_lines = ["| form | " + " | ".join(labels.get(s, s) for s in sets) + " |",
                 "|---|" + "---:|" * len(sets)]
    for form in FORMS:
        acc_lines.append(f"| {form} | " + " | ".join(f"{acc[form][s]:.4f}" for s in sets) + " |")
    lost = {s: 100 * (acc["ONNX fp32"][s] - acc["ONNX INT8"][s]) for s in sets}
    acc_lines.append("| INT8 loss vs ONNX fp32 (Dice points) | "
                     + " | ".join(f"{lost[s]:+.2f}" for s in sets) + " |")
    worst = max(lost.values())
    verdict = "; ".join(
        f"{name}: INT8 runs at {one:.2f}× the ONNX fp32 frames/s on 1 thread, {two:.2f}× on 2 "
        f"({'meets' if one >= 2 else 'misses'} the 2× target on 1 thread)"
        for name, (one, two) in gains.items())
    verdict += (f". Accuracy (the trained student): at most {worst:.2f} Dice points lost on a "
                f"set ({'within' if worst <= 0.5 else 'beyond'} the 0.5-point target).")
    lines = [
        f"# Deploying the student on a CPU ({date.today().isoformat()})", "",
        "Generated by `benchmarks/bench_deploy.py` in one run: do not edit by hand. The "
        "commands are in [docs/DEPLOY.md](../DEPLOY.md).", "",
        f"**Targets (issue 31): INT8 ≥ 2× the ONNX fp32 frames/s, ≤ 0.5 Dice points lost on "
        f"every set. Reached:** {verdict}", "",
        f"command: `{command}`", "",
        f"machine: {platform.processor() or platform.machine()}, shared, load average {load} "
        f"at the start; torch {torch.__version__}; Python {platform.python_version()}; the "
        f"run took {time.perf_counter() - start:.0f} s.", "",
        f"## Speed at {args.size}×{args.size} px, batch 1", "",
        "Random weights for every model here (speed does not depend on them; the PVTv2-b0 "
        "student and both teachers are random-init, INT8 calibrated on them all the same). "
        "Ratios compare medians measured in this same run; on a shared, contended machine "
        "2 threads can be slower than 1 (see docs/bench/inference.md).", "",
        f"Median of {args.repeats} calls after {args.warmup} warm-up calls. INT8: static, QDQ, "
        f"per-channel weights, calibrated on {args.calibration} training images.", "",
        *speed_lines, "",
        f"## Mean Dice of the trained student at {trained} px", "",
        f"Student: {getattr(student, 'encoder_name', '')}, {recipe}. The PVTv2-b0 student "
        "has no trained checkpoint here: speed only. meanDic as "
        "kdas-lite evaluate (min–max normalised maps, mean over 256 thresholds)"
        + (f"; only the first {args.limit} images per set (smoke)" if args.limit else "")
        + ".", "", *acc_lines, "",
        "## Frames without a polyp", "",
        f"{len(crops)} crops of training images (a third of the shorter side, at least 24 px "
        "from any mask pixel; some of these images may be among those the student trained "
        "on), threshold 0.5 on sigmoid(P1 + P2), no min–max normalisation:", "",
        "| form | crops with any polyp pixel | mean predicted area (% of the crop) |",
        "|---|---:|---:|",
        *(f"| {form} | {100 * frac:.1f} % | {area:.2f} % |" for form, (frac, area)
          in fps.items()), "",
        "## Temporal smoothing on CVC-ColonDB frames in order", "",
        "| EMA factor α (1 = off) | Dice at 0.5, mean over frames |", "|---:|---:|",
        *(f"| {alpha:g} | {value:.4f} |" for alpha, value in smooth.items()), "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
