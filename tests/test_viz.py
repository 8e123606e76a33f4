"""The figures of kdas_lite.viz show the numbers they claim, and the explorer reacts to its
controls. Tiny random-init PVTv2-b0 models at 64 px play both teacher and student."""

from __future__ import annotations

import math
import re
import sys

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from kdas_lite import viz
from kdas_lite.losses import attention_kd_loss, attention_target, boundary_weight, sgm_loss
from kdas_lite.metrics import METRIC_NAMES
from kdas_lite.models import (
    PolypPVT,
    attention_to_image,
    build_student,
    count_parameters,
    encoder_attention_maps,
)

matplotlib.use("Agg")
SIZE = 64


@pytest.fixture(scope="module")
def pair() -> tuple[PolypPVT, PolypPVT]:
    torch.manual_seed(0)
    teacher = build_student().eval()
    torch.manual_seed(1)
    student = build_student().eval()
    return teacher, student


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (80, 96, 3), dtype=np.uint8) for _ in range(2)]


@pytest.fixture(scope="module")
def masks() -> list[np.ndarray]:
    first, second = np.zeros((80, 96), bool), np.zeros((80, 96), bool)
    first[20:50, 30:70] = True
    second[5:30, 10:40] = True
    return [first, second]


def _images_of(ax) -> list[np.ndarray]:
    return [np.asarray(im.get_array()) for im in ax.get_images()]


# ---------------------------------------------------------------------------------------------
# arrays
# ---------------------------------------------------------------------------------------------
def test_to_rgb_undoes_the_normalisation_and_scales_uint8() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.random((8, 10, 3)).astype(np.float32)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    normalised = (torch.from_numpy(rgb).permute(2, 0, 1) - torch.tensor(mean)[:, None, None]) \
        / torch.tensor(std)[:, None, None]
    np.testing.assert_allclose(viz.to_rgb(normalised[None], mean, std), rgb, atol=1e-6)
    as_uint8 = (rgb * 255).astype(np.uint8)
    np.testing.assert_allclose(viz.to_rgb(as_uint8), as_uint8 / 255.0, atol=1e-6)
    assert viz.to_rgb(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match="batch"):
        viz.to_rgb(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="both mean and std"):
        viz.to_rgb(rgb, mean=mean)


def test_to_map_drops_singleton_dims_only() -> None:
    assert viz.to_map(torch.ones(1, 1, 3, 4)).shape == (3, 4)
    with pytest.raises(ValueError, match="one 2-D map"):
        viz.to_map(torch.ones(2, 1, 3, 4))


# ---------------------------------------------------------------------------------------------
# data and loss figures
# ---------------------------------------------------------------------------------------------
def test_overlay_grid_draws_mask_and_prediction(images, masks) -> None:
    preds = [m.astype(np.float32) * 0.9 for m in masks[::-1]]
    fig = viz.overlay_grid(images, masks, preds, titles=["a", "b"], ncols=4)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    assert [ax.get_title() for ax in axes] == ["a", "b"]
    # one contour set for the mask, one for the prediction, in their colours
    colours = [tuple(c.get_edgecolor()[0][:3]) for c in axes[0].collections]
    assert colours == [matplotlib.colors.to_rgb(viz.GT_COLOR),
                       matplotlib.colors.to_rgb(viz.PRED_COLOR)]
    assert {t.get_text() for t in fig.legends[0].get_texts()} == {"ground truth", "prediction"}

    filled = viz.overlay_grid(images, masks, mode="alpha")
    layer = _images_of(filled.axes[0])[1]
    assert layer.shape == (80, 96, 4)
    assert layer[..., 3].max() == pytest.approx(0.45) and layer[0, 0, 3] == 0
    with pytest.raises(ValueError, match="2 images but 1 masks"):
        viz.overlay_grid(images, masks[:1])


