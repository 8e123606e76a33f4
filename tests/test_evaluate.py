"""kdas_lite.evaluate on tiny PNG test sets made in tmp_path, with dummy (P1, P2) models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from kdas_lite.data import DataWarning, SetStatus, make_synthetic_dataset
from kdas_lite.data.dataset import PolypTestDataset
from kdas_lite.errors import DataError
from kdas_lite.evaluate import (
    PAPER_RESULTS,
    EvaluationTable,
    compare_with_paper,
    comparison_table,
    evaluate,
    soft_maps,
)
from kdas_lite.metrics import METRIC_NAMES, evaluate_maps

SIZE = 64


class RedDetector(nn.Module):
    """P1 = s·red, P2 = −s/4·red on the normalised red channel: P1 and P1 + P2 find the
    polyps (drawn bright red), P2 alone is inverted. Records what it sees."""

    input_mean = (0.4, 0.5, 0.6)
    input_std = (0.2, 0.25, 0.3)

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(4.0))
        self.calls: list[tuple[bool, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.append((self.training, x.detach().clone()))
        red = x[:, :1]
        return self.scale * red, -0.25 * self.scale * red


def _write_set(folder: Path, shapes: list[tuple[int, int]], seed: int) -> None:
    """PNG images with a bright-red elliptic polyp and its 0/255 mask, one per shape."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i, (h, w) in enumerate(shapes):
        yy, xx = np.mgrid[:h, :w]
        cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
        mask = ((yy - cy) / (0.25 * h)) ** 2 + ((xx - cx) / (0.2 * w)) ** 2 < 1
        image = rng.integers(0, 90, size=(h, w, 3))
        image[..., 0] = np.where(mask, 190, 60) + rng.integers(0, 40, size=(h, w))
        Image.fromarray(image.astype(np.uint8)).save(folder / "images" / f"{i:03d}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(folder / "masks" / f"{i:03d}.png")


@pytest.fixture
def sets(tmp_path: Path) -> dict[str, Path]:
    a, b = tmp_path / "TestDataset" / "Kvasir", tmp_path / "TestDataset" / "CVC-300"
    _write_set(a, [(40, 50), (48, 36), (30, 30)], seed=0)
    _write_set(b, [(45, 60), (52, 52)], seed=1)
    return {"Kvasir": a, "CVC-300": b}


def _by_hand(model: nn.Module, folder: Path, head: str = "sum",
             minmax: bool = True) -> dict[str, float]:
    """Polyp-PVT Test.py written out: resize the logits to the mask, sigmoid, min–max."""
    dataset = PolypTestDataset(folder, size=SIZE, mean=model.input_mean, std=model.input_std)
    preds, gts = [], []
    with torch.no_grad():
        for sample in dataset:
            p1, p2 = model(sample["image"][None])
            logit = {"sum": p1 + p2, "p1": p1, "p2": p2}[head]
            res = F.interpolate(logit, size=sample["mask"].shape, mode="bilinear",
                                align_corners=False).sigmoid().numpy().squeeze()
            if minmax:
                res = (res - res.min()) / (res.max() - res.min() + 1e-8)
            preds.append(res)
            gts.append(sample["mask"])
    return evaluate_maps(preds, gts)


# ---------------------------------------------------------------------------------------------
# evaluate()
# ---------------------------------------------------------------------------------------------
def test_evaluate_matches_the_pipeline_written_by_hand(sets: dict[str, Path]) -> None:
    model = RedDetector()
    table = evaluate(model, sets, size=SIZE, batch_size=2, progress=False, name="red")
    assert table.datasets == ["Kvasir", "CVC-300"]
    assert table.n_images == {"Kvasir": 3, "CVC-300": 2}
    assert table.model_name == "red" and table.size == SIZE and table.device == "cpu"
    assert table.params == 1
    assert table.images_per_s is not None and table.images_per_s > 0
    for name, folder in sets.items():
        expected = _by_hand(model, folder)
        assert list(table.rows[name]) == list(METRIC_NAMES)
        for metric in METRIC_NAMES:
            assert table.rows[name][metric] == pytest.approx(expected[metric], abs=1e-6)
    assert table.rows["Kvasir"]["maxDic"] > 0.9  # the detector really finds the polyps


def test_each_images_dice_is_kept_and_averages_to_the_sets_mdice(sets: dict[str, Path]) -> None:
    from kdas_lite.metrics import score_map

    model = RedDetector()
    table = evaluate(model, sets, size=SIZE, batch_size=2, progress=False)
    assert {k: sorted(v) for k, v in table.image_dice.items()} == {
        "Kvasir": ["000", "001", "002"], "CVC-300": ["000", "001"]}
    for name, folder in sets.items():
        dataset = PolypTestDataset(folder, size=SIZE, mean=model.input_mean,
                                   std=model.input_std)
        with torch.no_grad():
            sample = dataset[1]
            p1, p2 = model(sample["image"][None])
        res = F.interpolate(p1 + p2, size=sample["mask"].shape, mode="bilinear",
                            align_corners=False).sigmoid().numpy().squeeze()
        res = (res - res.min()) / (res.max() - res.min() + 1e-8)
        assert table.image_dice[name]["001"] == pytest.approx(
            score_map(res, sample["mask"])["meanDic"], abs=1e-6)
        assert np.mean(list(table.image_dice[name].values())) == pytest.approx(
            table.rows[name]["meanDic"], abs=1e-9)
    assert "image_dice" not in table.to_dict()


def test_heads_and_minmax_options(sets: dict[str, Path]) -> None:
    model = RedDetector()
    folder = {"Kvasir": sets["Kvasir"]}
    for head, minmax in (("p1", True), ("p2", True), ("sum", False)):
        row = evaluate(model, folder, size=SIZE, progress=False, head=head,
                       minmax=minmax).rows["Kvasir"]
        expected = _by_hand(model, sets["Kvasir"], head=head, minmax=minmax)
        assert row["meanDic"] == pytest.approx(expected["meanDic"], abs=1e-6)
        assert row["MAE"] == pytest.approx(expected["MAE"], abs=1e-6)
    p1 = evaluate(model, folder, size=SIZE, progress=False, head="p1").rows["Kvasir"]
    p2 = evaluate(model, folder, size=SIZE, progress=False, head="p2").rows["Kvasir"]
    assert p1["maxDic"] > 0.9 > 0.5 > p2["maxDic"]  # P2 alone is the inverted head
    with pytest.raises(ValueError, match="head"):
        evaluate(model, folder, size=SIZE, progress=False, head="p3")


def test_model_mode_normalisation_and_batches(sets: dict[str, Path]) -> None:
    model = RedDetector().train()
    evaluate(model, sets, size=SIZE, batch_size=2, progress=False)
    assert model.training  # restored
    assert [x.shape[0] for _, x in model.calls] == [2, 1, 2]  # batches per set, in order
    assert not any(training for training, _ in model.calls)  # eval mode while predicting
    x = model.calls[0][1]
    assert x.shape[1:] == (3, SIZE, SIZE)
    # Normalised with the model's statistics: a green value of 0..89 maps to (v/255 − .5)/.25
    green = x[:, 1]
    assert green.min() >= (0 - 0.5) / 0.25 - 1e-5 and green.max() <= (89 / 255 - 0.5) / 0.25 + 1e-5


def test_pranet_layout_root(sets: dict[str, Path]) -> None:
    root = sets["Kvasir"].parent.parent
    table = evaluate(RedDetector(), root, size=SIZE, progress=False,
                     test_sets=["CVC-300", "Kvasir"])
    assert table.datasets == ["CVC-300", "Kvasir"]
    # the TestDataset folder itself works as a root too
    assert evaluate(RedDetector(), root / "TestDataset", size=SIZE, progress=False,
                    test_sets=["Kvasir"]).n_images == {"Kvasir": 3}
    # No test_sets: the sets present are evaluated and the missing ones named in a warning.
    with pytest.warns(DataWarning, match=r"CVC-ClinicDB, CVC-ColonDB, ETIS-LaribPolypDB"):
        table = evaluate(RedDetector(), root, size=SIZE, progress=False)
    assert table.datasets == ["Kvasir", "CVC-300"]
    # A named set that is missing is an error that lists what is there (no Python names).
    with pytest.raises(DataError, match=r"ETIS-LaribPolypDB not found.*present: Kvasir") as exc:
        evaluate(RedDetector(), root, size=SIZE, progress=False,
                 test_sets=["Kvasir", "ETIS-LaribPolypDB"])
    assert "test_sets" not in str(exc.value)
    with pytest.raises(DataError, match="present: none"):
        evaluate(RedDetector(), root / "nowhere", size=SIZE, progress=False)


def test_subsets_are_labelled_everywhere(sets: dict[str, Path], tmp_path: Path) -> None:
    # The fixture's sets hold 3 of Kvasir's 100 and 2 of CVC-300's 60 benchmark images.
    table = evaluate(RedDetector(), sets, size=SIZE, progress=False, name="red")
    assert table.status["Kvasir"] == SetStatus("Kvasir", 3, 100, "partial")
    assert table.label("Kvasir") == "Kvasir (3/100)" and table.label("CVC-300") == "CVC-300 (2/60)"
    text = table.to_markdown()
    assert "| Kvasir (3/100) | 3 |" in text
    assert "Kvasir (3/100): a subset of 3 of the 100 benchmark images; not comparable" in text
    paper = compare_with_paper(table, "student")
    assert "| Kvasir (3/100) |" in paper and "| not comparable |" in paper
    assert "| CVC-ColonDB | — | 0.759 | — |" in paper  # not evaluated: plain name
    again = EvaluationTable.from_csv(table.to_csv(tmp_path / "t.csv"))
    assert again.status == table.status and again.label("CVC-300") == "CVC-300 (2/60)"
    with (tmp_path / "t.csv").open() as handle:
        assert next(handle).rstrip().endswith(",label,status,expected,resize")
        assert next(handle).rstrip().endswith(",Kvasir (3/100),partial,100,opencv")
    assert table.to_dict()["datasets"]["Kvasir"]["label"] == "Kvasir (3/100)"
    both = comparison_table({"a": table, "b": table})
    assert both.splitlines()[0].startswith("| model | params (M) | images/s | Kvasir (3/100) |")
    assert both.count("not comparable with published") == 2  # one footnote per set, once


def test_synthetic_tables_say_so(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "syn", n_train=2, n_test=2, size=32, seed=0)
    table = evaluate(RedDetector(), root, size=SIZE, progress=False, test_sets=["Kvasir"])
    assert table.synthetic and table.status["Kvasir"].status == "synthetic"
    for text in (table.to_markdown(), compare_with_paper(table, "teacher"),
                 comparison_table({"red": table})):
        assert text.startswith("**SYNTHETIC data**")
    assert table.label("Kvasir") == "Kvasir"  # no subset label: the whole table is synthetic
    assert EvaluationTable.from_csv(table.to_csv(tmp_path / "s.csv")).synthetic


def test_bad_models_and_sets(sets: dict[str, Path], tmp_path: Path) -> None:
    class NoStats(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x[:, :1], x[:, :1]

    class OneHead(RedDetector):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return x[:, :1]

    with pytest.raises(TypeError, match="input_mean"):
        evaluate(NoStats(), sets, size=SIZE, progress=False)
    with pytest.raises(TypeError, match=r"\(P1, P2\)"):
        evaluate(OneHead(), sets, size=SIZE, progress=False)
    with pytest.raises(ValueError, match="not keys"):
        evaluate(RedDetector(), sets, size=SIZE, progress=False, test_sets=["ETIS"])
    (tmp_path / "broken" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="masks"):
        evaluate(RedDetector(), {"broken": tmp_path / "broken"}, size=SIZE, progress=False)


def test_errors_keep_finished_sets(sets: dict[str, Path], tmp_path: Path) -> None:
    model = RedDetector()
    unpaired = tmp_path / "unpaired"
    _write_set(unpaired, [(20, 20), (20, 20)], seed=3)
    (unpaired / "masks" / "001.png").unlink()
    with pytest.raises(DataError, match="without a mask"):
        evaluate(model, {**sets, "unpaired": unpaired}, size=SIZE, progress=False)
    assert model.calls == []  # file listing errors come before any forward pass

    corrupt = tmp_path / "corrupt"
    _write_set(corrupt, [(20, 20), (20, 20)], seed=4)
    (corrupt / "images" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    model.train()
    with pytest.raises(DataError, match=r"001\.png") as info:
        evaluate(model, {"Kvasir": sets["Kvasir"], "corrupt": corrupt}, size=SIZE,
                 progress=False)
    partial = info.value.partial_table
    assert partial.datasets == ["Kvasir"] and partial.n_images == {"Kvasir": 3}
    assert partial.rows["Kvasir"]["maxDic"] > 0.9
    assert model.training  # train mode restored after the error


def test_soft_maps() -> None:
    logits = torch.randn(2, 1, 8, 8)
    maps = soft_maps(logits, [(5, 7), (12, 9)])
    assert [m.shape for m in maps] == [(5, 7), (12, 9)]
    for m in maps:
        assert m.dtype == np.float32 and m.min() == 0 and 0.999 < m.max() <= 1
    raw = soft_maps(logits, [(8, 8), (8, 8)], minmax=False)
    np.testing.assert_allclose(raw[0], torch.sigmoid(logits[0, 0]).numpy(), atol=1e-6)
    flat = soft_maps(torch.zeros(1, 1, 4, 4), [(6, 6)])
    assert np.all(flat[0] == 0)  # a constant map normalises to 0, not NaN


# ---------------------------------------------------------------------------------------------
# EvaluationTable and the paper comparison
# ---------------------------------------------------------------------------------------------
def _table() -> EvaluationTable:
    rows = {d: {m: 0.5 + 0.01 * i + 0.001 * j for j, m in enumerate(METRIC_NAMES)}
            for i, d in enumerate(["Kvasir", "CVC-300"])}
    return EvaluationTable(rows, {"Kvasir": 100, "CVC-300": 60}, model_name="student",
                           params=3_700_000, images_per_s=123.4, size=352, device="cuda")


def test_table_average_is_image_weighted() -> None:
    table = _table()
    avg = table.average()
    assert avg["meanDic"] == pytest.approx((100 * 0.5 + 60 * 0.51) / 160)
    assert list(avg) == list(METRIC_NAMES)


def test_table_markdown() -> None:
    text = _table().to_markdown(digits=2)
    lines = text.splitlines()
    assert lines[0] == ("**student** — 3.70 M parameters — 123.4 images/s at 352×352 on cuda")
    assert lines[2] == "| dataset | n | " + " | ".join(METRIC_NAMES) + " |"
    assert lines[4].startswith("| Kvasir | 100 | 0.50 | 0.50 |")
    assert lines[-1].startswith("| *average (image-weighted)* | 160 | 0.50 |")
    assert "average" not in _table().to_markdown(average=False)
    assert _table()._repr_markdown_() == _table().to_markdown()


def test_table_csv_round_trip_and_dict(tmp_path: Path) -> None:
    table = _table()
    path = table.to_csv(tmp_path / "out" / "table.csv")
    again = EvaluationTable.from_csv(path)
    assert again == table
    assert json.loads(json.dumps(table.to_dict()))["datasets"]["CVC-300"]["n_images"] == 60
    bare = EvaluationTable(table.rows, table.n_images)
    assert EvaluationTable.from_csv(bare.to_csv(tmp_path / "bare.csv")) == bare


def test_table_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        EvaluationTable.from_csv(tmp_path / "missing.csv")
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("name,score\nx,1\n")
    with pytest.raises(DataError, match=r"foreign.csv is not a kdas_lite evaluation table"):
        EvaluationTable.from_csv(foreign)
    bad = tmp_path / "bad.csv"
    bad.write_text(_table().to_csv(tmp_path / "ok.csv").read_text().replace("100", "many"))
    with pytest.raises(DataError, match="unreadable value"):
        EvaluationTable.from_csv(bad)


def test_compare_with_paper() -> None:
    text = compare_with_paper(_table(), which="student")
    assert "KDAS student" in text
    assert "| Kvasir | 0.500 | 0.913 | -0.413 |" in text
    assert "| CVC-300 | 0.510 | — | — |" in text  # no published student CVC-300 score
    assert "| CVC-ColonDB | — | 0.759 | — |" in text  # in the paper, not evaluated here
    teacher = compare_with_paper(_table(), which="teacher")
    assert "| CVC-300 | 0.510 | 0.900 | -0.390 |" in teacher
    assert PAPER_RESULTS["teacher"]["ETIS-LaribPolypDB"]["meanDic"] == 0.787
    with pytest.raises(ValueError, match="which"):
        compare_with_paper(_table(), which="baseline")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Real data (skipped unless ../shared/data holds the PraNet TestDataset)
# ---------------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.slow
def test_real_test_sets_score_end_to_end() -> None:
    from kdas_lite.data.registry import DATASETS, find_shared_data

    root = find_shared_data()
    names = ["CVC-ClinicDB", "CVC-300"]  # the two smallest sets keep this test short
    if root is None or not all((root / DATASETS[n].folder).is_dir() for n in names):
        pytest.skip("real PraNet TestDataset not found under ../shared/data (or $KDAS_DATA)")
    table = evaluate(RedDetector(), root, size=SIZE, batch_size=8, test_sets=names,
                     progress=False)
    assert table.n_images == {n: DATASETS[n].num_images for n in names}
    for row in table.rows.values():
        assert all(0 <= row[m] <= 1 for m in METRIC_NAMES if m not in ("maxEm", "meanEm"))
        assert 0 <= row["maxEm"] < 1.01


# ---------------------------------------------------------------------------------------------
# the resize: OpenCV (kdas_lite's training resize) or PIL antialiased (the public test loader)
# ---------------------------------------------------------------------------------------------
def test_pil_resize_is_the_public_loaders_and_is_named_in_every_table(
        sets: dict[str, Path], tmp_path: Path) -> None:
    model = RedDetector()
    table = evaluate(model, sets, size=SIZE, progress=False, resize="pil")
    seen = model.calls[0][1][0]  # the first image as the model received it
    # by hand, as PraNet's test_dataset: PIL bilinear (antialiased) resize, ToTensor, Normalize
    first = Image.open(sorted((sets["Kvasir"] / "images").iterdir())[0]).convert("RGB")
    x = np.asarray(first.resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.float32) / 255
    expected = (torch.from_numpy(x).permute(2, 0, 1)
                - torch.tensor(model.input_mean)[:, None, None]) / torch.tensor(
                    model.input_std)[:, None, None]
    torch.testing.assert_close(seen, expected, atol=1e-5, rtol=0)
    assert table.resize == "pil" and "PIL bilinear, antialiased" in table.caption()
    assert EvaluationTable.from_csv(table.to_csv(tmp_path / "pil.csv")).resize == "pil"
    assert "PIL bilinear, antialiased" in compare_with_paper(table)
    assert "PIL bilinear, antialiased" in comparison_table({"red": table})
    default = evaluate(RedDetector(), sets, size=SIZE, progress=False)
    assert default.resize == "opencv" and "OpenCV bilinear, no antialiasing" in default.caption()
    with pytest.raises(ValueError, match="resize must be one of"):
        evaluate(model, sets, size=SIZE, progress=False, resize="nearest")


def test_the_two_resizes_differ_on_a_textured_downscale(tmp_path: Path) -> None:
    # Pixel noise shrunk 4×: PIL averages each 4×4 footprint (the noise shrinks), OpenCV's
    # bilinear without antialiasing interpolates between 2×2 of the original pixels.
    rng = np.random.default_rng(0)
    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(
        folder / "images" / "a.png")
    Image.fromarray(np.full((256, 256), 255, np.uint8)).save(folder / "masks" / "a.png")
    model = RedDetector()
    evaluate(model, {"set": folder}, size=SIZE, progress=False, resize="pil")
    evaluate(model, {"set": folder}, size=SIZE, progress=False, resize="opencv")
    (_, pil), (_, cv) = model.calls[0], model.calls[1]
    std = torch.tensor(model.input_std)[:, None, None]
    grey_levels = ((pil - cv) * std * 255).abs().mean().item()
    assert grey_levels > 5  # antialiasing averages the noise away; OpenCV keeps it
    assert (pil * std).std() < 0.7 * (cv * std).std()
