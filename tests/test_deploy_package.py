"""kdas-lite package: safetensors + config.json + model card; the folder (or a Hub repository
id, against a fake hf_hub_download) loads without unpickling and scores as the checkpoint."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from kdas_lite.checkpoint_files import save_checkpoint
from kdas_lite.data import make_synthetic_dataset
from kdas_lite.errors import CheckpointError, DataError
from kdas_lite.evaluate import evaluate
from kdas_lite.hub import is_package, load_package
from kdas_lite.models import PolypPVT
from kdas_lite.package import CARD_METRICS, package_checkpoint
from kdas_lite.runs import load_trained, trained_image_size


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    root = tmp_path_factory.mktemp("package")
    torch.manual_seed(0)
    model = PolypPVT("pvt_v2_b0").eval()
    checkpoint = save_checkpoint({"format": 2, "role": "student", "arch": model.config(),
                                  "model": model.state_dict(),
                                  "train_config": {"image_size": 64, "epochs": 3}},
                                 root / "best.pth")
    data = make_synthetic_dataset(root / "data", n_train=2, n_test=3, size=64,
                                  test_sets=("Kvasir", "ETIS-LaribPolypDB"))
    table = evaluate(load_trained(checkpoint), data, size=64, progress=False, cache=False,
                     workers=1)
    folder = package_checkpoint(checkpoint, root / "pkg", table, repo_id="course/kdas-student")
    return checkpoint, folder, data, table


def test_the_folder_holds_weights_config_and_a_valid_card(packaged):
    _, folder, _, table = packaged
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json",
                                                        "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["arch"]["encoder"] == "pvt_v2_b0" and config["image_size"] == 64
    card = ModelCard.load(folder / "README.md")
    results = card.data.eval_results
    assert len(results) == len(table.rows) * len(CARD_METRICS)
    dice = {r.dataset_name: r.metric_value for r in results if r.metric_type == "dice"}
    assert dice["Kvasir"] == pytest.approx(table.rows["Kvasir"]["meanDic"], abs=1e-4)
    assert all(r.task_type == "image-segmentation" for r in results)
    text = (folder / "README.md").read_text()
    assert "Research use, not a diagnosis" in text and "TrainDataset" in text
    assert "SYNTHETIC" in text  # the evaluation table's own notes travel with it
    assert "course/kdas-student" in text


def test_the_folder_scores_as_the_checkpoint(packaged):
    _checkpoint, folder, data, table = packaged
    again = evaluate(load_trained(folder), data, size=trained_image_size(folder),
                     progress=False, cache=False, workers=1)
    assert again.rows == table.rows


def test_loading_safetensors_never_unpickles(packaged, monkeypatch):
    _, folder, _, _ = packaged

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    model = load_package(folder)
    assert isinstance(model, PolypPVT) and not model.training
    with pytest.raises(CheckpointError, match="unpickled"):  # the patch does bite a .pth
        load_trained(packaged[0])


def test_a_hub_repository_id_is_downloaded(packaged, monkeypatch, tmp_path):
    _, folder, _, _ = packaged
    asked = []
    snapshot = tmp_path / "cache" / "snapshot"

    def fake_download(repo_id, filename, revision=None, **kwargs):  # hf_hub_download's shape
        asked.append((repo_id, filename))
        if repo_id != "course/kdas-student":
            raise OSError(f"404 Client Error: Repository Not Found for url: .../{repo_id}")
        snapshot.mkdir(parents=True, exist_ok=True)
        return str(shutil.copy(folder / filename, snapshot / filename))

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    assert is_package("course/kdas-student") and not is_package("runs/x/best.pth")
    model = load_trained("course/kdas-student")
    assert asked[:2] == [("course/kdas-student", "config.json"),
                         ("course/kdas-student", "model.safetensors")]
    assert isinstance(model, PolypPVT) and trained_image_size("course/kdas-student") == 64
    with pytest.raises(CheckpointError, match="neither a local file or folder nor a Hub"):
        load_trained("course/missing")


def test_damaged_folders_and_foreign_files_are_refused(packaged, tmp_path):
    checkpoint, folder, _, table = packaged
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    config = json.loads((broken / "config.json").read_text())
    config["arch"]["channel"] = 10**6
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError):
        load_package(broken)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="did not write"):
        package_checkpoint(checkpoint, other, table)
    with pytest.raises(DataError, match="already holds a package"):
        package_checkpoint(checkpoint, folder, table)
    assert (other / "notes.txt").read_text() == "mine"


def test_cli_package_evaluate_and_predict_accept_the_folder(packaged, tmp_path, capsys):
    from kdas_lite.cli import main

    checkpoint, _folder, data, table = packaged
    csv = table.to_csv(tmp_path / "eval.csv")
    status = main(["package", str(checkpoint), str(tmp_path / "pkg"), "--results", str(csv)])
    assert status == 0 and (tmp_path / "pkg" / "model.safetensors").is_file()
    capsys.readouterr()
    status = main(["evaluate", str(tmp_path / "pkg"), "--data", str(data), "--sets", "Kvasir",
                   "--quiet"])
    out = capsys.readouterr().out
    assert status == 0 and "64 px, the size it was trained at" in out
    images = Path(data) / "TestDataset" / "Kvasir" / "images"
    status = main(["predict", str(tmp_path / "pkg"), str(images), "--output",
                   str(tmp_path / "pred"), "--quiet"])
    assert status == 0 and len(list((tmp_path / "pred" / "masks").glob("*.png"))) == 3