def test_boundary_weight_figure_shows_the_structure_loss_weights(images, masks) -> None:
    logits = np.random.default_rng(2).normal(size=(80, 96)).astype(np.float32)
    fig = viz.boundary_weight_figure(images[0], masks[0], pred=logits)
    g = torch.from_numpy(masks[0].astype(np.float32))[None, None]
    w = boundary_weight(g)
    np.testing.assert_allclose(_images_of(fig.axes[1])[0], w[0, 0].numpy(), atol=1e-6)
    bce = F.binary_cross_entropy_with_logits(torch.from_numpy(logits)[None, None], g,
                                             reduction="none")
    wbce = float((w * bce).sum() / w.sum())
    title = fig.axes[3].get_title()
    assert f"{wbce:.3f}" in title
    assert f"{float(bce.mean()):.3f}" in fig.axes[2].get_title()


def test_parameter_counts_add_up_and_table_lists_blocks(pair) -> None:
    teacher, _ = pair
    counts = viz.parameter_counts(teacher)
    assert list(counts) == [*viz.BLOCKS, "total"]
    assert sum(v for k, v in counts.items() if k != "total") == counts["total"]
    assert counts["total"] == count_parameters(teacher)
    assert counts["encoder"] == count_parameters(teacher.backbone)
    assert counts["SAM"] == count_parameters(teacher.sam) > 0
    table = viz.parameter_table({"teacher": teacher, "student": teacher})
    lines = table.splitlines()
    assert lines[0] == "| block | teacher | student | ratio student / teacher |"
    assert [line.split("|")[1].strip() for line in lines[2:]] == [
        "encoder", "CIM", "CFM", "SAM", "heads", "**total**"]
    assert f"| {counts['SAM']:,} |" in lines[5]
    assert f"{counts['total']:,} ({counts['total'] / 1e6:.2f} M)" in lines[-1]
    assert lines[-1].endswith("| 1.00 |")


# ---------------------------------------------------------------------------------------------
# attention figures
# ---------------------------------------------------------------------------------------------
def test_encoder_attention_figure_panels_are_the_attention_maps(pair) -> None:
    teacher, _ = pair
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    fig = viz.encoder_attention_figure(teacher, x, query=(0.25, 0.75), max_heads=2)
    atts = encoder_attention_maps(teacher, x)
    grid = np.array(fig.axes[:12]).reshape(4, 3)  # 4 stages × (mean + 2 heads)
    colorbars = fig.axes[12:]  # one per stage, its scale shared by the stage's panels
    assert [c.get_ylabel() for c in colorbars] == ["weight"] * 4
    assert grid[3, 0].get_images()[1].get_clim() == grid[3, 1].get_images()[1].get_clim()
    for row, att in zip(grid, atts, strict=True):
        h, w = att.query_grid
        cell = (int(0.25 * h), min(int(0.75 * w), w - 1))
        np.testing.assert_allclose(_images_of(row[0])[1],
                                   attention_to_image(att, cell)[0].numpy(), atol=1e-6)
    # stage 1 of PVTv2 has one head: the second head column is hidden
    assert not grid[0, 2].get_visible() and grid[3, 2].get_visible()
    np.testing.assert_allclose(_images_of(grid[3, 2])[1],
                               attention_to_image(atts[3], (0, 1), head=1)[0].numpy(), atol=1e-6)


def test_decoder_attention_figure_shows_cim_attention_and_outputs(pair) -> None:
    teacher, _ = pair
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = teacher(x, return_features=True)
    fig = viz.decoder_attention_figure(out, x[0], mean=teacher.input_mean, std=teacher.input_std)
    bars = fig.axes[0].patches
    ca = out.channel_attention[0].flatten().numpy()
    assert len(bars) == teacher.stage_channels[0]
    np.testing.assert_allclose([b.get_height() for b in bars], np.sort(ca)[::-1], atol=1e-6)
    np.testing.assert_allclose(_images_of(fig.axes[1])[1], out.spatial_attention[0, 0].numpy(),
                               atol=1e-6)
    np.testing.assert_allclose(_images_of(fig.axes[3])[1], torch.sigmoid(out.p2)[0, 0].numpy(),
                               atol=1e-6)


