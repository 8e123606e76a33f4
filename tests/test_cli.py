"""The kdas-lite command: help, one-line errors with exit status 2, and a smoke chain."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from inference_helpers import RednessModel, disc_image

from kdas_lite.cli import build_parser, main

COMMANDS = ("demo", "download", "prepare", "make-synthetic", "train-teacher", "distill",
            "evaluate", "predict", "export", "package")


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
    from kdas_lite.models import PolypPVT

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00not a checkpoint")
    b0 = PolypPVT("pvt_v2_b0")
    student = tmp_path / "student.pth"  # a student checkpoint given as the teacher
    torch.save({"arch": b0.config(), "model": b0.state_dict()}, student)
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
        (["predict", "x.pth", str(tmp_path), "--threshold", "7"],
         "between 0 and 1 (a probability), got 7"),
        (["predict", "x.pth", str(tmp_path), "--batch-size", "0"], "at least 1, got 0"),
        (["predict", "x.pth", str(tmp_path), "--image-size", "100"], "multiple of 32, got 100"),
        (["evaluate", "x.pth", "--batch-size", "-1"], "at least 1, got -1"),
        (["train-teacher", "--threads", "0"], "--threads: must be at least 1"),
        (["train-teacher", "--resume", "--overwrite"], "not allowed with argument"),
        (["distill", "--teacher", str(student), "--output", str(tmp_path), "--data",
          str(tmp_path)], "no larger than the student"),
        (["train-teacher", "--output", str(tmp_path / "done"), "--data", str(tmp_path),
          "--teacher-encoder", "pvt_v2_b0"], "already holds a teacher run"),
    ]
    (tmp_path / "done" / "teacher").mkdir(parents=True)
    (tmp_path / "done" / "teacher" / "best.pth").write_bytes(b"an earlier run's best")
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

    # the demo again: it continues its own finished run instead of training over it
    stamps = [(runs / role / "best.pth").stat().st_mtime_ns for role in ("teacher", "student")]
    status, out, err = run(capsys, "demo", "--preset", "smoke", "--data", str(data),
                           "--output", str(runs), "--teacher-encoder", "pvt_v2_b0", "--quiet")
    assert status == 0 and "continuing the earlier demo run" in out, err
    assert stamps == [(runs / r / "best.pth").stat().st_mtime_ns for r in ("teacher", "student")]

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
                           str(tmp_path / "pred"))  # the training size, 64 px
    assert "64 px, the size it was trained at" in out
    assert status == 0, err
    masks = sorted((tmp_path / "pred" / "masks").iterdir())
    assert [p.name for p in masks] == ["Kvasir_0000.png", "Kvasir_0001.png"]
    assert len(list((tmp_path / "pred" / "overlays").iterdir())) == 2

    onnx = tmp_path / "student.onnx"
    status, out, err = run(capsys, "export", str(student), str(onnx))
    assert status == 0 and onnx.is_file() and "onnxruntime check" in out, err
    assert "(N, 3, 64, 64)" in out


# ---------------------------------------------------------------------------------------------
# inference commands: image size, predict's report, threads (a stand-in model, no training)
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The stand-in model every checkpoint loads as; ``trained96.pth`` records 96 px in its
    training config, ``plain.pth`` (like the authors' files) records nothing."""
    model = RednessModel()
    monkeypatch.setattr("kdas_lite.train.load_trained", lambda path, *a, **k: model)
    torch.save({"train_config": {"image_size": 96}}, tmp_path / "trained96.pth")
    torch.save({"model": {}}, tmp_path / "plain.pth")
    for name in ("a.png", "b.png"):
        disc_image(tmp_path / "frames" / name)
    threads = torch.get_num_threads()
    yield model
    torch.set_num_threads(threads)


def sizes_seen(model: RednessModel) -> set[int]:
    sizes = {shape[-1] for shape, _ in model.seen}
    model.seen.clear()
    return sizes


