"""The notebooks' generated sentences say what their inputs say, and nothing they do not."""

from __future__ import annotations

import re

import pytest

from kdas_lite.config import get_preset
from kdas_lite.course_text import (
    concentration_reading,
    evaluation_reading,
    minmax_reading,
    preset_departures,
    resize_reading,
    revival_reading,
    saturation_reading,
    seen_unseen_reading,
    spread_reading,
    static_figure_caption,
    unseen_sets,
    untrained_attention_note,
)
from kdas_lite.data import SetStatus
from kdas_lite.evaluate import PAPER_RESULTS, EvaluationTable
from kdas_lite.metrics import METRIC_NAMES
from kdas_lite.viz.explorer import MAP_KINDS

SETS = ("Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB")


def _table(dice: dict[str, float], *, params: int = 3_000_000, speed: float | None = 50.0,
           name: str = "model", **metrics: dict[str, float]) -> EvaluationTable:
    rows = {d: {m: 0.5 for m in METRIC_NAMES} | {"meanDic": v} for d, v in dice.items()}
    for metric, values in metrics.items():
        for d, v in values.items():
            rows[d][metric] = v
    status = {"ETIS-LaribPolypDB": SetStatus("ETIS-LaribPolypDB", 20, 196, "partial")}
    return EvaluationTable(rows, {d: 10 for d in dice}, model_name=name, params=params,
                           images_per_s=speed, size=128, device="cpu",
                           status={d: s for d, s in status.items() if d in dice})


# --- notebook 01 ------------------------------------------------------------------------------
def test_preset_departures_names_each_changed_size_with_the_presets_value() -> None:
    config = get_preset("cpu-lab", image_size=128, epochs=15, max_train_images=320)
    text = preset_departures(config)
    for changed in ("`image_size = 128` (the preset: 160)", "`epochs = 15` (the preset: 12)",
                    "`max_train_images = 320` (the preset: 200)"):
        assert changed in text
    assert "batch_size" not in text  # unchanged sizes are not listed
    assert "learning rate 0.0005" in text
    assert "as it is" in preset_departures(get_preset("cpu-lab"))


def test_saturation_reading_finds_the_plateau_where_the_overlap_ends() -> None:
    shifts = [0, 10, 20, 30, 40, 50]
    losses = [0.1, 0.9, 1.5, 1.89, 1.9, 1.9]
    wrong = [0.0, 0.04, 0.08, 0.12, 0.12, 0.12]
    overlap = [1.0, 0.7, 0.4, 0.0, 0.0, 0.0]
    text = saturation_reading(shifts, losses, wrong, overlap, width=30)
    assert "saturates at a shift of about 30 px" in text
    assert "at most 1% of the mask is 30 px" in text
    assert "costs 47% of the final L_seg with 33% of the final wrong pixels" in text
    with pytest.raises(ValueError, match="same length"):
        saturation_reading(shifts, losses[:-1], wrong, overlap, width=30)


def test_saturation_reading_says_when_the_shifts_never_separate_the_masks() -> None:
    text = saturation_reading([0, 5], [0.1, 0.5], [0.0, 0.1], [1.0, 0.5], width=30)
    assert "still overlaps the mask at the largest shift, 5 px" in text


# --- notebook 02 ------------------------------------------------------------------------------
def test_spread_reading_never_compares_identical_or_untrained_entropies() -> None:
    flat = {s: 1.0 for s in (1, 2, 3, 4)}
    text = spread_reading(flat, dict(flat), "random init")
    assert "untrained (random init)" in text and "uniform over the keys" in text
    assert "more spread out" not in text and "at 0" not in text
    # untrained but not uniform: still no comparison
    text = spread_reading({1: 0.9, 2: 0.8}, {1: 0.7, 2: 0.8}, "random init")
    assert "more spread out" not in text and "same entropy" not in text
    assert "their entropies range from 0.700 to 0.900" in text
    # pretrained encoders that tie everywhere: no "at 0, more focused at 0"
    text = spread_reading({1: 0.9, 2: 0.8}, {1: 0.9, 2: 0.8}, "ImageNet weights, not fine-tuned")
    assert "the same entropy at every stage" in text and "more spread out" not in text
    text = spread_reading(flat, dict(flat), "trained")  # trained, yet uniform: said as such
    assert text == ("With these encoders (trained) their attention is uniform over the keys at "
                    "every stage (every entropy ≥ 0.999): no stage separates the student from "
                    "the teacher.")


