"""kdas_lite.verdict and verdict_tables: the verdict box, the takeaways and notebook 04's
readings, all on the families of kdas_lite.lab_families (one source of truth)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import matplotlib
import pytest

from kdas_lite import verdict, verdict_tables
from kdas_lite.lab_data import lab_file
from kdas_lite.lab_families import (
    lab_tests,
    mechanism_tests,
    sweep_tests,
    teacher_tests,
    trend_tests,
)
from kdas_lite.lab_results import load_lab, load_mechanism, load_sweep

matplotlib.use("Agg")


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
            "rerun_rows": ["teacher", "alone", *deltas], "n_distinct_images": 562,
            "test_set_info": {"CVC-300": {"label": "CVC-300 (inferred)"}}}


CLEAR_UP, CLEAR_DOWN, NOISE = [0.10, 0.11, 0.09], [-0.20, -0.21, -0.19], [0.05, -0.06, 0.01]


def test_teacher_kvasir_reads_each_file_kind() -> None:
    lab = _lab({})
    assert verdict.teacher_kvasir(lab) == 0.8 and verdict.teacher_kvasir(lab, earlier=True) == 0.7
    assert verdict.teacher_kvasir({"teacher_check": {"teacher_kvasir": 0.859}}) == 0.859
    assert verdict.teacher_kvasir({"rows": {}, "teacher": {"Kvasir": 0.822}}) == 0.822
    assert verdict.teacher_kvasir({"rows": {}}) is None
    assert verdict.named_teacher({"rows": {}}, "x") == "x (score not recorded)"


def test_trend_words_follow_the_adjusted_p() -> None:
    sweep = _sweep(0.86, {6: [0.10, 0.11, 0.09], 24: [-0.01, 0.0, 0.01]})
    (_key, test), = trend_tests(sweep).items()
    assert test.mean == pytest.approx(-0.1) and test.sign == -1
    assert verdict.trend_word(test) == "the effect shrinks"
    noisy = trend_tests(_sweep(0.86, {6: [0.1, -0.1, 0.0], 24: [0.0, 0.1, -0.05]}))
    word = verdict.trend_word(next(iter(noisy.values())))
    assert word.startswith("no measurable change (smallest detectable effect ")


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
    assert "+0.100 [" in helped and "Holm" in helped and "all 562 distinct images" in helped
    kdas = lab_tests(lab)[("kdas", "avg")]
    neither = next(line for line in box.splitlines() if "*Neither" in line)
    assert "KDAS" in neither and f"smallest detectable effect {kdas.sde:.3f}" in neither
    assert "no difference" not in box.replace("no measurable difference", "")
    assert "not yet run" in box.splitlines()[-1]


def test_a_raw_hit_that_does_not_survive_holm_is_not_called_above() -> None:
    lab = _lab({f"r{i}": {"avg": NOISE} for i in range(30)} | {"x": {"avg": [0.05, 0.06, 0.055]}})
    x = lab_tests(lab)[("x", "avg")]
    assert x.p < 0.05 <= x.p_holm
    box = verdict.verdict_box(lab, None, None, None, None)
    assert "nothing, after Holm" in next(line for line in box.splitlines() if "*Helped*" in line)
    assert "X (all 562 distinct images" in next(line for line in box.splitlines()
                                                 if "*Neither" in line)


def test_the_shipped_transfer_set_is_the_link_to_docs_results() -> None:
    shipped = lab_file().parent / "transfer_set.json"  # tests/test_verdict_transfer.py: the box
    assert shipped.is_symlink() and shipped.resolve() == (
        Path(__file__).resolve().parents[1] / "docs" / "results" / "transfer_set.json")
    transfer = verdict.load_transfer()
    assert transfer is not None and transfer["_path"] == str(shipped)
    assert transfer["teachers"] and "primary" in transfer["families"]


def _sweep(teacher: float, deltas: dict[int, list[float]]) -> dict:
    budgets = {}
    for epochs, d in deltas.items():
        alone = {str(s): 0.6 for s in range(len(d))}
        budgets[str(epochs)] = {
            "alone": {"mDice": {"avg": alone}},
            "cwd": {"mDice": {"avg": {str(s): 0.6 + x for s, x in enumerate(d)}},
                    "delta_vs_alone": {"avg": {"per_seed": {str(s): x for s, x in
                                                            enumerate(d)}}}}}
    return {"budgets": budgets, "labels": {"cwd": "CWD"}, "n_distinct_images": 562,
            "teacher_check": {"teacher_kvasir": teacher, "at_epochs": max(deltas),
                              "margin": 0.02, "clearly_ahead": False}}


def test_sweep_lines_name_the_teacher_and_the_trend() -> None:
    sweep = _sweep(0.86, {6: [0.10, 0.11, 0.09], 24: [-0.01, 0.0, 0.01]})
    weaker = _sweep(0.82, {6: [0.0, 0.01, -0.01], 24: [-0.01, 0.0, 0.01]})
    box = verdict.verdict_box(_lab({}), sweep, weaker, None, None)
    line = next(li for li in box.splitlines() if "Kvasir 0.860); this" in li)
    assert "not** clearly ahead" in line and "the effect shrinks" in line
    assert "CWD above at 6 epochs" in line
    assert "Kvasir 0.820" in box
    text = verdict.takeaways(_lab({"cwd": {"avg": CLEAR_UP}}), sweep, None, weaker)
    assert "CWD on all 562 distinct images -0.100 [" in text and "the effect shrinks" in text


# ---------------------------------------------------------------------------------------------
# The committed files: one source of truth
# ---------------------------------------------------------------------------------------------
def _stored(entry: dict) -> tuple[float, float, str]:
    return entry["p"], entry["p_holm"], entry["verdict"]


def test_the_families_agree_with_what_the_committed_jsons_store() -> None:
    """The words of the page are the JSONs' words: every test lab_families computes equals the
    p, Holm p and verdict issue 28 wrote per row and set."""
    lab, mech = load_lab(), load_mechanism()
    for (row, s), t in lab_tests(lab).items():
        p, p_holm, word = _stored(lab["rows"][row]["delta_vs_alone"][s])
        assert (t.p, t.p_holm, t.verdict) == (pytest.approx(p), pytest.approx(p_holm), word)
    for (ref, row, s), t in mechanism_tests(mech).items():
        key = "delta_vs_alone" if ref == "alone" else "delta_vs_sgm"
        p, p_holm, word = _stored(mech["rows"][row][key][s])
        assert (t.p, t.p_holm, t.verdict) == (pytest.approx(p), pytest.approx(p_holm), word)
    sweep = load_sweep()
    for (row, e, s), t in sweep_tests(sweep).items():
        p, p_holm, word = _stored(sweep["budgets"][str(e)][row]["delta_vs_alone"][s])
        assert (t.p_holm, t.verdict) == (pytest.approx(p_holm), word)
    for (row, s), t in trend_tests(sweep).items():
        assert t.p_holm == pytest.approx(sweep["trends"][row][s]["p_holm"])


def test_the_committed_families_reproduce_issue_28s_counts() -> None:
    lab, mech = load_lab(), load_mechanism()
    sweeps = [load_sweep(), load_sweep(lab_file("budget_sweep_lab_teacher.json"))]

    def counts(found: dict) -> tuple[int, int, int]:
        return (len(found), sum(t.p < 0.05 for t in found.values()),
                sum(t.p_holm < 0.05 for t in found.values()))
    assert counts(lab_tests(lab)) == (72, 30, 10)
    assert counts(mechanism_tests(mech)) == (38, 11, 1)  # issue 28's family: Kvasir vs + L_SGM too
    for sweep in sweeps:
        assert counts(sweep_tests(sweep)) == (18, 6, 0)
    assert counts(teacher_tests(*sweeps)) == (18, 4, 0)
    box = verdict.verdict_box(lab, *sweeps[:1], sweeps[1], mech, None)
    at = lab_tests(lab)[("at", "avg")]
    assert at.p_holm == pytest.approx(0.11, abs=5e-3)  # the 5-seed re-run: still not "above"
    assert f"+ L_AT only (KDAS without L_SGM) (all 562 distinct images {at.format()}" in box
    assert "Holm over the 72 tests" in box and "Holm over the 38 tests" in box


def test_takeaways_give_the_cwd_trend_and_the_smallest_detectable_effect() -> None:
    lab, mech = load_lab(), load_mechanism()
    sweep, weaker = load_sweep(), load_sweep(lab_file("budget_sweep_lab_teacher.json"))
    text = verdict.takeaways(lab, sweep, mech, weaker)
    for doc in (lab, sweep, weaker, mech):
        assert f"Kvasir {verdict.teacher_kvasir(doc):.3f}" in text
    lab_line, longer = text.splitlines()[0], text.splitlines()[1]
    kdas = lab_tests(lab)[("kdas", "avg")]
    assert f"KDAS, kdas_lite L_AT {kdas.format()}" in lab_line
    assert f"no measurable difference (smallest detectable effect {kdas.sde:.3f})" in lab_line
    cwd = trend_tests(sweep)[("cwd", "Kvasir")]
    assert f"CWD on Kvasir {cwd.format()} ({cwd.format_p()}): the effect shrinks" in longer
    assert "all 562 distinct images" in lab_line
    assert "CWD helps" not in text and "stays indistinguishable" not in text  # issue 27's pair
    assert "no difference" not in text.replace('"no difference"', "").replace(
        "no measurable difference", "")


# ---------------------------------------------------------------------------------------------
# Notebook 04's readings
# ---------------------------------------------------------------------------------------------
def test_full_lab_plan_comes_from_the_json() -> None:
    rows, seeds = verdict_tables.full_lab_plan(load_lab())
    assert rows == ["alone", "sgm", "at", "kdas", "cwd"] and seeds == [0, 1, 2, 3, 4]
    assert verdict_tables.full_lab_plan(_lab({"cwd": {"avg": NOISE}})) == (["alone", "cwd"],
                                                                          [0, 1, 2])


def test_run_reading_regime_live_lines_and_time() -> None:
    lab = _lab({"cwd": {"Kvasir": CLEAR_UP, "avg": CLEAR_UP}})
    lab["rows"]["alone"]["runs"][0]["config"] = {"epochs": 6, "image_size": 128}
    keys = dict.fromkeys(verdict_tables.REGIME_KEYS)
    same = SimpleNamespace(**(keys | {"epochs": 6, "image_size": 128}))
    assert "trains the lab's regime" in verdict_tables.regime_note(lab, same)
    other = SimpleNamespace(**(keys | {"epochs": 2, "image_size": 128}))
    assert "`epochs` 6 in the lab, 2 here" in verdict_tables.regime_note(lab, other)
    text = verdict_tables.run_reading(lab, same, {"student alone": [0.5], "CWD": [0.62]}, 0.8,
                                      "Kvasir", "Kvasir", {"CWD": "cwd"}.get, [1.5, 2.0])
    cwd = next(line for line in text.splitlines() if line.startswith("- *CWD*"))
    assert "+0.120 (one seed)" in cwd and ": above, positive on 3 of 3" in cwd
    assert "outside the lab's range of seeds [+0.090, +0.110]" in cwd
    assert "*Teacher*: 0.800 on Kvasir, +0.300 above" in text
    assert "1.5–2.0 min here (2 runs" in text and "1.0–2.0 min (CPU)" in text


def test_lab_rows_table_lists_every_row_and_stars_what_survives_holm() -> None:
    lab = load_lab()
    table = verdict_tables.lab_rows_table(lab).splitlines()
    assert len(table) == 2 + len(lab["rows"]) - 1  # every row but the student alone
    assert "CVC-300 (inferred)" in table[0] and "ETIS-LaribPolypDB (20/196)" in table[0]
    assert "all 562 distinct images" in table[0]
    assert sum("earlier runs" in line for line in table) == sum(
        row.get("rerun") is False for row in lab["rows"].values())
    assert sum(line.count("*") - line.count("**") * 2 for line in table[2:]) == sum(
        t.sign != 0 for t in lab_tests(lab).values())


def test_exercise3_answer_follows_its_own_table() -> None:
    lab = _lab({"cwd": {"Kvasir": [0.01, 0.02, 0.0], "CVC-300": [0.2, 0.3, 0.25]}})
    lab["rows"]["teacher"]["delta_vs_alone"] = {
        "Kvasir": {"per_seed": {"0": 0.1, "1": 0.1}}, "CVC-300": {"per_seed": {"0": 0.4,
                                                                               "1": 0.4}}}
    answer = verdict_tables.exercise3_answer(lab, rows=("cwd",))
    assert "+0.010 on the seen sets, +0.250 on the unseen ones (smaller effect on the seen)" \
        in answer
    assert "more to give on the unseen sets" in answer
    assert "methods that gain on both groups (CWD) gain least on the seen sets" in answer


def test_mechanism_readings_and_figures_from_the_committed_runs() -> None:
    from kdas_lite import viz

    mech = load_mechanism()
    note, _, *table = verdict_tables.lost_polyp_table(mech).splitlines()
    assert f"within {mech['map_statistics']['band_px']} px" in note
    assert len(table) == 2 + 2 * len(mech["map_statistics"]["per_seed"])
    seed0 = mech["map_statistics"]["per_seed"]["0"]["all"]
    band = next(line for line in table if line.startswith("| 0 | band"))
    assert f"{seed0['error_rates']['sgm']['positive_rate_band']:.3f}" in band
    reading = verdict_tables.sgm_form_reading(mech)
    prob = mechanism_tests(mech)[("sgm", "sgm-prob", "avg")]
    assert f"{prob.format()} ({prob.format_p()}) → {prob.verdict}" in reading
    assert verdict_tables.lost_polyp_table({"rows": {}}).startswith("No map statistics")
    fig = viz.sgm_forms_figure(mech["map_statistics"])
    assert len(fig.axes) == 3  # logit form, its σ twin axis, the lost polyp
    lab = load_lab()
    tests = lab_tests(lab)
    forest = viz.forest_figure(tests, verdict_tables.row_labels(lab))
    assert len(forest.axes) == 2
    means = [line for line in forest.axes[1].get_lines() if line.get_marker() == "o"]
    filled = [line for line in means if line.get_markerfacecolor() != "white"]
    significant = [t for (_, s), t in tests.items() if s == "avg" and t.sign]
    assert len(means) == sum(s == "avg" for _, s in tests)
    assert sorted(line.get_xdata()[0] for line in filled) == sorted(t.mean for t in significant)
    left = fig.axes[0].get_lines()[0]  # the logit form's pull, 2(t − s)
    t, pull = left.get_xdata(), left.get_ydata()
    assert pull[-1] - pull[0] == pytest.approx(2 * (t[-1] - t[0]))
    with pytest.raises(ValueError, match="no test"):
        viz.forest_figure({}, {}, sets=("Kvasir",))


def _mechanism(per_row: dict[str, list[float]]) -> dict:
    """Rows with Kvasir and all-images mDice per seed; Δ vs the student alone from them."""
    alone = per_row["alone"]
    rows = {}
    for row, values in per_row.items():
        rows[row] = {"label": row, "runs": [{"seed": s, "mDice": {"avg": v, "Kvasir": v}}
                                            for s, v in enumerate(values)]}
        if row != "alone":
            rows[row]["delta_vs_alone"] = {s: {"per_seed": {
                str(k): v - a for k, (v, a) in enumerate(zip(values, alone, strict=True))}}
                for s in ("avg", "Kvasir")}
    return {"rows": rows, "teacher": {"Kvasir": 0.82}, "n_distinct_images": 562}


def test_mechanism_table_words_follow_the_adjusted_p_and_issue_28s_effect() -> None:
    mech = _mechanism({"alone": [0.60, 0.62, 0.61], "sgm": [0.40, 0.43, 0.41],
                       "sgm-prob": [0.60, 0.625, 0.605], "sgm-no-transpose": [0.41, 0.42, 0.43]})
    table = verdict_tables.mechanism_table(mech)
    prob = next(line for line in table.splitlines() if line.startswith("| sgm-prob"))
    # better than + L_SGM after Holm, but not shown equivalent to the student alone
    assert "reduces the harm" in prob and "**+0.197" in prob
    same = next(line for line in table.splitlines() if line.startswith("| sgm-no-transpose"))
    assert "no measurable effect on the harm" in same
    assert "Kvasir 0.820" in table and "| sgm | — | **-0.197" in table
    assert f"{len(mechanism_tests(mech))} comparisons" in table


def test_sweep_and_teacher_tables_bold_only_what_survives_holm() -> None:
    sweep = _sweep(0.86, {6: [0.10, 0.11, 0.09], 24: [0.05, -0.06, 0.01]})
    table = verdict_tables.sweep_table(sweep)
    cwd = next(line for line in table.splitlines() if line.startswith("| CWD"))
    six, last, trend = cwd.split(" | ")[2:5]
    assert six.startswith("**+0.100") and not last.startswith("**") and "Holm" in trend
    assert "| student alone (level) | all 562 distinct images | 0.600 | 0.600 |" in table
    weaker = _sweep(0.82, {6: [0.0, 0.01, -0.01], 24: [0.05, -0.06, 0.01]})
    teacher = verdict_tables.teacher_table(sweep, weaker)
    assert "Kvasir 0.860" in teacher and "Kvasir 0.820" in teacher
    assert "| CWD | all 562 distinct images |" in teacher


def test_key_results_give_kdas_with_its_detectable_effect_and_cwds_trend() -> None:
    lab, sweep = load_lab(), load_sweep()
    weaker = load_sweep(lab_file("budget_sweep_lab_teacher.json"))
    first, strong, weak = verdict.key_results(lab, sweep, weaker).splitlines()
    kdas = lab_tests(lab)[("kdas", "avg")]
    assert "all 562 distinct images" in first and f"{kdas.format()}" in first
    assert f"no measurable difference (smallest detectable effect {kdas.sde:.3f})" in first
    assert "CWD +0.091 [" in first and first.rstrip(".").endswith("above")
    assert "Kvasir 0.859" in strong and strong.endswith("the effect shrinks.")
    assert "Kvasir 0.822" in weak and "no measurable change (smallest detectable effect" in weak
    assert verdict.key_results(lab).count("\n") == 0  # no sweep: the lab's line alone
