"""kdas_lite.verdict: Holm within each family, the verdict box, and notebook 04's readings."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import matplotlib
import pytest
from scipy import stats

from kdas_lite import verdict
from kdas_lite.lab_data import lab_file
from kdas_lite.lab_results import load_lab, load_mechanism, load_sweep

matplotlib.use("Agg")


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------
def test_holm_by_hand() -> None:
    # sorted 0.01, 0.02, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.04, 0.06, 0.06, 0.04 → running max
    assert verdict.holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert verdict.holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    adjusted = verdict.holm([0.01, math.nan, 0.02])  # nan does not count towards m
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1])
    assert adjusted[2] == pytest.approx(0.02)
    assert verdict.holm([]) == []


def test_paired_p_is_the_one_sample_t_test_and_nan_without_spread() -> None:
    deltas = [0.1, 0.12, 0.08, 0.11]
    assert verdict.paired_p(deltas) == pytest.approx(stats.ttest_1samp(deltas, 0).pvalue)
    assert math.isnan(verdict.paired_p([0.1])) and math.isnan(verdict.paired_p([0.1, 0.1]))


def _lab(deltas: dict[str, dict[str, list[float]]], teacher: float = 0.8,
         earlier: dict[str, bool] | None = None) -> dict:
    rows = {"alone": {"label": "student alone", "delta_vs_alone": {},
                      "runs": [{"seed": i, "train_s": 60.0, "config": {"epochs": 6}}
                               for i in range(3)]},
            "teacher": {"label": "teacher", "runs": [{"mDice": {"Kvasir": teacher}}],
                        "earlier": {"runs": [{"mDice": {"Kvasir": 0.7}}]},
                        "delta_vs_alone": {"Kvasir": {"per_seed": {"0": 0.2, "1": 0.3}}}}}
    for row, per_set in deltas.items():
        rows[row] = {"label": row.upper(), "rerun": not (earlier or {}).get(row, False),
                     "runs": [{"seed": i, "train_s": 120.0} for i in range(3)],
                     "delta_vs_alone": {s: {"per_seed": {str(i): d for i, d in enumerate(v)}}
                                        for s, v in per_set.items()}}
    return {"rows": rows, "test_sets": ["Kvasir", "CVC-300", "avg"], "machine": "CPU",
            "rerun_rows": ["teacher", "alone", *deltas],
            "test_set_info": {"CVC-300": {"label": "CVC-300 (inferred)"}}}


CLEAR_UP, CLEAR_DOWN, NOISE = [0.10, 0.11, 0.09], [-0.20, -0.21, -0.19], [0.05, -0.06, 0.01]


def test_lab_family_adjusts_within_the_family_and_leaves_out_alone_and_teacher() -> None:
    lab = _lab({"cwd": {"Kvasir": CLEAR_UP, "avg": CLEAR_UP}, "sgm": {"avg": NOISE}})
    found = verdict.lab_comparisons(lab)
    assert {(c.row, c.test_set) for c in found} == {("cwd", "Kvasir"), ("cwd", "avg"),
                                                     ("sgm", "avg")}
    raw = [c.p for c in found]
    assert [c.p_holm for c in found] == pytest.approx(verdict.holm(raw))
    cwd = next(c for c in found if c.row == "cwd" and c.test_set == "avg")
    assert cwd.p_holm > cwd.p and cwd.word == "above" and cwd.sign == 1
    assert next(c for c in found if c.row == "sgm").word == "no measurable difference"


def test_a_raw_hit_that_does_not_survive_holm_gets_no_word() -> None:
    # one small p among many: raw p < 0.05, adjusted above it
    lab = _lab({f"r{i}": {"avg": NOISE} for i in range(30)} | {"x": {"avg": [0.05, 0.06, 0.055]}})
    x = next(c for c in verdict.lab_comparisons(lab) if c.row == "x")
    assert x.p < 0.05 <= x.p_holm and x.word == "no measurable difference"


def test_stored_adjusted_p_values_are_used_when_every_comparison_has_one() -> None:
    lab = _lab({"cwd": {"avg": NOISE}})
    lab["rows"]["cwd"]["delta_vs_alone"]["avg"]["p_holm"] = 0.001
    assert verdict.lab_comparisons(lab)[0].p_holm == 0.001


def test_teacher_kvasir_reads_each_file_kind() -> None:
    lab = _lab({})
    assert verdict.teacher_kvasir(lab) == 0.8 and verdict.teacher_kvasir(lab, earlier=True) == 0.7
    assert verdict.teacher_kvasir({"teacher_check": {"teacher_kvasir": 0.859}}) == 0.859
    assert verdict.teacher_kvasir({"rows": {}, "teacher": {"Kvasir": 0.822}}) == 0.822
    assert verdict.teacher_kvasir({"rows": {}}) is None


# ---------------------------------------------------------------------------------------------
# The verdict box and the transfer set
# ---------------------------------------------------------------------------------------------
def test_verdict_box_names_helped_hurt_budget_teacher_and_transfer_not_yet_run() -> None:
    lab = _lab({"cwd": {"avg": CLEAR_UP}, "sgm": {"avg": CLEAR_DOWN}, "kdas": {"avg": NOISE},
                "old": {"avg": CLEAR_DOWN}}, earlier={"old": True})
    box = verdict.verdict_box(lab, None, None, None, None)
    assert all(line.startswith(">") for line in box.splitlines())
    helped = next(line for line in box.splitlines() if "*Helped*" in line)
    hurt = next(line for line in box.splitlines() if "*Hurt*" in line)
    assert "**CWD**" in helped and "6 student epochs" in helped and "Kvasir 0.800" in helped
    assert "**SGM**" in hurt and "teacher of 2026-12-01 (Kvasir 0.700)" in hurt
    assert "+0.100 [" in helped and "Holm" in helped
    assert "KDAS" in next(line for line in box.splitlines() if "No measurable" in line)
    assert "not yet run" in box.splitlines()[-1]


def test_load_transfer_is_none_when_absent_and_the_box_reads_it_when_present(tmp_path) -> None:
    assert verdict.load_transfer(tmp_path / "transfer_set.json") is None
    fake = _lab({"kdas": {"avg": CLEAR_UP}}, teacher=0.75)
    path = tmp_path / "transfer_set.json"
    path.write_text(json.dumps(fake), encoding="utf-8")
    transfer = verdict.load_transfer(path)
    assert transfer is not None and transfer["_path"] == str(path)
    box = verdict.verdict_box(_lab({}), None, None, None, transfer)
    tail = box.split("**Transfer set**")[1]
    assert "not yet run" not in tail and "**KDAS**" in tail
    assert "transfer-set teacher (Kvasir 0.750)" in tail
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.json.*no 'rows'"):
        verdict.load_transfer(tmp_path / "bad.json")


def test_the_shipped_transfer_set_is_absent_until_it_has_run() -> None:
    shipped = lab_file().parent / "transfer_set.json"
    assert (verdict.load_transfer() is None) == (not shipped.is_file())


def _sweep(teacher: float, deltas: dict[int, list[float]]) -> dict:
    budgets = {}
    for epochs, d in deltas.items():
        alone = {str(s): 0.6 for s in range(len(d))}
        budgets[str(epochs)] = {
            "alone": {"mDice": {"avg": alone}},
            "cwd": {"mDice": {"avg": {str(s): 0.6 + x for s, x in enumerate(d)}},
                    "delta_vs_alone": {"avg": {"per_seed": {str(s): x for s, x in
                                                            enumerate(d)}}}}}
    return {"budgets": budgets, "labels": {"cwd": "CWD"},
            "teacher_check": {"teacher_kvasir": teacher, "at_epochs": max(deltas),
                              "margin": 0.02, "clearly_ahead": False}}


def test_sweep_trend_and_teacher_families() -> None:
    sweep = _sweep(0.86, {6: [0.10, 0.11, 0.09], 24: [-0.01, 0.0, 0.01]})
    found = verdict.sweep_comparisons(sweep)
    assert [(c.budget, c.test_set) for c in found] == [(6, "avg"), (24, "avg")]
    trend = verdict.trend_comparisons(sweep)
    assert len(trend) == 1 and trend[0].interval.mean == pytest.approx(-0.1)
    assert trend[0].budget == 24 and trend[0].against == "itself at 6 epochs"
    weaker = _sweep(0.82, {6: [0.0, 0.01, -0.01], 24: [-0.01, 0.0, 0.01]})
    teacher = verdict.teacher_comparisons(sweep, weaker)
    assert teacher[0].interval.mean == pytest.approx(0.1) and teacher[0].budget == 6
    line = verdict._sweep_line(sweep, "sweep teacher")
    assert "Kvasir 0.860" in line and "not** clearly ahead" in line
    box = verdict.verdict_box(_lab({}), sweep, weaker, None, None)
    assert "Kvasir 0.860" in box and "Kvasir 0.820" in box


# ---------------------------------------------------------------------------------------------
# The committed files: the counts issue 28 reports
# ---------------------------------------------------------------------------------------------
def test_the_committed_families_reproduce_issue_28s_counts() -> None:
    lab, mech = load_lab(), load_mechanism()
    sweeps = [load_sweep(), load_sweep(lab_file("budget_sweep_lab_teacher.json"))]

    def counts(found: list) -> tuple[int, int, int]:
        return len(found), sum(c.p < 0.05 for c in found), sum(c.p_holm < 0.05 for c in found)
    assert counts(verdict.lab_comparisons(lab)) == (72, 30, 10)
    assert counts(verdict.mechanism_comparisons(mech)) == (34, 11, 2)
    for sweep in sweeps:
        assert counts(verdict.sweep_comparisons(sweep)) == (18, 6, 0)
    assert counts(verdict.teacher_comparisons(*sweeps)) == (18, 4, 0)
    at = next(c for c in verdict.lab_comparisons(lab) if c.row == "at" and c.test_set == "avg")
    assert at.p_holm == pytest.approx(0.076, abs=5e-4) and at.word == "no measurable difference"


def test_takeaways_name_every_teacher_by_its_own_file() -> None:
    lab, mech = load_lab(), load_mechanism()
    sweep, weaker = load_sweep(), load_sweep(lab_file("budget_sweep_lab_teacher.json"))
    text = verdict.takeaways(lab, sweep, mech, weaker)
    for doc in (lab, sweep, weaker, mech):
        assert f"Kvasir {verdict.teacher_kvasir(doc):.3f}" in text
    lab_line, longer = text.splitlines()[0], text.splitlines()[1]
    assert f"Kvasir {verdict.teacher_kvasir(lab):.3f}" in lab_line
    assert f"Kvasir {verdict.teacher_kvasir(sweep):.3f}" in longer
    assert "CWD helps" not in text and "stays indistinguishable" not in text  # issue 27's pair


# ---------------------------------------------------------------------------------------------
# Notebook 04's readings
# ---------------------------------------------------------------------------------------------
def test_full_lab_plan_comes_from_the_json() -> None:
    rows, seeds = verdict.full_lab_plan(load_lab())
    assert rows == ["alone", "sgm", "at", "kdas", "cwd"] and seeds == [0, 1, 2, 3, 4]
    assert verdict.full_lab_plan(_lab({"cwd": {"avg": NOISE}})) == (["alone", "cwd"], [0, 1, 2])


def test_run_reading_regime_live_lines_and_time() -> None:
    lab = _lab({"cwd": {"Kvasir": CLEAR_UP, "avg": CLEAR_UP}})
    lab["rows"]["alone"]["runs"][0]["config"] = {"epochs": 6, "image_size": 128}
    same = SimpleNamespace(**(dict.fromkeys(verdict.REGIME_KEYS) | {"epochs": 6,
                                                                    "image_size": 128}))
    assert "trains the lab's regime" in verdict.regime_note(lab, same)
    other = SimpleNamespace(**(dict.fromkeys(verdict.REGIME_KEYS) | {"epochs": 2,
                                                                     "image_size": 128}))
    assert "`epochs` 6 in the lab, 2 here" in verdict.regime_note(lab, other)
    text = verdict.run_reading(lab, same, {"student alone": [0.5], "CWD": [0.62]}, 0.8,
                               "Kvasir", "Kvasir", {"CWD": "cwd"}.get, [1.5, 2.0])
    cwd = next(line for line in text.splitlines() if line.startswith("- *CWD*"))
    assert "+0.120 (one seed)" in cwd and "above the student alone" in cwd
    assert "outside the lab's range of seeds [+0.090, +0.110]" in cwd
    assert "*Teacher*: 0.800 on Kvasir, +0.300 above" in text
    assert "1.5–2.0 min here (2 runs" in text and "1.0–2.0 min (CPU)" in text


def test_lab_rows_table_lists_every_row_with_the_summarys_labels() -> None:
    lab = load_lab()
    table = verdict.lab_rows_table(lab).splitlines()
    assert len(table) == 2 + len(lab["rows"]) - 1  # every row but the student alone
    assert "CVC-300 (inferred)" in table[0] and "ETIS-LaribPolypDB (20/196)" in table[0]
    assert sum("earlier runs" in line for line in table) == sum(
        row.get("rerun") is False for row in lab["rows"].values())


def test_exercise3_answer_follows_its_own_table() -> None:
    lab = _lab({"cwd": {"Kvasir": [0.01, 0.02, 0.0], "CVC-300": [0.2, 0.3, 0.25]}})
    lab["rows"]["teacher"]["delta_vs_alone"] = {
        "Kvasir": {"per_seed": {"0": 0.1, "1": 0.1}}, "CVC-300": {"per_seed": {"0": 0.4,
                                                                               "1": 0.4}}}
    answer = verdict.exercise3_answer(lab, rows=("cwd",))
    assert "+0.010 on the seen sets, +0.250 on the unseen ones (smaller effect on the seen)" \
        in answer
    assert "more to give on the unseen sets" in answer
    assert "methods that gain on both groups (CWD) gain least on the seen sets" in answer


def test_mechanism_readings_and_figures_from_the_committed_runs() -> None:
    from kdas_lite import viz

    mech = load_mechanism()
    note, _, *table = verdict.lost_polyp_table(mech).splitlines()
    assert f"within {mech['map_statistics']['band_px']} px" in note
    assert len(table) == 2 + 2 * len(mech["map_statistics"]["per_seed"])
    seed0 = mech["map_statistics"]["per_seed"]["0"]["all"]
    band = next(line for line in table if line.startswith("| 0 | band"))
    assert f"{seed0['error_rates']['sgm']['positive_rate_band']:.3f}" in band
    reading = verdict.sgm_form_reading(mech)
    assert "σ(P) form" in reading and "logit form" in reading and "Holm" in reading
    assert verdict.lost_polyp_table({"rows": {}}).startswith("No map statistics")
    fig = viz.sgm_forms_figure(mech["map_statistics"])
    assert len(fig.axes) == 3  # logit form, its σ twin axis, the lost polyp
    found = verdict.lab_comparisons(load_lab())
    forest = viz.forest_figure(found)
    assert len(forest.axes) == 2
    means = [line for line in forest.axes[1].get_lines() if line.get_marker() == "o"]
    filled = [line for line in means if line.get_markerfacecolor() != "white"]
    significant = [c for c in found if c.test_set == "avg" and c.sign]
    assert len(means) == sum(c.test_set == "avg" for c in found)
    assert sorted(line.get_xdata()[0] for line in filled) == sorted(
        c.interval.mean for c in significant)
    left = fig.axes[0].get_lines()[0]  # the logit form's pull, 2(t − s)
    t, pull = left.get_xdata(), left.get_ydata()
    assert pull[-1] - pull[0] == pytest.approx(2 * (t[-1] - t[0]))
    with pytest.raises(ValueError, match="no comparison"):
        viz.forest_figure([], sets=("Kvasir",))


def _mechanism(per_row: dict[str, list[float]]) -> dict:
    """Rows with all-images mDice per seed; Δ vs the student alone computed from them."""
    alone = per_row["alone"]
    rows = {}
    for row, values in per_row.items():
        rows[row] = {"label": row, "runs": [{"seed": s, "mDice": {"avg": v}}
                                            for s, v in enumerate(values)]}
        if row != "alone":
            rows[row]["delta_vs_alone"] = {"avg": {"per_seed": {
                str(s): v - a for s, (v, a) in enumerate(zip(values, alone, strict=True))}}}
    return {"rows": rows, "teacher": {"Kvasir": 0.82}}


def test_mechanism_table_words_follow_the_adjusted_p() -> None:
    mech = _mechanism({"alone": [0.60, 0.62, 0.61], "sgm": [0.40, 0.43, 0.41],
                       "sgm-prob": [0.60, 0.625, 0.605], "sgm-no-transpose": [0.41, 0.42, 0.43]})
    table = verdict.mechanism_table(mech)
    prob = next(line for line in table.splitlines() if line.startswith("| sgm-prob"))
    assert "removes the harm" in prob and "**+0.197" in prob  # bold: Holm p < 0.05
    same = next(line for line in table.splitlines() if line.startswith("| sgm-no-transpose"))
    assert "no measurable effect on the harm" in same
    assert "Kvasir 0.820" in table and "below the student alone" in table


def test_sweep_and_teacher_tables_bold_only_what_survives_holm() -> None:
    sweep = _sweep(0.86, {6: [0.10, 0.11, 0.09], 24: [0.05, -0.06, 0.01]})
    table = verdict.sweep_table(sweep)
    cwd = next(line for line in table.splitlines() if line.startswith("| CWD"))
    six, last, trend = cwd.split(" | ")[2:5]
    assert six.startswith("**+0.100") and not last.startswith("**") and "Holm" in trend
    assert "| student alone (level) | all test images | 0.600 | 0.600 |" in table
    weaker = _sweep(0.82, {6: [0.0, 0.01, -0.01], 24: [0.05, -0.06, 0.01]})
    teacher = verdict.teacher_table(sweep, weaker)
    assert "Kvasir 0.860" in teacher and "Kvasir 0.820" in teacher
    assert "| CWD | all test images |" in teacher