def test_spread_reading_compares_trained_encoders_stage_by_stage() -> None:
    text = spread_reading({1: 0.90, 2: 0.80, 3: 0.70}, {1: 0.95, 2: 0.60, 3: 0.70}, "trained")
    assert "more spread out than the teacher's at 1 (1), more focused at 1 (2)" in text
    assert "at the others" in text
    with pytest.raises(ValueError, match="same stages"):
        spread_reading({1: 0.9}, {2: 0.9}, "trained")


def test_static_figure_caption_names_only_the_columns_drawn() -> None:
    offline = static_figure_caption(MAP_KINDS[2:], stage=4)
    assert "3 map kinds" in offline and "not among them" in offline
    assert "last encoder stage" not in offline and "stage 4" not in offline
    assert "encoder attention: query point" not in offline
    pvt = static_figure_caption(MAP_KINDS, stage=4)
    assert "5 map kinds" in pvt and "stage 4" in pvt and "not among them" not in pvt
    assert all(kind in pvt for kind in MAP_KINDS)


def test_concentration_reading_answers_when_the_target_concentrates() -> None:
    text = concentration_reading([0.5, 1, 10], [0.03, 0.08, 0.999], [0.06, 0.10, 0.999])
    assert text.startswith("The target never puts more mass on the blob")
    assert "at s = 0.5, 1 (most at s = 0.5: 3.0% instead of 6.0%)" in text
    assert "at s = 10 both put the same mass" in text
    text = concentration_reading([2], [0.5], [0.3])
    assert text.startswith("The target concentrates on the blob more than the map at s = 2")
    with pytest.raises(ValueError):
        concentration_reading([], [], [])


def test_untrained_attention_note_says_untrained_and_how_to_see_trained_maps() -> None:
    text = untrained_attention_note(("tf_efficientnet_lite2", "tf_efficientnet_lite0"),
                                    "random init")
    assert "tf_efficientnet_lite2 / tf_efficientnet_lite0" in text
    assert "untrained (random initialisation)" in text
    assert "cannot compare teacher and student" in text and 'encoders = "pvt"' in text
    pretrained = untrained_attention_note(("a", "b"), "ImageNet weights, not fine-tuned")
    assert "never trained on polyps" in pretrained and "random initialisation" not in pretrained


def test_revival_reading_follows_the_measured_gradient() -> None:
    text = revival_reading("teacher", True, (0.5, 0.5), (0.0, 1.0), 0.0)
    assert text.startswith("The teacher's channel attention was dead (section 2)")
    assert "**no longer a constant**" in text and "was 0.0e+00" in text
    assert "training never moves these weights" in text
    live = revival_reading("teacher", False, (0.1, 0.9), (0.1, 0.9), 0.25)
    assert live.startswith("Neither model's channel attention is dead in this run. The "
                           "teacher's spanned [0.100, 0.900] before")
    assert "does receive a gradient (norm 2.5e-01)" in live and "nor was it before" in live


# --- notebook 05 ------------------------------------------------------------------------------
def _tables() -> dict[str, EvaluationTable]:
    return {
        "teacher": _table(dict(zip(SETS, (0.80, 0.75, 0.50, 0.40), strict=True)),
                          params=4_600_000, speed=50.0, name="teacher"),
        "student (KDAS)": _table(dict(zip(SETS, (0.70, 0.80, 0.45, 0.30), strict=True)),
                                 params=3_200_000, speed=100.0, name="student (KDAS)"),
        "student alone": _table(dict(zip(SETS, (0.72, 0.60, 0.40, 0.35), strict=True)),
                                params=3_200_000, speed=90.0, name="student alone"),
    }