def test_attention_target_figure_matches_the_at_loss() -> None:
    gen = torch.Generator().manual_seed(5)
    teacher = torch.randn(1, 1, 12, 12, generator=gen) * 3
    student = torch.randn(1, 1, 12, 12, generator=gen)
    fig = viz.attention_target_figure(teacher, student, temperature=2.0)
    q = torch.softmax(attention_target(teacher).flatten() / 2.0, 0).reshape(12, 12)
    target_ax = next(ax for ax in fig.axes if ax.get_title().startswith("target q"))
    np.testing.assert_allclose(_images_of(target_ax)[0], q.numpy(), atol=1e-7)
    row_ax = next(ax for ax in fig.axes if ax.get_title().startswith("row attention"))
    np.testing.assert_allclose(_images_of(row_ax)[0].sum(axis=1), 1.0, atol=1e-5)
    text = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    loss = float(attention_kd_loss(student, teacher, temperature=2.0))
    assert f"{loss:.4f}" in text


def test_compare_maps_figure_difference_is_teacher_minus_student(images) -> None:
    t = np.linspace(0, 1, 80 * 96, dtype=np.float32).reshape(80, 96)
    s = t[::-1].copy()
    fig = viz.compare_maps_figure(images[0], t, s)
    np.testing.assert_allclose(_images_of(fig.axes[2])[1], t - s, atol=1e-6)
    assert fig.axes[2].get_title() == "teacher − student"


def test_sgm_figure_shows_symmetric_forms_and_the_loss() -> None:
    gen = torch.Generator().manual_seed(6)
    student = torch.randn(2, 1, 8, 8, generator=gen)
    teacher = torch.randn(2, 1, 16, 16, generator=gen)  # resized to the student, as sgm_loss does
    fig = viz.sgm_figure(student, teacher, pool_size=4, index=1)
    panels = [ax for ax in fig.axes if ax.get_images()]
    by_title = {ax.get_title(): _images_of(ax)[0] for ax in panels}
    s_sym = by_title["student: S = P + Pᵀ"]
    np.testing.assert_allclose(s_sym, s_sym.T, atol=1e-6)
    np.testing.assert_allclose(s_sym, (student[1, 0] + student[1, 0].T).numpy(), atol=1e-6)
    assert by_title["teacher: pool(S) 4×4"].shape == (4, 4)
    assert f"{float(sgm_loss(student, teacher, 4)):.4f}" in fig._suptitle.get_text()


def test_matrices_figure_one_panel_per_matrix() -> None:
    p = np.arange(12, dtype=np.float32).reshape(3, 4)
    fig = viz.matrices_figure({"P": p, "Pᵀ": p.T, "P Pᵀ": p @ p.T}, ncols=2, diverging=True)
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in shown] == ["P", "Pᵀ", "P Pᵀ"]
    lo, hi = shown[2].get_images()[0].get_clim()
    assert lo == -hi == -float((p @ p.T).max())


# ---------------------------------------------------------------------------------------------
# training and results figures
# ---------------------------------------------------------------------------------------------
def test_training_curves_figure_one_line_per_run() -> None:
    run = [{"epoch": e, "loss": 1 / e, "val_dice": 0.1 * e} for e in (1, 2, 3)]
    fig = viz.training_curves_figure({"a": run, "b": run[:2]})
    assert [len(ax.lines) for ax in fig.axes] == [2, 2]
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), [0.1, 0.2, 0.3])
    with pytest.raises(KeyError, match="no 'at'"):
        viz.training_curves_figure({"a": run}, keys=("at",))


