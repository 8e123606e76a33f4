"""The deployment parts of the ``kdas-lite`` command (docs/DEPLOY.md).

- ``kdas-lite export CKPT --int8``: the fp32 ONNX file, then its static INT8 version
  (:mod:`kdas_lite.quantize`), calibrated and checked on training images only;
- ``kdas-lite predict CKPT VIDEO``: the overlaid video and ``frames.csv``
  (:mod:`kdas_lite.video`), with ``--every``, ``--smooth``, ``--masks``;
- ``kdas-lite package CKPT FOLDER``: ``model.safetensors`` + ``config.json`` + a model card
  (:mod:`kdas_lite.package`).

:mod:`kdas_lite.cli` adds these flags and the subcommand to its parser and calls the
functions here; they print what they did and return the exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_int8_flags", "add_package_parser", "add_video_flags", "export_int8",
           "predict_video_command"]


def add_int8_flags(parser: argparse.ArgumentParser, positive_int: Callable[[str], int],
                   positive_float: Callable[[str], float]) -> None:
    """``export``'s ``--int8`` flags."""
    group = parser.add_argument_group("INT8 (static quantisation with ONNX Runtime)")
    group.add_argument("--int8", action="store_true",
                       help="also write OUTPUT.int8.onnx: INT8 weights (per channel) and "
                       "activations (QDQ), calibrated on training images only, kept only when "
                       "it loses at most --max-dice-drop mean Dice on other training images")
    group.add_argument("--data", metavar="DIR", help="data root whose TrainDataset/ gives the "
                       "calibration images (default $KDAS_DATA)")
    group.add_argument("--calibration", type=positive_int, default=32, metavar="N",
                       help="calibration images (default 32); as many others check the file")
    group.add_argument("--max-dice-drop", type=positive_float, default=0.005, metavar="D",
                       help="largest accepted mean-Dice loss vs fp32 (default 0.005: half a "
                       "point)")


def export_int8(args: argparse.Namespace, fp32_path: Path, model: Any, size: int) -> None:
    """Quantise the fp32 file ``export`` just wrote; print the check's figures."""
    from kdas_lite.data import resolve_data_root
    from kdas_lite.quantize import int8_path, quantize_int8

    path, fp32, int8 = quantize_int8(
        fp32_path, int8_path(fp32_path), resolve_data_root(args.data), size, model.input_mean,
        model.input_std, calibration=args.calibration, check=args.calibration,
        max_dice_drop=args.max_dice_drop)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, static INT8, QDQ, per-channel "
          f"weights, calibrated on {args.calibration} training images); check on "
          f"{args.calibration} other training images: mean Dice {int8:.4f} vs fp32 {fp32:.4f} "
          f"(within --max-dice-drop {args.max_dice_drop:g}: OK)")


def add_video_flags(parser: argparse.ArgumentParser, positive_int: Callable[[str], int],
                    smooth: Callable[[str], float]) -> None:
    """``predict``'s video flags."""
    group = parser.add_argument_group("videos (IMAGES is a .mp4 / .avi / .mov file)")
    group.add_argument("--every", type=positive_int, default=1, metavar="N",
                       help="predict every N-th frame (default 1: all)")
    group.add_argument("--smooth", type=smooth, default=1.0, metavar="ALPHA",
                       help="temporal smoothing: moving average S = ALPHA·P + (1-ALPHA)·S of the "
                       "probability maps, ALPHA in (0, 1] (default 1: off)")
    group.add_argument("--masks", action="store_true",
                       help="also write every frame's mask (masks/<video>_<frame>.png)")


def predict_video_command(args: argparse.Namespace, model: Any, size: int, label: str) -> int:
    """``kdas-lite predict CKPT VIDEO``; 1 when frames were skipped."""
    from kdas_lite.video import predict_video

    report = predict_video(model, args.images, args.output, size=size,
                           threshold=args.threshold, device=args.device or "auto",
                           batch_size=args.batch_size, every=args.every, smooth=args.smooth,
                           save_masks=args.masks, overwrite=args.overwrite, label=label,
                           progress=not args.quiet)
    print(f"wrote {report.video} ({report.frames} frames) and {report.manifest}"
          + (f" and {len(report.masks)} masks" if report.masks else "")
          + ". Research use only: not a diagnosis.")
    if report.skipped:
        for index, reason in list(report.skipped.items())[:5]:
            print(f"kdas-lite: skipped frame {index}: {reason}", file=sys.stderr)
        print(f"kdas-lite: {len(report.skipped)} frame(s) skipped (listed in "
              f"{report.manifest}; exit status 1)", file=sys.stderr)
        return 1
    return 0


def _cmd_package(args: argparse.Namespace) -> int:
    from kdas_lite.data import resolve_data_root
    from kdas_lite.evaluate import EvaluationTable, evaluate
    from kdas_lite.package import package_checkpoint
    from kdas_lite.runs import load_trained, trained_image_size

    if args.results is not None:
        table = EvaluationTable.from_csv(args.results)
    else:
        model = load_trained(args.checkpoint)
        size = args.image_size or trained_image_size(args.checkpoint) or 352
        table = evaluate(model, resolve_data_root(args.data), size=size, test_sets=args.sets,
                         progress=not args.quiet, name=str(args.checkpoint))
    folder = package_checkpoint(args.checkpoint, args.folder, table, overwrite=args.overwrite,
                                repo_id=args.repo_id)
    print(f"wrote {folder}/model.safetensors, config.json and README.md (model card, "
          f"model-index of {len(table.rows)} test set(s)). Upload: huggingface-cli upload "
          f"{args.repo_id or 'OWNER/NAME'} {folder}")
    return 0


def add_package_parser(sub: Any, image_size: Callable[[str], int]) -> None:
    """The ``package`` subcommand."""
    pk = sub.add_parser("package", help="a Hub-ready folder: model.safetensors, config.json, "
                        "model card", description="Write FOLDER/model.safetensors (weights; "
                        "loading never unpickles), config.json (architecture record) and "
                        "README.md (model card whose model-index comes from an evaluation on "
                        "the test sets). evaluate, predict and export accept FOLDER (or the "
                        "Hub repository it is uploaded to) in place of a checkpoint.")
    pk.add_argument("checkpoint", metavar="CKPT")
    pk.add_argument("folder", type=Path, metavar="FOLDER")
    pk.add_argument("--results", type=Path, metavar="CSV", help="the evaluation table "
                    "(kdas-lite evaluate --csv); default: evaluate now on --data")
    pk.add_argument("--data", metavar="DIR", help="data root with TestDataset/ (default "
                    "$KDAS_DATA)")
    pk.add_argument("--sets", nargs="+", metavar="NAME", help="test sets (default: all present)")
    pk.add_argument("--image-size", type=image_size, metavar="PX")
    pk.add_argument("--repo-id", metavar="OWNER/NAME", help="the Hub repository (for the card)")
    pk.add_argument("--overwrite", action="store_true", help="replace an earlier package")
    pk.add_argument("--quiet", action="store_true")
    pk.set_defaults(func=_cmd_package)
