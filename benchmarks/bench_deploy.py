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
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import torch

from kdas_lite.checkpoint_files import load_checkpoint
from kdas_lite.data import PolypTestDataset, find_layout
from kdas_lite.data.io import pair_files, read_image, read_mask
from kdas_lite.data.registry import image_mask_dirs
from kdas_lite.evaluate import soft_maps
from kdas_lite.export import export_onnx
from kdas_lite.metrics import threshold_curves
from kdas_lite.models import PolypPVT, count_parameters
from kdas_lite.quantize import OnnxSegmenter, quantize_int8
from kdas_lite.runs import load_trained, trained_image_size
from kdas_lite.video import EmaSmoother

PAIRS = {"offline": ("tf_efficientnet_lite2", "tf_efficientnet_lite0"),
         "pvt": ("pvt_v2_b2", "pvt_v2_b0")}
FORMS = ("PyTorch fp32", "ONNX fp32", "ONNX INT8")


def median_ms(call, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def export_both(model: torch.nn.Module, size: int, folder: Path, data: Path,
                calibration: int) -> tuple[Path, Path]:
    """The model's ONNX fp32 file and its INT8 version (calibrated on training images)."""
    name = getattr(model, "encoder_name", "model")
    fp32 = export_onnx(model, folder / f"{name}_{size}.onnx", size)
    int8, _, _ = quantize_int8(fp32, folder / f"{name}_{size}.int8.onnx", data, size,
                               model.input_mean, model.input_std, calibration=calibration,
                               check=calibration, max_dice_drop=1.0)  # reported, not refused
    return fp32, int8


def three_forms(model: torch.nn.Module, files: tuple[Path, Path], threads: int
                ) -> dict[str, torch.nn.Module]:
    """The model in PyTorch, ONNX fp32 and ONNX INT8 (onnxruntime on ``threads`` threads)."""
    mean, std = model.input_mean, model.input_std
    return {"PyTorch fp32": model.eval(),
            "ONNX fp32": OnnxSegmenter(files[0], mean, std, threads=threads),
            "ONNX INT8": OnnxSegmenter(files[1], mean, std, threads=threads)}


def speed(args: argparse.Namespace, folder: Path) -> tuple[list[str], dict[str, tuple]]:
    """The speed table's lines, and student → INT8 frames/s over ONNX fp32's (1, 2 threads)."""
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
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
                with torch.inference_mode():
                    per_thread.append(median_ms(lambda m=module: m(x), args.warmup,
                                                args.repeats))
            results[form] = per_thread
        teacher = PolypPVT(teacher_name).eval()
        per_thread = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                per_thread.append(median_ms(lambda t=teacher: t(x), args.warmup, args.repeats))
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


def no_polyp_crops(data: Path, count: int, margin: int = 24) -> list[np.ndarray]:
    """Square crops (a third of the shorter side) of training images whose window, grown by
    ``margin`` px, holds no mask pixel: frames with no polyp in view."""
    layout = find_layout(data)
    pairs = pair_files(*image_mask_dirs(layout.train))
    rng = np.random.default_rng(0)
    crops = []
    for index in rng.permutation(len(pairs)):
        image, mask = read_image(pairs[index][0]), read_mask(pairs[index][1])
        side = min(mask.shape) // 3
        grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8))
        for y in range(0, mask.shape[0] - side + 1, side // 2):
            for x in range(0, mask.shape[1] - side + 1, side // 2):
                if not grown[y:y + side, x:x + side].any():
                    crops.append(image[y:y + side, x:x + side])
                    break
            else:
                continue
            break
        if len(crops) == count:
            break
    return crops


def false_positives(model: torch.nn.Module, crops: list[np.ndarray], size: int,
                    threshold: float = 0.5) -> tuple[float, float]:
    from kdas_lite.data import build_eval_transform

    transform = build_eval_transform(size, model.input_mean, model.input_std)
    flagged, areas = 0, []
    for crop in crops:
        with torch.inference_mode():
            p1, p2 = model(transform(image=crop)["image"][None])[:2]
        mask = soft_maps(p1 + p2, [crop.shape[:2]], minmax=False)[0] >= threshold
        flagged += bool(mask.any())
        areas.append(100 * float(mask.mean()))
    return flagged / len(crops), float(np.mean(areas))


def smoothing(model: torch.nn.Module, folder: Path, size: int, alphas: tuple[float, ...],
              limit: int | None) -> dict[float, float]:
    """Mean Dice at 0.5 over CVC-ColonDB's frames in numeric order, per EMA factor."""
    dataset = PolypTestDataset(folder, size=size, mean=model.input_mean, std=model.input_std)
    stems = [image.stem for image, _ in dataset.pairs]
    order = sorted(range(len(stems)), key=lambda i: int(stems[i]) if stems[i].isdigit()
                   else 0)[:limit]
    smoothers = {alpha: EmaSmoother(alpha) for alpha in alphas}
    dice: dict[float, list[float]] = {alpha: [] for alpha in alphas}
    for index in order:
        item = dataset[index]
        with torch.inference_mode():
            p1, p2 = model(item["image"][None])[:2]
        prob = soft_maps(p1 + p2, [item["mask"].shape], minmax=False)[0]
        gt = item["mask"].astype(bool)
        for alpha, smoother in smoothers.items():
            pred = smoother(prob) >= 0.5
            inter = np.logical_and(pred, gt).sum()
            dice[alpha].append(2 * inter / (pred.sum() + gt.sum() + 1e-8))
    return {alpha: float(np.mean(values)) for alpha, values in dice.items()}


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
        smooth = smoothing(forms["PyTorch fp32"], layout.test["CVC-ColonDB"], trained,
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