def test_results_and_tradeoff_figures() -> None:
    tables = {"teacher": {"Kvasir": {"meanDic": 0.8}, "ETIS": {"meanDic": 0.5}},
              "student": {"Kvasir": {"meanDic": 0.7}}}
    reference = {"teacher": {"Kvasir": {"meanDic": 0.917}}}
    fig = viz.results_figure(tables, reference=reference)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights[:3], [0.8, 0.5, 0.7])
    assert math.isnan(heights[3])  # the student has no ETIS score
    assert ax.collections[0].get_segments()[0][0][1] == pytest.approx(0.917)

    fig = viz.tradeoff_figure(["teacher", "student"], [25.1, 3.7], [0.8, 0.7], [10.0, 40.0],
                              reference={"KDAS": (3.7, 0.8)})
    sizes = fig.axes[0].collections[0].get_sizes()
    assert sizes[1] > sizes[0]  # the faster model gets the bigger marker
    assert "40.0 img/s" in " ".join(t.get_text() for t in fig.axes[0].texts)
    with pytest.raises(ValueError, match="same length"):
        viz.tradeoff_figure(["a"], [1.0, 2.0], [0.5])


def test_tradeoff_labels_of_neighbouring_models_do_not_overlap() -> None:
    # notebook 05: the KDAS student and the student alone have the same size and close scores
    names = ["teacher", "student (KDAS)", "student alone"]
    fig = viz.tradeoff_figure(names, [4.6, 3.2, 3.2], [0.69, 0.39, 0.41], [69.4, 90.3, 85.0])
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts]
    assert len(boxes) == 3
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
    assert {t.get_text().split("\n")[0] for t in fig.axes[0].texts} == set(names)


def test_figures_show_subset_labels_and_synthetic_data() -> None:
    from kdas_lite.data import SetStatus
    from kdas_lite.evaluate import EvaluationTable

    row = {m: 0.5 for m in METRIC_NAMES}
    partial = EvaluationTable({"ETIS-LaribPolypDB": row}, {"ETIS-LaribPolypDB": 20},
                              status={"ETIS-LaribPolypDB": SetStatus("ETIS-LaribPolypDB", 20,
                                                                     196, "partial")})
    ax = viz.results_figure({"student": partial}, title="lab run").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ETIS-LaribPolypDB (20/196)"]
    assert ax.get_title() == "lab run"
    synthetic = EvaluationTable({"Kvasir": row}, {"Kvasir": 4},
                                status={"Kvasir": SetStatus("Kvasir", 4, 100, "synthetic")})
    ax = viz.results_figure({"student": synthetic}).axes[0]
    assert ax.get_title().startswith("SYNTHETIC data")
    ax = viz.tradeoff_figure(["a"], [1.0], [0.5], synthetic=True, title="t").axes[0]
    assert ax.get_title() == "SYNTHETIC data (not real endoscopy) — t"


def test_best_worst_figure_ranks_cases(images, masks) -> None:
    cases = [{"name": f"im{i}", "image": images[i % 2], "mask": masks[i % 2],
              "pred": masks[i % 2].astype(np.float32), "meanDic": score}
             for i, score in enumerate([0.2, 0.9, 0.5, 0.7])]
    fig = viz.best_worst_figure(cases, k=2)
    titles = [ax.get_title().split("\n")[0] for ax in fig.axes]
    assert titles == ["best: im1", "best: im3", "worst: im0", "worst: im2"]


@pytest.mark.slow
def test_predict_test_set_scores_each_image(tmp_path, pair) -> None:
    from kdas_lite.data import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "data", n_train=1, n_test=2, size=64,
                                  test_sets=("Kvasir",))
    teacher, _ = pair
    cases = viz.predict_test_set(teacher, root / "TestDataset" / "Kvasir", size=SIZE)
    assert [c["name"] for c in cases] == sorted(c["name"] for c in cases)
    assert len(cases) == 2
    for case in cases:
        assert case["pred"].shape == case["mask"].shape == case["image"].shape[:2]
        assert case["pred"].min() >= 0.0 and case["pred"].max() <= 1.0
        assert 0.0 <= case["meanDic"] <= 1.0
    assert not teacher.training


# ---------------------------------------------------------------------------------------------
# the explorer
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def explorer(pair, images, masks) -> viz.AttentionExplorer:
    teacher, student = pair
    explorer = viz.AttentionExplorer(teacher, student, images, masks, names=["first", "second"],
                                     image_size=SIZE)
    explorer.build()
    return explorer


