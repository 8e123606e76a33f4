"""The transfer set (kdas_lite.transfer): split files, the KD term without masks, the two-batch
step, and that a student distilling on U never reads U's masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from training_helpers import tiny_config, tiny_dataset

from kdas_lite.config import ConfigError
from kdas_lite.data import io as data_io
from kdas_lite.data import load_split, pair_files, split_pairs
from kdas_lite.errors import DataError, TrainingError
from kdas_lite.losses import KDASLoss
from kdas_lite.objectives import DistillationObjective, SupervisedObjective
from kdas_lite.train import build_model, distill, train_teacher
from kdas_lite.transfer import ImageDataset, pseudo_labels, transfer_batches, transfer_seed

LISTS = {"L": ["train_0000", "train_0001", "train_0002", "train_0003"],
         "V": ["train_0004", "train_0005"],
         "U": ["train_0006", "train_0007", "train_0008", "train_0009"]}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def split_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("split") / "split.json"
    path.write_text(json.dumps({"lists": LISTS}), encoding="utf-8")
    return path


def transfer_config(data_root: Path, out: Path, split_file: Path, **overrides):
    return tiny_config(data_root, out, split_file=str(split_file), train_subset="L",
                       val_subset="V", max_train_images=None, max_val_images=None,
                       **overrides)


# ---------------------------------------------------------------------------------------------
# configuration and split files
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fields, message", [
    ({"split_file": "s.json"}, "go together"),
    ({"split_file": "s.json", "train_subset": "L", "val_subset": "V",
      "transfer_subset": "U"}, "transfer_subset and transfer_target go together"),
    ({"transfer_subset": "U", "transfer_target": "labels"}, "give split_file too"),
    ({"split_file": "s.json", "train_subset": "L", "val_subset": "V", "transfer_subset": "U",
      "transfer_target": "kd", "use_at": False, "use_sgm": False}, "distillation terms"),
    ({"split_file": "s.json", "train_subset": "L", "val_subset": "V", "transfer_subset": "U",
      "transfer_target": "soft"}, "must be one of"),
])
def test_config_checks_the_split_and_transfer_fields(tmp_path, fields, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(tmp_path, tmp_path, **fields)


def test_split_pairs_selects_by_stem_and_refuses_overlaps_unknown_ids_and_test_images(
        data_root, split_file, tmp_path):
    pairs = pair_files(data_root / "TrainDataset" / "images", data_root / "TrainDataset" / "masks")
    train, val, transfer = split_pairs(pairs, split_file, ["L", "V", "U"])
    assert [p[0].stem for p in train] == LISTS["L"] and [p[0].stem for p in val] == LISTS["V"]
    assert [p[0].stem for p in transfer] == LISTS["U"]
    with pytest.raises(DataError, match="are test images"):
        split_pairs(pairs, split_file, ["L"], exclude=frozenset({"train_0001"}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"lists": {"A": ["train_0000"], "B": ["train_0000", "nope"]}}))
    with pytest.raises(DataError, match="not training images"):
        split_pairs(pairs, bad, ["B"])
    bad.write_text(json.dumps({"lists": {"A": ["train_0000"], "B": ["train_0000"]}}))
    with pytest.raises(DataError, match="in two of the lists"):
        split_pairs(pairs, bad, ["A", "B"])
    with pytest.raises(DataError, match="has no list 'C'"):
        split_pairs(pairs, bad, ["C"])
    bad.write_text("[1, 2]")
    with pytest.raises(DataError, match="is not a split"):
        load_split(bad)
    with pytest.raises(DataError, match="not found"):
        load_split(tmp_path / "missing.json")


def test_the_committed_transfer_split_keeps_its_promises():
    """T and U disjoint, L ⊂ T_train, S_val ⊂ T_val, no ClinicDB block in both T and U, and
    no PraNet test image (the Kvasir test names) anywhere."""
    root = Path(__file__).resolve().parents[1] / "kdas_lite" / "data" / "splits"
    split = json.loads((root / "transfer_set.json").read_text(encoding="utf-8"))
    lists = {k: set(v) for k, v in split["lists"].items()}
    assert not lists["T"] & lists["U"] and not lists["reserve"] & (lists["T"] | lists["U"])
    assert lists["T"] == lists["T_train"] | lists["T_val"]
    assert lists["L50"] <= lists["L200"] <= lists["T_train"] and lists["S_val"] <= lists["T_val"]
    assert (len(lists["L200"]), len(lists["L50"]), len(lists["S_val"])) == (200, 50, 40)
    assert len(set().union(*lists.values())) == 1450
    tests = set((root / "kvasir_pranet_test.txt").read_text().split())
    assert not tests & set().union(*lists.values())
    for block in split["clinicdb_blocks"]:
        first, last = map(int, block["frames"].split("-"))
        frames = {str(n) for n in range(first, last + 1)}
        assert sum(bool(frames & lists[part]) for part in ("T", "U", "reserve")) == 1


# ---------------------------------------------------------------------------------------------
# the losses of a transfer batch
# ---------------------------------------------------------------------------------------------
def test_kdas_loss_without_a_mask_is_the_weighted_distillation_terms():
    torch.manual_seed(0)
    student = tuple(torch.randn(2, 1, 16, 16) for _ in range(2))
    teacher = tuple(torch.randn(2, 1, 16, 16) for _ in range(2))
    loss = KDASLoss(alpha=0.3, baseline="cwd")
    full = loss(student, teacher, (torch.rand(2, 1, 16, 16) > 0.5).float())
    only = loss(student, teacher, None)
    assert float(only.seg) == 0.0
    expected = 0.3 * (full.at + full.sgm + full.kd)
    torch.testing.assert_close(only.total, expected)
    assert "seg" not in loss.terms(student, teacher, None)
    with pytest.raises(ValueError, match="needs a distillation term"):
        KDASLoss(use_at=False, use_sgm=False)(student, None, None)


def test_one_pass_over_both_batches_is_the_sum_of_the_two_losses():
    """In eval mode (no batch statistics) the joint forward equals loss(L) + loss(U): for KD
    the U part has no L_seg; for labels it is ΣL_seg against the U targets."""
    torch.manual_seed(0)
    student, teacher = build_model("pvt_v2_b0", tiny_config(Path("."), Path("."))), \
        build_model("pvt_v2_b0", tiny_config(Path("."), Path("."), seed=1))
    student.eval()
    images, u_images = torch.randn(2, 3, 64, 64), torch.randn(3, 3, 64, 64)
    masks, u_masks = (torch.rand(2, 1, 64, 64) > 0.5).float(), \
        (torch.rand(3, 1, 64, 64) > 0.5).float()
    kd = DistillationObjective(teacher, KDASLoss(alpha=0.3))
    joint = kd(student, images, masks, transfer=(u_images, None))
    alone = kd(student, images, masks)
    u_only = kd.loss(student(u_images)[:2], teacher(u_images)[:2], None)
    torch.testing.assert_close(joint.total, alone.total + u_only.total, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(joint.seg, alone.seg, rtol=1e-4, atol=1e-5)
    sup = SupervisedObjective()
    joint = sup(student, images, masks, transfer=(u_images, u_masks))
    torch.testing.assert_close(
        joint.total, sup(student, images, masks).total + sup(student, u_images, u_masks).total,
        rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# the transfer set's data
# ---------------------------------------------------------------------------------------------
def test_pseudo_labels_threshold_the_teachers_probability():
    class Fixed(torch.nn.Module):
        input_mean = input_std = (0.5, 0.5, 0.5)

        def forward(self, x):  # P1 + P2 = 2·x₀: positive where the red channel is above 127.5
            return x[:, :1], x[:, :1]

    pixels = np.zeros((3, 8, 8, 3), np.uint8)
    pixels[0, :4] = 255
    pixels[2] = 200
    labels = pseudo_labels(Fixed(), pixels, batch_size=2)
    assert labels.dtype == np.uint8 and labels.shape == (3, 8, 8)
    assert labels[0, :4].all() and not labels[0, 4:].any()
    assert not labels[1].any() and labels[2].all()


def test_transfer_batches_are_seeded_by_epoch_and_restart_when_u_runs_out(data_root):
    images = sorted((data_root / "TrainDataset" / "images").iterdir())[:3]
    loader = torch.utils.data.DataLoader(ImageDataset(images, 32, augment=True), batch_size=2,
                                         shuffle=True, generator=torch.Generator())
    first = [next(it)[0] for it in [transfer_batches(loader, 0, 1)] for _ in range(3)]
    again = transfer_batches(loader, 0, 1)
    for batch in first:
        images_, masks = next(again)
        assert masks is None
        torch.testing.assert_close(images_, batch)
    assert [len(b) for b in first] == [2, 1, 2]  # 3 images: a full pass, then again
    other = next(transfer_batches(loader, 0, 2))[0]
    assert not torch.equal(other, first[0])
    assert transfer_seed(0, 1) != transfer_seed(0, 2)


# ---------------------------------------------------------------------------------------------
# training with a transfer set
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_distilling_on_the_transfer_set_never_reads_its_masks(data_root, split_file, tmp_path,
                                                              monkeypatch):
    config = transfer_config(data_root, tmp_path / "run", split_file)
    teacher = train_teacher(config, progress=False).best_path
    u_masks = {str(p.resolve()) for p in (data_root / "TrainDataset" / "masks").iterdir()
               if p.stem in LISTS["U"]}
    opened: list[str] = []
    read_mask = data_io.read_mask

    def spy(path):
        opened.append(str(Path(path).resolve()))
        return read_mask(path)

    monkeypatch.setattr(data_io, "read_mask", spy)
    student = config.replace(output_dir=str(tmp_path / "kd"), transfer_subset="U",
                             transfer_target="kd")
    run = distill(student, teacher, progress=False)
    assert opened and not set(opened) & u_masks  # L's and V's masks are read, U's never
    assert run.history[0]["loss"] > 0
    # the oracle reads them (the spy sees them), and the U batch changes the training
    opened.clear()
    oracle = distill(student.replace(output_dir=str(tmp_path / "oracle"), use_at=False,
                                     use_sgm=False, transfer_target="labels"), None,
                     progress=False)
    assert set(opened) & u_masks
    alone = distill(student.replace(output_dir=str(tmp_path / "alone"), use_at=False,
                                    use_sgm=False, transfer_subset=None, transfer_target=None),
                    None, progress=False)
    assert oracle.history[0]["loss"] != alone.history[0]["loss"]


@pytest.mark.slow
def test_self_training_needs_the_teacher_and_resumes_like_an_uninterrupted_run(
        data_root, split_file, tmp_path):
    config = transfer_config(data_root, tmp_path / "run", split_file)
    teacher = train_teacher(config, progress=False).best_path
    pseudo = config.replace(use_at=False, use_sgm=False, transfer_subset="U",
                            transfer_target="pseudo", epochs=2)
    with pytest.raises(TrainingError, match="needs the teacher"):
        distill(pseudo.replace(output_dir=str(tmp_path / "none")), None, progress=False)
    straight = distill(pseudo.replace(output_dir=str(tmp_path / "a")), teacher, progress=False)
    first = pseudo.replace(output_dir=str(tmp_path / "b"))
    distill(first, teacher, stop_after_epoch=1, progress=False)
    resumed = distill(first, teacher, resume=True, progress=False)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    assert (tmp_path / "a" / "student" / "teacher.json").is_file()  # whose labels it learnt