def test_inference_uses_the_training_size_unless_told(capsys, tmp_path, monkeypatch, toy):
    frames, out = str(tmp_path / "frames"), str(tmp_path / "pred")
    status, stdout, err = run(capsys, "predict", str(tmp_path / "trained96.pth"), frames,
                              "--output", out)
    assert status == 0 and sizes_seen(toy) == {96}, err
    assert "96 px, the size it was trained at" in stdout
    status, stdout, err = run(capsys, "predict", str(tmp_path / "trained96.pth"), frames,
                              "--output", out, "--image-size", "64", "--overwrite", "--quiet")
    assert status == 0 and sizes_seen(toy) == {64}, err
    assert "64 px (--image-size; it was trained at 96 px" in stdout
    status, stdout, err = run(capsys, "predict", str(tmp_path / "plain.pth"), frames,
                              "--output", out, "--overwrite", "--quiet")
    assert status == 0 and sizes_seen(toy) == {352}, err
    assert "352 px, the paper's size: the checkpoint records no training size" in stdout

    from kdas_lite.data import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", n_train=2, n_test=1, size=64)
    status, stdout, err = run(capsys, "evaluate", str(tmp_path / "trained96.pth"), "--data",
                              str(data), "--sets", "Kvasir", "--quiet")
    assert status == 0 and sizes_seen(toy) == {96}, err

    exported = {}

    def fake_export(model, path, image_size, **kwargs):
        exported["size"] = image_size
        path.write_bytes(b"onnx")
        return path

    monkeypatch.setattr("kdas_lite.export.export_onnx", fake_export)
    status, stdout, err = run(capsys, "export", str(tmp_path / "trained96.pth"),
                              str(tmp_path / "m.onnx"), "--no-verify")
    assert status == 0 and exported["size"] == 96 and "(N, 3, 96, 96)" in stdout, err


def test_predict_reports_skipped_frames_shows_progress_and_takes_threads(capsys, tmp_path, toy):
    (tmp_path / "frames" / "broken.jpg").write_bytes(b"not a jpeg")
    status, out, err = run(capsys, "predict", str(tmp_path / "trained96.pth"),
                           str(tmp_path / "frames"), "--output", str(tmp_path / "pred"),
                           "--threads", "1")
    assert status == 1  # done, but not everything: scripts can tell
    assert "wrote 2 masks" in out and "Research use only" in out
    assert f"skipped {tmp_path / 'frames' / 'broken.jpg'}: cannot decode" in err
    assert "1 of 3 images were skipped" in err
    assert "predict: 100%" in err  # the progress bar
    assert {threads for _, threads in toy.seen} == {1}


def test_without_threads_the_thread_count_is_left_alone(capsys, tmp_path, toy):
    torch.set_num_threads(1)  # as OMP_NUM_THREADS=1 would have set it at start-up
    status, _, err = run(capsys, "predict", str(tmp_path / "trained96.pth"),
                         str(tmp_path / "frames"), "--output", str(tmp_path / "pred"), "--quiet")
    assert status == 0 and {threads for _, threads in toy.seen} == {1}, err



def test_a_same_size_teacher_on_purpose_gets_a_one_line_warning(capsys, tmp_path):
    from kdas_lite.models import PolypPVT

    b0 = PolypPVT("pvt_v2_b0")
    torch.save({"arch": b0.config(), "model": b0.state_dict()}, tmp_path / "b0.pth")
    status, _, err = run(capsys, "distill", "--teacher", str(tmp_path / "b0.pth"),
                         "--teacher-encoder", "pvt_v2_b0", "--data", str(tmp_path / "none"),
                         "--output", str(tmp_path / "run"))
    warning, error = err.strip().splitlines()
    assert warning.startswith("kdas-lite: warning: the teacher") and "no larger" in warning
    assert status == 2 and error.startswith("kdas-lite: error:") and "none" in error


def test_evaluate_takes_the_public_loaders_resize() -> None:
    from kdas_lite.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["evaluate", "a.pth"]).resize == "opencv"
    assert parser.parse_args(["evaluate", "a.pth", "--resize", "pil"]).resize == "pil"
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "a.pth", "--resize", "nearest"])
