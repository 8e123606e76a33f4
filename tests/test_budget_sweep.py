"""experiments/budget_sweep.py: the summary per budget and the teacher check on fake records
(the sweep itself is not run here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from kdas_lite.viz import budget_sweep_figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
sweep = pytest.importorskip("budget_sweep")


def fake(path: Path, kvasir: float, avg: float) -> None:
    """A record whose Kvasir mDice is ``kvasir`` and whose mean over its distinct images is
    ``avg`` (two sets of one image each: Kvasir and a ClinicDB of ``2·avg − kvasir``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sets = {"Kvasir": {"meanDic": kvasir, "n_images": 1},
            "CVC-ClinicDB": {"meanDic": 2 * avg - kvasir, "n_images": 1}}
    path.write_text(json.dumps({"table": {"datasets": sets}, "average": {"meanDic": avg}}))


def test_summary_pairs_each_budget_with_its_own_student_alone_and_checks_the_teacher(tmp_path):
    lab, runs = tmp_path / "lab_runs", tmp_path / "budget_runs"
    args = sweep.argparse.Namespace(budgets=[6, 12], seeds=[0, 1], records=runs)
    for seed, (a6, a12) in enumerate([(0.60, 0.70), (0.62, 0.74)]):
        fake(lab / f"alone-s{seed}.json", 0.0, 0.0)  # the lab's: another environment, unused
        fake(lab / f"cwd-s{seed}.json", 0.0, 0.0)  # the lab's, from another teacher: unused
        fake(runs / "e6" / f"alone-s{seed}.json", a6, 0.4)
        fake(runs / "e6" / f"cwd-s{seed}.json", a6 + 0.04, 0.5)
        fake(runs / "e12" / f"alone-s{seed}.json", a12, 0.5)
        fake(runs / "e12" / f"cwd-s{seed}.json", a12 - 0.01 * (seed + 1), 0.5)
    fake(lab / "teacher.json", 0.50, 0.5)  # the lab's teacher is not the sweep's
    fake(runs / "teacher.json", 0.80, 0.7)
    assert sweep.sweep_record_path(args, 6, "alone", 1) == runs / "e6" / "alone-s1.json"
    budgets = sweep.summary(args)
    assert budgets["6"]["cwd"]["delta_vs_alone"]["Kvasir"]["mean"] == pytest.approx(0.04)
    e12 = budgets["12"]["cwd"]["delta_vs_alone"]["Kvasir"]
    assert e12["per_seed"] == pytest.approx({"0": -0.01, "1": -0.02})
    half = 12.706 * 0.00707107 / 2 ** 0.5
    assert e12["ci95_t"] == pytest.approx([-0.015 - half, -0.015 + half], abs=1e-5)
    check = sweep.teacher_check(args, budgets)
    assert check["at_epochs"] == 12 and check["margin"] == pytest.approx(0.08)
    assert check["clearly_ahead"]
    fig = budget_sweep_figure({"budgets": budgets, "teacher_check": check,
                               "labels": sweep.LABELS})
    axes = fig.axes
    assert [ax.get_legend_handles_labels()[1] for ax in axes[:2]] == [["CWD"], ["CWD"]]
    assert list(axes[0].lines[0].get_ydata()) == pytest.approx([0.04, -0.015])  # Kvasir Δ
    assert list(axes[0].lines[0].get_xdata()) == pytest.approx([6, 12])


def test_the_results_block_tabulates_each_budget_and_ends_with_the_generated_reading(tmp_path):
    runs = tmp_path / "budget_runs"
    args = sweep.argparse.Namespace(budgets=[6, 12], seeds=[0, 1, 2], records=runs)
    for seed in range(3):
        fake(runs / "e6" / f"alone-s{seed}.json", 0.60, 0.40)
        fake(runs / "e6" / f"sgm-s{seed}.json", 0.50 + 0.01 * seed, 0.30)
        fake(runs / "e12" / f"alone-s{seed}.json", 0.70, 0.50)
        fake(runs / "e12" / f"sgm-s{seed}.json", 0.70 + 0.01 * (seed - 1), 0.50)
    doc = {"command": "python experiments/budget_sweep.py", "partial": True,
           "missing": ["e12/seed0/cwd"], "labels": sweep.LABELS,
           "budgets": sweep.summary(args), "teacher_check": None}
    text = sweep.markdown(doc)
    assert "**PARTIAL**: 1 run(s) not done yet: e12/seed0/cwd" in text
    assert ("| 6 | +L_SGM | 3 | 0.510 | 0.300 | -0.090 [-0.115, -0.065] (p 0.0041, Holm 0.01) "
            "| -0.100 [-0.100, -0.100] (p 0, Holm 0) |") in text
    assert "| 12 | student alone | 3 | 0.700 | 0.500 | — | — |" in text
    assert "**+L_SGM** (Δ vs the student alone, 3 seeds" in text
    assert "Kvasir: 6 ep -0.090 [-0.115, -0.065] (p 0.0041, Holm 0.01; below), 12 ep +0.000 " \
        "[-0.025, +0.025] (p 1.00, Holm 1.00; no measurable difference" in text
    # the trend: Δ(12) − Δ(6) per seed = +0.09 on every seed (Kvasir)
    assert "trend Δ(12) − Δ(6) +0.090 [+0.090, +0.090] (p 0, Holm 0): the effect grows" in text


def test_records_distilled_from_another_teacher_stop_the_sweep(tmp_path):
    runs = tmp_path / "budget_runs"
    args = sweep.argparse.Namespace(records=runs)
    teacher = tmp_path / "best.pth"
    teacher.write_bytes(b"the sweep's teacher")
    sha = sweep.file_sha256(teacher)
    plan = [(6, 0, "alone"), (6, 0, "kdas")]
    fake(runs / "e6" / "alone-s0.json", 0.6, 0.4)  # no teacher: never checked
    (runs / "e6" / "kdas-s0.json").write_text(json.dumps({"teacher_sha256": sha}))
    sweep.check_teacher(args, teacher, plan)  # same teacher: passes
    (runs / "e6" / "kdas-s0.json").write_text(json.dumps({"teacher_sha256": "f" * 64}))
    with pytest.raises(SystemExit, match=r"kdas-s0\.json was made with another teacher"):
        sweep.check_teacher(args, teacher, plan)


def test_block_and_compare_put_both_teachers_in_their_own_section(tmp_path):
    strong, weak = tmp_path / "strong", tmp_path / "weak"
    for runs, gain, teacher in ((strong, 0.06, 0.88), (weak, 0.02, 0.82)):
        for seed in range(3):
            fake(runs / "e6" / f"alone-s{seed}.json", 0.60, 0.40)
            fake(runs / "e6" / f"cwd-s{seed}.json", 0.60 + gain + 0.01 * seed, 0.45)
        fake(runs / "teacher.json", teacher, 0.7)
    docs = tmp_path / "RESULTS.md"
    begin, end = sweep.markers("sweep-strong")
    docs.write_text(f"# R\n{begin}\nold\n{end}\n<!-- budget-sweep: begin -->\nkept\n")
    common = dict(budgets=[6], seeds=[0, 1, 2], command="python experiments/budget_sweep.py",
                  all_images="pooled", figure=None)
    sweep.write(sweep.argparse.Namespace(records=weak, json=tmp_path / "weak.json",
                                         docs=None, compare=None, block="unused", **common),
                [])
    doc = sweep.write(sweep.argparse.Namespace(
        records=strong, json=tmp_path / "strong.json", docs=docs,
        compare=tmp_path / "weak.json", block="sweep-strong", **common), [])
    assert doc["compared_with"] == (tmp_path / "weak.json").as_posix()
    text = docs.read_text()
    assert "old" not in text and text.endswith("<!-- budget-sweep: begin -->\nkept\n")
    block = text.split(begin)[1].split(end)[0]
    assert "| 6 | CWD | 3 | 0.670 | 0.450 | +0.070 [+0.045, +0.095] (p 0.0067, Holm 0.0067)" \
        in block
    assert "stronger 0.880 (+0.280 over the student alone at 6 epochs); weaker 0.820" in block
    assert "the same runs in both sweeps" in block
    assert "Kvasir: 6 ep +0.040 [+0.040, +0.040] (p 0, Holm 0; better)" in block
    assert doc["teacher_comparison"]["cwd"]["6"]["Kvasir"]["verdict"] == "above"
    assert doc["budgets"]["6"]["cwd"]["delta_vs_alone"]["Kvasir"]["family"] == \
        "sweep (sweep-strong)"
    figure = budget_sweep_figure(doc, compare=json.loads((tmp_path / "weak.json").read_text()))
    assert [line.get_label() for line in figure.axes[0].lines if line.get_label()[0] != "_"] \
        == ["CWD, other teacher"]
    hollow = next(line for line in figure.axes[0].lines
                  if line.get_label() == "CWD, other teacher")
    assert list(hollow.get_ydata()) == pytest.approx([0.03])  # the weaker teacher's mean Δ
    twin_levels = [line.get_ydata()[0] for line in figure.axes[2].lines]
    assert twin_levels[-2:] == pytest.approx([0.88, 0.82])  # both teachers' levels
