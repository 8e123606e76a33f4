"""experiments/transfer_set.py: the arms' configurations, the run order and the pairing check
(no training here; tests/test_transfer.py trains the two-batch step on synthetic data)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
ts = pytest.importorskip("transfer_set")


def test_every_arm_trains_the_same_steps_and_only_b_c_d_use_the_transfer_set(tmp_path):
    args = ts.parse_args(["--out", str(tmp_path)])
    for labels, batches in ((200, 25), (50, 7)):
        for arm in ts.ARMS:
            config = ts.student_config(args, tmp_path, arm, labels, 1, 2)
            assert config.seed == 12 and config.train_subset == f"L{labels}"
            assert config.val_subset == "S_val" and config.student_encoder.endswith("lite0")
            assert abs(config.epochs * batches - args.steps) <= batches / 2
            assert config.warmup_epochs * batches == pytest.approx(ts.WARMUP_STEPS)
            uses_u = arm[0] in "BCD"
            assert (config.transfer_subset == "U") == uses_u
    targets = {arm: ts.student_config(args, tmp_path, arm, 200, 0, 0).transfer_target
               for arm in ts.ARMS}
    assert targets == {"A": None, "B": "labels", "C": "pseudo", "D-kdas": "kd", "D-cwd": "kd",
                       "D-pixel": "kd", "D-at": "kd", "E": None}
    kdas, e = (ts.student_config(args, tmp_path, a, 200, 0, 0) for a in ("D-kdas", "E"))
    assert kdas.replace(transfer_subset=None, transfer_target=None, name="x",
                        output_dir=None) == e.replace(name="x", output_dir=None)


def test_runs_go_label_budget_seed_teacher_with_the_primary_arms_first(tmp_path):
    args = ts.parse_args(["--out", str(tmp_path), "--seeds", "0", "1", "--extra-seeds", "3"])
    plan = ts.plan_runs(args)
    assert plan[:8] == [(arm, 200, 0, 0) for arm in
                        ("A", "C", "D-kdas", "D-cwd", "D-pixel", "D-at", "E", "B")]
    assert plan[8] == ("A", 200, 1, 0) and plan[16] == ("A", 200, 0, 1)
    extra = [run for run in plan if run[3] == 3 and run[1] == 200]
    assert {run[0] for run in extra} == {"A", "C", "D-kdas"}
    assert plan.index(extra[-1]) < plan.index(("A", 50, 0, 0))


def test_records_of_another_teacher_or_environment_do_not_pair():
    teacher = {"arm": "teacher", "teacher": 0, "teacher_sha256": "aa", "versions": {"t": "1"}}
    good = {"arm": "D-kdas", "teacher": 0, "seed": 0, "teacher_sha256": "aa",
            "versions": {"t": "1"}}
    ts.check_pairing([teacher, good])
    with pytest.raises(SystemExit, match="another teacher"):
        ts.check_pairing([teacher, {**good, "teacher_sha256": "bb"}])
    with pytest.raises(SystemExit, match="library"):
        ts.check_pairing([teacher, {**good, "versions": {"t": "2"}}])


def test_the_budget_expects_an_arms_recorded_time_before_this_process_has_run_it(tmp_path):
    args = ts.parse_args(["--out", str(tmp_path), "--records", str(tmp_path / "rec")])
    assert ts.expected_seconds(args, {}, "C") == 0.0
    runs = tmp_path / "rec" / "L200" / "t0"
    runs.mkdir(parents=True)
    for k, epoch_s in enumerate((10.0, 30.0)):
        history = [{"time_s": epoch_s}] * 4
        ts.save_json(runs / f"C-s{k}.json", {"arm": "C", "history": history, "eval_s": 20.0,
                                             "train_s": 4 * epoch_s})
    assert ts.expected_seconds(args, {}, "C") == pytest.approx(100.0)  # 4 · 20 + 20
    assert ts.expected_seconds(args, {"C": [50.0]}, "C") == pytest.approx(50.0)
    assert ts.expected_seconds(args, {}, "A") == 0.0


def test_a_paused_epoch_does_not_count_as_compute():
    history = [{"time_s": 30.0}, {"time_s": 1200.0}, {"time_s": 32.0}, {"time_s": 31.0}]
    record = {"history": history, "eval_s": 15.0, "train_s": 1293.0}
    assert ts.run_seconds(record) == pytest.approx(4 * 31.5 + 15.0)
