"""benchmarks/budget_sweep.py: the summary per budget and the teacher check on fake records
(the sweep itself is not run here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
sweep = pytest.importorskip("budget_sweep")


def fake(path: Path, kvasir: float, avg: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"table": {"datasets": {"Kvasir": {"meanDic": kvasir}}},
                                "average": {"meanDic": avg}}))


def test_summary_pairs_each_budget_with_its_own_student_alone_and_checks_the_teacher(tmp_path):
    lab, runs = tmp_path / "lab_runs", tmp_path / "budget_runs"
    args = sweep.argparse.Namespace(budgets=[6, 12], seeds=[0, 1], lab_records=lab,
                                    records=runs)
    for seed, (a6, a12) in enumerate([(0.60, 0.70), (0.62, 0.74)]):
        fake(lab / f"alone-s{seed}.json", a6, 0.4)
        fake(lab / f"cwd-s{seed}.json", a6 + 0.04, 0.5)
        fake(runs / "e12" / f"alone-s{seed}.json", a12, 0.5)
        fake(runs / "e12" / f"cwd-s{seed}.json", a12 - 0.01 * (seed + 1), 0.5)
    fake(lab / "teacher.json", 0.80, 0.7)
    budgets = sweep.summary(args)
    assert budgets["6"]["cwd"]["delta_vs_alone"]["Kvasir"]["mean"] == pytest.approx(0.04)
    e12 = budgets["12"]["cwd"]["delta_vs_alone"]["Kvasir"]
    assert e12["per_seed"] == pytest.approx({"0": -0.01, "1": -0.02})
    half = 12.706 * 0.00707107 / 2 ** 0.5
    assert e12["ci95_t"] == pytest.approx([-0.015 - half, -0.015 + half], abs=1e-5)
    check = sweep.teacher_check(args, budgets)
    assert check["at_epochs"] == 12 and check["margin"] == pytest.approx(0.08)
    assert check["clearly_ahead"]
    sweep.figure(budgets, check, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 1000