@pytest.mark.slow
def test_explorer_controls_change_the_displayed_map(explorer) -> None:
    c = explorer.controls
    assert explorer.kinds == viz.MAP_KINDS and explorer.stages == 4

    def shown() -> np.ndarray:
        return np.asarray(explorer.map_artist.get_array()).copy()

    c["kind"].value = "output probability"
    before, png = shown(), explorer.png
    assert before.shape == (SIZE, SIZE) and png.startswith(b"\x89PNG")
    c["source"].value = "student"
    assert not np.allclose(shown(), before) and explorer.png != png
    c["source"].value = "difference"
    np.testing.assert_allclose(
        shown(), explorer.compute_map(0, "teacher", "output probability")
        - explorer.compute_map(0, "student", "output probability"), atol=1e-6)
    assert explorer.map_artist.get_cmap().name == viz.DIFF_CMAP
    c["image"].value = 1
    assert not np.allclose(shown(), before)

    c["source"].value = "teacher"
    c["kind"].value = "encoder attention: query point"
    c["stage"].value = 4
    assert [label for label, _ in c["head"].options] == ["mean of heads",
                                                         *(f"head {h}" for h in range(1, 9))]
    mean_map = shown()
    c["head"].value = 2
    assert explorer.state()["head"] == 2 and not np.allclose(shown(), mean_map)
    c["stage"].value = 1  # one head there: the selection falls back to the mean
    assert c["head"].value == -1 and len(c["head"].options) == 2
    c["query_y"].value, c["query_x"].value = 0.0, 0.0
    corner = shown()
    c["query_y"].value, c["query_x"].value = 0.99, 0.99
    assert not np.allclose(shown(), corner)

    c["kind"].value = "L_AT distribution"
    assert shown().sum() == pytest.approx(1.0, abs=1e-5) and c["stage"].disabled
    opacity = explorer.map_artist.get_alpha()
    c["opacity"].value = 0.2
    assert explorer.map_artist.get_alpha() == 0.2 != opacity


@pytest.mark.slow
def test_explorer_static_figure_and_fallback(explorer, monkeypatch) -> None:
    fig = explorer.static_figure(index=1, stage=2, query=(0.1, 0.9))
    assert isinstance(fig, Figure)
    fig.canvas.draw()
    assert len([ax for ax in fig.axes if ax.get_images()]) == 3 * len(viz.MAP_KINDS)
    assert re.search("second", fig._suptitle.get_text())
    query_panel = next(ax for ax in fig.axes if ax.get_title() == "difference\nstage 2 query point")
    np.testing.assert_allclose(
        _images_of(query_panel)[1],
        explorer.compute_map(1, "teacher", viz.MAP_KINDS[0], 2, None, (0.1, 0.9))
        - explorer.compute_map(1, "student", viz.MAP_KINDS[0], 2, None, (0.1, 0.9)), atol=1e-7)

    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets -> ImportError
    monkeypatch.setattr(explorer, "widget", None)
    explorer.show()
    assert len(shown) == 1 and isinstance(shown[0], Figure)


