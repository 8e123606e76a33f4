"""The kdas-lite command: help, one-line errors with exit status 2, and a smoke chain."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kdas_lite.cli import build_parser, main

COMMANDS = ("demo", "download", "prepare", "make-synthetic", "train-teacher", "distill",
            "evaluate", "predict", "export")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """main(argv) in-process (each subprocess would re-import torch): status, stdout, stderr."""
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse: --help, usage errors
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def test_python_dash_m_runs_the_command():
    done = subprocess.run([sys.executable, "-m", "kdas_lite", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("kdas-lite ")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(capsys, command):
    status, out, _ = run(capsys, command, "--help")
    assert status == 0 and f"usage: kdas-lite {command}" in out


def test_top_level_help_lists_every_command(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0 and all(command in out for command in COMMANDS)


def test_training_flags_override_the_preset():
    from kdas_lite.cli import config_from_args

    args = build_parser().parse_args(
        ["distill", "--preset", "smoke", "--epochs", "3", "--image-size", "96", "--no-at",
         "--baseline", "cwd", "--alpha", "0.5", "--at-mode", "reference", "--offline-pair",
         "--device", "cpu", "--single-scale"])
    config = config_from_args(args)
    assert (config.epochs, config.image_size, config.batch_size) == (3, 96, 2)  # batch: smoke
    assert not config.use_at and config.use_sgm and config.baseline == "cwd"
    assert (config.alpha, config.at_mode, config.device) == (0.5, "reference", "cpu")
    assert config.teacher_encoder == "tf_efficientnet_lite2" and config.pretrained
    assert config.multi_scale == (1.0,)


def test_demo_configuration(capsys, monkeypatch):
    from kdas_lite import cli

    def demo(*argv):
        return cli.demo_config(build_parser().parse_args(["demo", *argv]))

    default = demo()
    assert (default.teacher_encoder, default.student_encoder) == ("tf_efficientnet_lite2",
                                                                 "tf_efficientnet_lite0")
    assert default.pretrained and default.synthetic and str(default.run_dir) == "runs/demo"
    paper = demo("--preset", "paper", "--data", "/data")
    assert (paper.image_size, paper.epochs, paper.teacher_encoder) == (352, 99, "pvt_v2_b2")
    assert paper.pretrained and paper.data_root == "/data" and paper.name == "demo"
    pvt = demo("--pair", "pvt", "--epochs", "2")
    assert (pvt.teacher_encoder, pvt.pretrained, pvt.epochs, pvt.image_size) == (
        "pvt_v2_b2", False, 2, 160)
    monkeypatch.setattr("kdas_lite.models.imagenet_weights_available", lambda encoder: False)
    fallback = demo()
    assert fallback.teacher_encoder == "pvt_v2_b2" and not fallback.pretrained
    assert "offline-weights" in capsys.readouterr().out


def one_line_error(status: int, err: str, fragment: str) -> None:
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdas-lite"), err
    assert "error:" in lines[0] and fragment in lines[0], err
    assert "Traceback" not in err


def test_user_mistakes_give_one_line_and_status_2(capsys, tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00not a checkpoint")
    cases = [
        (["train-teacher", "--data", str(tmp_path / "missing"), "--output", str(tmp_path)],
         "does not exist"),
        (["train-teacher", "--preset", "bogus"], "invalid choice: 'bogus'"),
        (["train-teacher", "--epochs", "0", "--output", str(tmp_path)], "epochs=0"),
        (["train-teacher", "--image-size", "100"], "multiple of 32"),
        (["train-teacher", "--epochs", "many"], "invalid int value"),
        (["distill", "--data", str(tmp_path), "--output", str(tmp_path)], "--teacher"),
        (["evaluate", str(corrupt), "--data", str(tmp_path)], "corrupt.pth"),
        (["export", str(corrupt)], "corrupt.pth"),
        (["predict", str(tmp_path / "none.pth"), str(tmp_path)], "checkpoint not found"),
        (["make-synthetic", str(tmp_path), "--train", "2", "--size", "64"], "not empty"),
        (["download", "no-such-set", "--data", str(tmp_path)], "unknown dataset"),
        (["train-teacher", "--config", str(tmp_path / "nope.json")], "nope.json"),
        (["frobnicate"], "invalid choice"),
    ]
    (tmp_path / "placeholder").write_text("x")  # make tmp_path non-empty for make-synthetic
    for argv, fragment in cases:
        status, _, err = run(capsys, *argv)
        one_line_error(status, err, fragment)


def test_download_list(capsys):
    status, out, _ = run(capsys, "download", "--list")
    assert status == 0 and "kvasir-seg" in out and "TrainDataset" in out


@pytest.mark.slow
def test_smoke_chain_demo_evaluate_predict_export(capsys, tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    status, out, err = run(capsys, "make-synthetic", str(data), "--train", "8", "--test", "2",
                           "--size", "64")
    assert status == 0 and "SYNTHETIC" in out, err
    assert (data / "TestDataset" / "CVC-300" / "images").is_dir()

    # demo on that data: teacher, KDAS student, evaluation on the five (synthetic) test sets
    status, out, err = run(capsys, "demo", "--preset", "smoke", "--data", str(data),
                           "--output", str(runs), "--teacher-encoder", "pvt_v2_b0", "--quiet")
    assert status == 0, err
    assert "SYNTHETIC data" in out and "teacher pvt_v2_b0 / student pvt_v2_b0" in out
    assert "| teacher (pvt_v2_b0) | 3.65 |" in out and "| student KDAS (pvt_v2_b0) |" in out
    assert "ETIS-LaribPolypDB" in (runs / "results.md").read_text()
    student = runs / "student" / "best.pth"
    assert student.is_file() and (runs / "teacher" / "best.pth").is_file()

    # the student again with --resume: already finished, nothing is retrained
    status, out, err = run(capsys, "distill", "--preset", "smoke", "--data", str(data),
                           "--output", str(runs), "--teacher-encoder", "pvt_v2_b0",
                           "--teacher", str(runs / "teacher" / "best.pth"), "--resume",
                           "--quiet")
    assert status == 0 and "student: best validation Dice" in out, err

    csv = tmp_path / "eval.csv"
    status, out, err = run(capsys, "evaluate", str(student), "--data", str(data),
                           "--image-size", "64", "--sets", "Kvasir", "CVC-300", "--csv", str(csv),
                           "--quiet")
    assert status == 0 and "| Kvasir | 2 |" in out and csv.is_file(), err

    images = data / "TestDataset" / "Kvasir" / "images"
    status, out, err = run(capsys, "predict", str(student), str(images), "--output",
                           str(tmp_path / "pred"), "--image-size", "64")
    assert status == 0, err
    masks = sorted((tmp_path / "pred" / "masks").iterdir())
    assert [p.name for p in masks] == ["Kvasir_0000.png", "Kvasir_0001.png"]
    assert len(list((tmp_path / "pred" / "overlays").iterdir())) == 2

    onnx = tmp_path / "student.onnx"
    status, out, err = run(capsys, "export", str(student), str(onnx), "--image-size", "64")
    assert status == 0 and onnx.is_file() and "onnxruntime check" in out, err