def test_evaluation_reading_reads_the_tables() -> None:
    text = evaluation_reading(_tables(), "tf_efficientnet_lite2", "tf_efficientnet_lite0")
    assert "**teacher** scores the best mDice on 3 of 4 test sets: Kvasir, CVC-ColonDB, " \
           "ETIS-LaribPolypDB (20/196)." in text
    assert "**student (KDAS)** scores the best mDice on 1 of 4 test sets: CVC-ClinicDB." in text
    assert "**student alone**" not in text  # it wins nowhere
    assert "above** the student alone on 2 of 4 sets (CVC-ClinicDB, CVC-ColonDB)" in text
    assert "1.4× the student's parameters (4.60 M vs 3.20 M)" in text
    assert "2.0× as many images per second" in text
    assert "differs far more in size" in text
    gap = 0.80 - PAPER_RESULTS["teacher"]["Kvasir"]["meanDic"]
    assert f"Kvasir {gap:+.3f}" in text
    assert "ETIS-LaribPolypDB (20/196) not comparable (a subset)" in text
    # no student alone, no speed: those sentences go, nothing breaks
    tables = _tables()
    del tables["student alone"]
    tables["teacher"].images_per_s = None
    text = evaluation_reading(tables, "pvt_v2_b2", "pvt_v2_b0")
    assert "student alone" not in text and "images per second" not in text
    assert "the paper's PVTv2 pair" in text


def test_resize_reading_gives_the_direction_and_the_change() -> None:
    by_resize = {"opencv": _table({"Kvasir": 0.70}), "pil": _table({"Kvasir": 0.72})}
    text = resize_reading(by_resize, "Kvasir")
    assert "moves **up** on Kvasir: 0.7200 against 0.7000" in text and "(+0.0200)" in text
    by_resize["pil"] = _table({"Kvasir": 0.70})
    assert "moves **not at all**" in resize_reading(by_resize, "Kvasir")


def test_minmax_reading_lists_what_changed_and_what_cannot() -> None:
    normalised = _table({"Kvasir": 0.70}, MAE={"Kvasir": 0.05})
    raw = _table({"Kvasir": 0.60}, MAE={"Kvasir": 0.08})
    text = minmax_reading(normalised, raw, "Kvasir", [True, True, True])
    assert re.search(rf"2 of {len(METRIC_NAMES)} metrics change \(meanDic, MAE\)", text)
    assert "same in 3 of the 3 images checked" in text


def test_seen_unseen_reading_names_the_model_that_loses_least() -> None:
    text = seen_unseen_reading(_tables())
    # gaps: teacher 0.775 - 0.45 = 0.325, KDAS 0.75 - 0.375 = 0.375, alone 0.66 - 0.375 = 0.285
    assert text.startswith("**student alone** loses least")
    assert "+0.285 mDice" in text and "teacher +0.325" in text and "student (KDAS) +0.375" in text
    only_seen = {"teacher": _table({"Kvasir": 0.8})}
    assert seen_unseen_reading(only_seen).startswith("Needs both seen")


def test_unseen_sets_count_a_repeated_family_once() -> None:
    colondb = "CVC-ColonDB frames 149-208, the ids of PraNet's CVC-300"
    statuses = {"CVC-300": SetStatus("CVC-300", 60, 60, "inferred", note=colondb)}
    dice = {"Kvasir": 0.8, "CVC-ColonDB": 0.4, "CVC-300": 0.9, "ETIS-LaribPolypDB": 0.2}
    table = _table(dice)
    table.status.update(statuses)
    assert unseen_sets(table) == (["CVC-ColonDB", "ETIS-LaribPolypDB"], {"CVC-300": "CVC-ColonDB"})
    text = seen_unseen_reading({"teacher": table})
    assert "+0.500 mDice" in text  # 0.8 - mean(0.4, 0.2), CVC-300 counted with ColonDB
    assert "CVC-300 (inferred) is left out: its images are CVC-ColonDB's frames" in text
    # without its source set, or when not inferred, a set counts on its own
    alone = _table({"Kvasir": 0.8, "CVC-300": 0.9})
    alone.status.update(statuses)
    assert unseen_sets(alone) == (["CVC-300"], {})
    table.status["CVC-300"] = SetStatus("CVC-300", 60, 60, "complete", note=colondb)
    assert unseen_sets(table)[1] == {}
