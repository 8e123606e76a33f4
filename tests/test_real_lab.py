"""benchmarks/real_lab.py: the pure parts (paired differences, summary, tables, the docs block)
on fake run records; the long experiment itself is not run here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
real_lab = pytest.importorskip("real_lab")


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
    kdas = real_lab.paired_deltas(RECORDS, "kdas", "Kvasir")
    assert kdas == pytest.approx({0: 0.04, 1: 0.01})
    assert real_lab.paired_deltas(RECORDS, "sgm", "CVC-ColonDB") == pytest.approx({1: -0.04})
    assert real_lab.paired_deltas(RECORDS, "teacher", "Kvasir") == pytest.approx(
        {0: 0.15, 1: 0.13})


def test_summary_is_json_ready_with_mean_std_and_per_set_values(tmp_path):
    stats = real_lab.summary(RECORDS)
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
    real_lab.save_json(path, stats)
    assert json.loads(path.read_text())["rows"]["teacher"]["runs"][0]["config"] == {
        "row": "teacher", "seed": None}


def test_markdown_tables_label_sets_and_sign_the_differences():
    text = real_lab.markdown_tables(real_lab.summary(RECORDS),
                                    {"CVC-ColonDB": "CVC-ColonDB (test label)"})
    assert "| row | runs | Kvasir | CVC-ColonDB (test label) | avg (all images) |" in text
    assert "| KDAS, kdas_lite L_AT | 2 | 0.735 ± 0.007 |" in text
    assert "| KDAS, kdas_lite L_AT | +0.025 ± 0.021 |" in text
    assert "| student + L_SGM only (= the public code's KDAS) | — | -0.020 | — | -0.035 |" \
        in text  # seed 0 missing: a dash, not a made-up number


def test_replace_block_rewrites_only_between_the_markers(tmp_path, capsys):
    doc = tmp_path / "RESULTS.md"
    doc.write_text(f"# Top\n{real_lab.START}\nold table\n{real_lab.END}\n## Rest\n")
    real_lab.replace_block(doc, "new table\n")
    assert doc.read_text() == f"# Top\n{real_lab.START}\nnew table\n{real_lab.END}\n## Rest\n"
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    real_lab.replace_block(bare, "new table\n")
    assert bare.read_text() == "no markers\n" and "no" in capsys.readouterr().err


def test_missing_runs_are_the_plan_without_records_and_load_records_puts_the_teacher_first(
        tmp_path):
    args = argparse.Namespace(out=tmp_path, teacher_seed=0)
    real_lab.save_json(tmp_path / "results" / "seed0" / "alone.json", RECORDS[1])
    real_lab.save_json(tmp_path / "results" / "teacher.json", RECORDS[0])
    plan = [("teacher", 0), ("alone", 0), ("kdas", 0), ("alone", 1)]
    assert real_lab.missing_runs(args, plan) == ["seed0/kdas", "seed1/alone"]
    assert [r["row"] for r in real_lab.load_records(tmp_path)] == ["teacher", "alone"]


def test_every_row_has_a_valid_config_that_differs_from_kdas_only_in_its_switches(tmp_path):
    args = real_lab.parse_args(["--out", str(tmp_path)])
    kdas = real_lab.run_config(args, tmp_path, "kdas", 1).to_dict()  # the row without switches
    for row in real_lab.ROWS:
        config = real_lab.run_config(args, tmp_path, row, 1)
        if row != "teacher":
            changed = {k for k, v in config.to_dict().items() if kdas[k] != v}
            assert changed <= {"name", "output_dir", *real_lab.ROWS[row].overrides}, row
    assert real_lab.run_config(args, tmp_path, "kdas-a0.5", 1).alpha == 0.5