@pytest.mark.slow
def test_explorer_without_encoder_attention_offers_decoder_maps(images) -> None:
    torch.manual_seed(0)
    model = PolypPVT("tf_efficientnet_lite0").eval()
    explorer = viz.AttentionExplorer(model, model, images[:1], image_size=SIZE)
    assert explorer.kinds == viz.MAP_KINDS[2:] and explorer.stages == 0
    np.testing.assert_allclose(explorer.compute_map(0, "difference", "output probability"), 0.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        explorer.compute_map(0, "teacher", viz.MAP_KINDS[0])
    with pytest.raises(ValueError, match="multiple of 32"):
        viz.AttentionExplorer(model, model, images[:1], image_size=50)


def test_ablation_figure_bars_and_baseline() -> None:
    scores = {"student alone": 0.5, "+L_AT": 0.55, "KDAS": 0.6}
    fig = viz.ablation_figure(scores, baseline="student alone")
    ax = fig.axes[0]
    np.testing.assert_allclose([p.get_height() for p in ax.patches], [0.5, 0.55, 0.6])
    assert [t.get_text() for t in ax.texts] == ["0.500", "0.550", "0.600"]
    assert ax.lines[0].get_ydata()[0] == 0.5
    with pytest.raises(ValueError, match="baseline 'x'"):
        viz.ablation_figure(scores, baseline="x")


def test_ablation_figure_with_seeds_shows_means_spread_and_paired_differences() -> None:
    scores = {"student alone": [0.50, 0.60, 0.70], "KDAS": [0.52, 0.63, 0.71],
              "+L_SGM": [0.40, 0.55, 0.60]}
    fig = viz.ablation_figure(scores, baseline="student alone", title="Kvasir")
    scores_ax, paired_ax = fig.axes
    np.testing.assert_allclose([p.get_height() for p in scores_ax.patches],
                               [0.6, 0.62, 0.5166667], rtol=1e-5)
    assert scores_ax.texts[0].get_text() == "0.600\n±0.100"
    # paired: KDAS − alone = (0.02, 0.03, 0.01); +L_SGM − alone = (−0.10, −0.05, −0.10)
    np.testing.assert_allclose([p.get_height() for p in paired_ax.patches],
                               [0.02, -0.0833333], rtol=1e-5)
    dots = [c for c in paired_ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(dots[0].get_offsets()[:, 1], [0.02, 0.03, 0.01], atol=1e-12)
    with pytest.raises(ValueError, match="same number of seeds"):
        viz.ablation_figure({"student alone": [0.5, 0.6], "KDAS": [0.5]},
                            baseline="student alone")
    assert len(viz.ablation_figure({"a": [0.5, 0.6], "b": [0.5]}).axes) == 1  # no pairing


def test_term_gradient_figure_draws_ratio_and_cosine_per_term() -> None:
    def history(scale: float) -> list[dict[str, float]]:
        return [{"epoch": e, "grad_seg": 2.0, "grad_sgm": 2.0 * scale * e, "cos_sgm": 0.1 * e,
                 "grad_at": 1.0, "cos_at": -0.5} for e in (1, 2)]

    fig = viz.term_gradient_figure({"student alone": [[{"epoch": 1, "grad_seg": 1.0}]],
                                    "KDAS": [history(1.0), history(3.0)]})
    ratio_ax, cos_ax = fig.axes
    lines = {line.get_label(): line for line in ratio_ax.lines if line.get_label()[0] != "_"}
    np.testing.assert_allclose(lines["KDAS: L_SGM"].get_ydata(), [2.0, 4.0])  # mean of 1×, 3×
    np.testing.assert_allclose(lines["KDAS: L_AT"].get_ydata(), [0.5, 0.5])
    cos = {line.get_label(): line for line in cos_ax.lines if line.get_label()[0] != "_"}
    np.testing.assert_allclose(cos["KDAS: L_SGM"].get_ydata(), [0.1, 0.2])
    assert ratio_ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="probe_gradients=True"):
        viz.term_gradient_figure({"student alone": [[{"epoch": 1, "grad_seg": 1.0}]]})


# ---------------------------------------------------------------------------------------------
# one colour per method, signed values on a diverging map, titles
# ---------------------------------------------------------------------------------------------
def test_a_method_keeps_its_colour_in_every_figure() -> None:
    from matplotlib.colors import to_hex

    kdas, alone = viz.method_color("KDAS"), viz.method_color("student alone")
    assert viz.method_color("student (KDAS)") == kdas != alone
    assert viz.method_color("some new variant") == viz.method_color("some new variant")
    run = [{"epoch": 1, "seg": 1.0, "val_dice": 0.5}, {"epoch": 2, "seg": 0.5, "val_dice": 0.6}]
    curves = viz.training_curves_figure({"student alone": run, "KDAS": run}, keys=("seg",))
    assert [to_hex(line.get_color()) for line in curves.axes[0].lines] == [alone.lower(),
                                                                          kdas.lower()]
    bars = viz.ablation_figure({"KDAS": 0.6, "student alone": 0.5}).axes[0].patches
    assert [to_hex(p.get_facecolor()) for p in bars] == [kdas.lower(), alone.lower()]
    gradients = viz.term_gradient_figure(
        {"KDAS": [[{"epoch": 1, "grad_seg": 1.0, "grad_sgm": 2.0, "cos_sgm": 0.1,
                    "grad_at": 1.0, "cos_at": 0.2}]]})
    assert {to_hex(line.get_color()) for line in gradients.axes[0].lines
            if not line.get_label().startswith("_")} == {kdas.lower()}
    assert {line.get_linestyle() for line in gradients.axes[0].lines
            if not line.get_label().startswith("_")} == {"-", "--"}  # L_AT, L_SGM


def test_signed_matrices_use_a_diverging_map_and_titles_name_the_data() -> None:
    fig = viz.matrices_figure({"P": np.array([[-1.0, 2.0], [0.5, 0.0]])}, diverging=True,
                              suptitle="Kvasir (real data)")
    image = next(ax for ax in fig.axes if ax.get_images()).get_images()[0]
    assert image.get_cmap().name == viz.DIFF_CMAP and image.get_clim() == (-2.0, 2.0)
    assert fig._suptitle.get_text() == "Kvasir (real data)"
    plain = viz.matrices_figure({"P": np.eye(2)})
    assert next(ax for ax in plain.axes if ax.get_images()).get_images()[0].get_cmap().name == \
        "viridis"


def test_ablation_vs_lab_figure_puts_the_lab_beside_the_run() -> None:
    from matplotlib.colors import to_hex

    live = {"student alone": [0.60], "KDAS": [0.65]}
    lab = {"student alone": [0.5, 0.6, 0.7], "KDAS": [0.52, 0.63, 0.71], "+L_SGM": [0.4, 0.5, 0.6]}
    fig = viz.ablation_vs_lab_figure(live, lab, baseline="student alone", title="Kvasir")
    scores_ax, paired_ax = fig.axes[:2]
    heights = [p.get_height() for p in scores_ax.patches]
    np.testing.assert_allclose(heights, [0.60, 0.6, 0.65, 0.62, 0.5], rtol=1e-6)
    hatched = [p for p in scores_ax.patches if p.get_hatch()]
    assert len(hatched) == 3  # the lab's three variants
    assert to_hex(hatched[1].get_edgecolor()) == viz.method_color("KDAS").lower()
    # paired: this run KDAS − alone = 0.05; lab (0.02, 0.03, 0.01) → 0.02, +L_SGM → −0.1
    np.testing.assert_allclose([p.get_height() for p in paired_ax.patches], [0.05, 0.02, -0.1],
                               rtol=1e-6, atol=1e-12)
    assert fig._suptitle.get_text() == "Kvasir"
    with pytest.raises(ValueError, match="same number of seeds"):
        viz.ablation_vs_lab_figure(live, {"student alone": [0.5, 0.6], "KDAS": [0.5]},
                                   baseline="student alone")


def test_figure_titles_name_the_data_and_are_not_overwritten(images, masks) -> None:
    # a panel loop once reused the name `title` and replaced the figure's title with a panel's
    logits = torch.randn(1, 1, 16, 16)
    rgb = images[0]
    figures = {
        "attention_target_figure": viz.attention_target_figure(logits, logits, title="Kvasir"),
        "compare_maps_figure": viz.compare_maps_figure(rgb, masks[0], masks[1], title="Kvasir"),
        "overlay_grid": viz.overlay_grid([rgb], [masks[0]], title="Kvasir"),
        "boundary_weight_figure": viz.boundary_weight_figure(rgb, masks[0], title="Kvasir"),
    }
    for name, fig in figures.items():
        assert fig._suptitle is not None and fig._suptitle.get_text() == "Kvasir", name
