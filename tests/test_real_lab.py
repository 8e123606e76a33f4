"""experiments/real_lab.py: the pure parts (paired differences, summary, tables, the docs block)
on fake run records; the long experiment itself is not run here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
real_lab = pytest.importorskip("real_lab")
real_lab_runs = pytest.importorskip("real_lab_runs")
real_lab_summary = pytest.importorskip("real_lab_summary")


def record(row: str, seed: int | None, kvasir: float, colondb: float) -> dict:
    """A run record as run_one writes it, with two test sets of 100 and 300 images."""
    sets = {"Kvasir": {"meanDic": kvasir, "n_images": 100},
            "CVC-ColonDB": {"meanDic": colondb, "n_images": 300}}
    return {"row": row, "seed": seed, "train_s": 60.0, "eval_s": 30.0, "best_epoch": 3,
            "table": {"datasets": sets, "params": 1000, "images_per_s": 5.0},
            "average": {"meanDic": (kvasir + 3 * colondb) / 4, "meanIoU": 0.5},
            "config": {"row": row, "seed": seed}}


RECORDS = [record("teacher", None, 0.85, 0.70),
           record("alone", 0, 0.70, 0.50), record("alone", 1, 0.72, 0.54),
           record("kdas", 0, 0.74, 0.52), record("kdas", 1, 0.73, 0.58),
           record("sgm", 1, 0.70, 0.50)]  # seed 0 of this row not finished


def test_paired_deltas_match_seeds_and_compare_the_one_teacher_with_every_seed():
    kdas = real_lab_summary.paired_deltas(RECORDS, "kdas", "Kvasir")
    assert kdas == pytest.approx({0: 0.04, 1: 0.01})
    assert real_lab_summary.paired_deltas(RECORDS, "sgm", "CVC-ColonDB") == pytest.approx(
        {1: -0.04})
    assert real_lab_summary.paired_deltas(RECORDS, "teacher", "Kvasir") == pytest.approx(
        {0: 0.15, 1: 0.13})


def test_summary_is_json_ready_with_mean_std_and_per_set_values(tmp_path):
    stats = real_lab_summary.summary(RECORDS)
    assert stats["test_sets"] == ["Kvasir", "CVC-ColonDB", "avg"]
    kdas = stats["rows"]["kdas"]
    assert kdas["delta_vs_alone"]["Kvasir"]["mean"] == pytest.approx(0.025)
    assert kdas["delta_vs_alone"]["Kvasir"]["std"] == pytest.approx(0.0212132, abs=1e-6)
    # avg = image-weighted: seed 0 (0.74 + 3·0.52)/4 − (0.70 + 3·0.50)/4 = 0.025
    assert kdas["delta_vs_alone"]["avg"]["per_seed"]["0"] == pytest.approx(0.025)
    assert stats["rows"]["sgm"]["delta_vs_alone"]["Kvasir"]["std"] is None  # one seed
    assert "delta_vs_alone" in stats["rows"]["alone"] and not stats["rows"]["alone"][
        "delta_vs_alone"]
    assert [run["mDice"]["CVC-ColonDB"] for run in kdas["runs"]] == [0.52, 0.58]
    path = tmp_path / "sub" / "real_lab.json"
    real_lab_runs.save_json(path, stats)
    assert json.loads(path.read_text())["rows"]["teacher"]["runs"][0]["config"] == {
        "row": "teacher", "seed": None}


def test_markdown_tables_label_sets_and_sign_the_differences():
    text = real_lab_summary.markdown_tables(real_lab_summary.summary(RECORDS),
                                    {"CVC-ColonDB": "CVC-ColonDB (test label)"})
    assert "| row | runs | Kvasir | CVC-ColonDB (test label) | all distinct images |" in text
    assert "| KDAS, kdas_lite L_AT | 2 | 0.735 ± 0.007 |" in text
    assert "| KDAS, kdas_lite L_AT | +0.025 ± 0.021 |" in text
    assert "| student + L_SGM only (= the public code's KDAS) | — | -0.020 | — | -0.035 |" \
        in text  # seed 0 missing: a dash, not a made-up number


def test_replace_block_rewrites_only_between_the_markers(tmp_path, capsys):
    doc = tmp_path / "RESULTS.md"
    start, end = real_lab_summary.START, real_lab_summary.END
    doc.write_text(f"# Top\n{start}\nold table\n{end}\n## Rest\n")
    real_lab_summary.replace_block(doc, "new table\n")
    assert doc.read_text() == f"# Top\n{start}\nnew table\n{end}\n## Rest\n"
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    real_lab_summary.replace_block(bare, "new table\n")
    assert bare.read_text() == "no markers\n" and "no" in capsys.readouterr().err


def test_missing_runs_are_the_plan_without_compact_records_and_the_teacher_comes_first(
        tmp_path):
    args = argparse.Namespace(out=tmp_path, teacher_seed=0, records=tmp_path / "lab_runs")
    real_lab_runs.save_json(args.records / "alone-s0.json", RECORDS[1])
    real_lab_runs.save_json(args.records / "teacher.json", RECORDS[0])
    real_lab_runs.save_json(tmp_path / "results" / "seed0" / "kdas.json", RECORDS[3])  # full only
    plan = [("teacher", 0), ("alone", 0), ("kdas", 0), ("alone", 1)]
    assert real_lab.missing_runs(args, plan) == ["seed0/kdas", "seed1/alone"]
    assert [r["row"] for r in real_lab_runs.load_compact(args.records)] == ["teacher", "alone"]
    assert [r["row"] for r in real_lab_runs.load_records(tmp_path)] == ["kdas"]


def test_plan_interleaves_the_headline_rows_by_seed_and_the_mechanism_part_is_its_own(
        tmp_path):
    args = real_lab.parse_args(["--out", str(tmp_path), "--seeds", "0", "1",
                                "--mechanism-seeds", "0"])
    plan = real_lab.plan_runs(args)
    assert plan == [("teacher", 0), ("alone", 0), ("sgm", 0), ("at", 0), ("kdas", 0),
                    ("cwd", 0), ("alone", 1), ("sgm", 1), ("at", 1), ("kdas", 1), ("cwd", 1)]
    assert args.records == Path("docs/results/lab_runs")
    # the mechanism part: its own + L_SGM (same teacher as the interventions), own records
    mech = real_lab.parse_args(["--out", str(tmp_path), "--mechanism",
                                "--mechanism-seeds", "0", "1"])
    assert real_lab.plan_runs(mech) == [("teacher", 0)] + [
        (row, seed) for seed in (0, 1) for row in ("alone", "sgm", "sgm-prob",
                                                   "sgm-no-transpose", "sgm-teacher-std",
                                                   "sgm-equal-grad")]
    assert mech.records == Path("docs/results/mechanism_runs")


def test_the_teacher_is_trained_again_only_when_a_distilled_run_still_needs_its_weights(
        tmp_path):
    args = argparse.Namespace(out=tmp_path, records=tmp_path / "lab_runs")
    real_lab_runs.save_json(args.records / "teacher.json", RECORDS[0])
    real_lab_runs.save_json(args.records / "kdas-s0.json", RECORDS[3])
    assert not real_lab_runs.needs_teacher(args, [("teacher", 0), ("alone", 0), ("kdas", 0)])
    assert real_lab_runs.needs_teacher(args, [("teacher", 0), ("kdas", 0), ("sgm", 0)])
    checkpoint = real_lab_runs.teacher_checkpoint(args)
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    assert not real_lab_runs.needs_teacher(args, [("teacher", 0), ("kdas", 0), ("sgm", 0)])


def full_record(tmp_path, row: str, seed: int) -> dict:
    config = real_lab_runs.run_config(real_lab.parse_args(["--out", str(tmp_path / "out")]),
                                 Path("/machine/data"), row, seed).to_dict()
    return {**record(row, seed, 0.7, 0.5), "label": real_lab.ROWS[row].label,
            "best_val_dice": 0.6, "config": config, "history": [{"epoch": 1}],
            "resumed": False, "image_dice": {"Kvasir": {"b": 0.25, "a": 0.5},
                                             "CVC-ColonDB": {"z": 1 / 3}}}


def test_compact_records_have_no_machine_path_and_sorted_image_dice(tmp_path):
    args = real_lab.parse_args(["--out", str(tmp_path / "out"),
                                "--records", str(tmp_path / "lab_runs")])
    real_lab_runs.save_compact(args, full_record(tmp_path, "kdas", 1))
    text = (tmp_path / "lab_runs" / "kdas-s1.json").read_text()
    assert str(tmp_path) not in text and "/machine/data" not in text
    small = json.loads(text)
    assert small["config"]["data_root"] == "shared/data"
    assert small["config"]["output_dir"] == "runs/seed1/kdas"  # relative to --out
    assert small["image_dice"] == {"Kvasir": [0.5, 0.25], "CVC-ColonDB": [0.33333]}
    assert json.loads((tmp_path / "lab_runs" / "test_images.json").read_text()) == {
        "Kvasir": ["a", "b"], "CVC-ColonDB": ["z"]}
    other = full_record(tmp_path, "alone", 1)
    other["image_dice"]["Kvasir"] = {"c": 0.1}
    with pytest.raises(SystemExit, match="other test images"):
        real_lab_runs.save_compact(args, other)


def test_run_done_accepts_the_same_settings_and_stops_on_others(tmp_path):
    args = real_lab.parse_args(["--out", str(tmp_path / "out"),
                                "--records", str(tmp_path / "lab_runs")])
    real_lab_runs.save_compact(args, full_record(tmp_path, "kdas", 1))
    same = real_lab_runs.run_config(args, Path("/elsewhere/data"), "kdas", 1)
    assert real_lab_runs.run_done(args, "kdas", 1, same)
    other = real_lab_runs.run_config(args, tmp_path, "kdas", 2)
    assert not real_lab_runs.run_done(args, "kdas", 2, other)
    with pytest.raises(SystemExit, match="other settings"):
        real_lab_runs.run_done(args, "kdas", 1, same.replace(alpha=0.5))


def test_lab_summary_replaces_rerun_rows_and_keeps_the_others_marked(tmp_path):
    old = {"rows": {
        "alone": {"label": "student alone", "runs": [{"seed": 0, "config": {
            "data_root": "/work/shared/data", "output_dir": "runs/real-lab/runs/seed0/alone"}}],
            "delta_vs_alone": {}},
        "pixel": {"label": "pixel KD (Hinton)", "runs": [{"seed": 0, "config": {
            "data_root": "/work/shared/data", "output_dir": "x"}}],
            "delta_vs_alone": {"Kvasir": {"per_seed": {"0": -0.02, "1": -0.01, "2": -0.03}}}}}}
    (tmp_path / "real_lab.json").write_text(json.dumps(old))
    args = real_lab.parse_args(["--out", str(tmp_path / "out"), "--json",
                                str(tmp_path / "real_lab.json"),
                                "--records", str(tmp_path / "lab_runs")])
    layout = argparse.Namespace(status={})
    stats = real_lab_summary.summary(RECORDS)
    lab = real_lab_summary.lab_summary(args, layout, {}, stats, {}, [], 60.0)
    assert lab["data_root"] == "shared/data" and lab["records"] == "lab_runs"
    assert lab["rows"]["alone"]["rerun"] and lab["rows"]["alone"]["earlier"]["runs"][0][
        "seed"] == 0
    pixel = lab["rows"]["pixel"]
    assert not pixel["rerun"] and "2026-12-01" in pixel["note"]
    assert pixel["runs"][0]["config"]["data_root"] == "shared/data"
    assert pixel["delta_vs_alone"]["Kvasir"]["ci95_t"] == pytest.approx(
        [-0.02 - 4.303 * 0.01 / 3**0.5, -0.02 + 4.303 * 0.01 / 3**0.5])
    assert set(lab["rerun_rows"]) == {"teacher", "alone", "kdas", "sgm"}
    assert "/work/" not in json.dumps({k: v for k, v in lab.items() if k != "_path"})


def test_every_row_has_a_valid_config_that_differs_from_kdas_only_in_its_switches(tmp_path):
    args = real_lab.parse_args(["--out", str(tmp_path)])
    kdas = real_lab_runs.run_config(args, tmp_path, "kdas", 1).to_dict()  # the row without switches
    for row in real_lab.ROWS:
        config = real_lab_runs.run_config(args, tmp_path, row, 1)
        if row != "teacher":
            changed = {k for k, v in config.to_dict().items() if kdas[k] != v}
            if row.startswith("sgm-"):  # the mechanism rows: + L_SGM with one change
                changed -= {"use_at"}
            assert changed <= {"name", "output_dir", *real_lab.ROWS[row].overrides}, row
    assert real_lab_runs.run_config(args, tmp_path, "kdas-a0.5", 1).alpha == 0.5


def test_first_step_weight_equalises_the_untrained_students_gradients(tmp_path):
    from training_helpers import tiny_config, tiny_dataset

    from kdas_lite.gradients import term_gradients
    from kdas_lite.runs import load_trained
    from kdas_lite.train import build_dataloaders, build_model, make_objective, train_teacher

    data = tiny_dataset(tmp_path)
    teacher = train_teacher(tiny_config(data, tmp_path / "t", student_encoder="pvt_v2_b0"),
                            progress=False).best_path
    config = tiny_config(data, tmp_path / "s", student_encoder="pvt_v2_b0", use_at=False,
                         seed=3)
    weight = real_lab_runs.first_step_weight(config, teacher)
    assert weight == real_lab_runs.first_step_weight(config, teacher)  # reproducible
    student = build_model(config.student_encoder, config)
    _, loader, _ = build_dataloaders(config, student.input_mean, student.input_std,
                                     progress=False)
    images, masks = next(iter(loader))
    weighted = make_objective(config.replace(sgm_weight=weight), load_trained(teacher), student)
    grads = term_gradients(student, weighted, images, masks)
    assert grads["grad_sgm"] == pytest.approx(grads["grad_seg"], rel=1e-4)


def test_reproduction_compares_rerun_runs_with_the_earlier_run_of_the_same_seed():
    lab = {"rows": {
        "alone": {"label": "alone", "rerun": True, "runs": [{"seed": 0, "mDice": {"avg": 0.41}},
                                                            {"seed": 3, "mDice": {"avg": 0.4}}],
                  "earlier": {"runs": [{"seed": 0, "mDice": {"avg": 0.41}}]}},
        "teacher": {"label": "teacher", "rerun": True, "runs": [{"seed": None,
                                                                 "mDice": {"avg": 0.694}}],
                    "earlier": {"runs": [{"seed": None, "mDice": {"avg": 0.697}}]}},
        "cwd": {"label": "cwd", "rerun": False, "runs": [{"seed": 0, "mDice": {"avg": 0.5}}]}}}
    assert real_lab_summary.reproduction(lab) == ["alone s0 0.4100 vs 0.4100 (identical)",
                                          "teacher 0.6940 vs 0.6970 (Δ -0.0030)"]
