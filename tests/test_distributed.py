"""Training across processes (torchrun, gloo on the CPU): one step over 2 processes equals one
process on the whole batch; a 2-process CLI run writes one complete run folder and resumes."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from distributed_helpers import (
    accumulate_worker,
    fixed_problem,
    free_port,
    one_step,
    run_processes,
    step_worker,
)
from distributed_helpers import val_loader as make_val_loader

from kdas_lite.checkpoint_files import load_checkpoint
from kdas_lite.config import TrainConfig
from kdas_lite.distributed import SINGLE, CPUSyncBatchNorm, Distributed, join
from kdas_lite.errors import TrainingError
from kdas_lite.train import build_dataloaders, validation_dice

REPO = Path(__file__).resolve().parents[1]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a
               if a[k].is_floating_point())


@pytest.mark.slow
def test_one_step_over_two_processes_equals_one_process_on_the_global_batch(tmp_path):
    model, images, masks = fixed_problem()
    values = one_step(model, images, masks)
    single = model.state_dict()
    single_dice = validation_dice(model, make_val_loader(images, masks))
    run_processes(step_worker, (tmp_path,))
    synced = [torch.load(tmp_path / f"True-{rank}.pt") for rank in (0, 1)]
    local = torch.load(tmp_path / "False-0.pt")

    assert synced[0]["synced"] > 10 and local["synced"] == 0  # every BN layer, when asked
    assert "CPUSyncBatchNorm" not in synced[0]["classes"]  # handed back with its own BN
    # SyncBatchNorm + the gradient averaged over equal shares = the global batch's step,
    # running statistics included
    assert max_difference(synced[0]["state"], single) < 1e-5
    assert max_difference(synced[1]["state"], synced[0]["state"]) == 0
    for key in ("loss", "seg"):  # logged: the mean over the processes = the global batch's
        assert synced[0]["values"][key] == synced[1]["values"][key]
        assert synced[0]["values"][key] == pytest.approx(values[key], rel=1e-5)
    # each process scored half of the images; the all-reduced mean is the single one's
    assert synced[0]["dice"] == synced[1]["dice"] == pytest.approx(single_dice, abs=1e-6)
    # the control: batch norm on each process's 2 images alone is not the global batch's step
    assert max_difference(local["state"], single) > 1e-3


@pytest.mark.slow
def test_accumulation_over_processes_averages_the_gradients_once_per_step(tmp_path):
    run_processes(accumulate_worker, (tmp_path,))
    runs = {(k, rank): torch.load(tmp_path / f"accumulate-{k}-{rank}.pt")
            for k in (1, 2) for rank in (0, 1)}
    # two micro-batches, one all-reduce per gradient bucket: the first micro-batch's backward
    # runs under no_sync (before, every micro-batch synchronised: twice the calls)
    assert runs[2, 0]["calls"] == runs[1, 0]["calls"] > 0
    # the gradient of the global batch: one process on all 4 images in micro-batches of one
    # image, as each process's 2 micro-batches (batch norm sees the same single images)
    model, images, masks = fixed_problem()
    one_step(model, images, masks, accumulate_steps=4)
    weights = {name for name, _ in model.named_parameters()}  # batch norm's running statistics
    # are updated once per micro-batch: 4 times here, twice on each process

    def params(state):
        return {k: v for k, v in state.items() if k in weights}

    assert max_difference(params(runs[2, 0]["state"]), params(model.state_dict())) < 1e-5
    assert max_difference(params(runs[2, 1]["state"]), params(runs[2, 0]["state"])) == 0


def test_one_process_is_a_plain_run(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert join(torch.device("cpu")) == (SINGLE, torch.device("cpu"))
    items = list(range(5))
    assert SINGLE.shard(items) == items and not SINGLE.active
    assert [Distributed(r, 2).shard(items) for r in (0, 1)] == [[0, 2, 4], [1, 3]]
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(TrainingError, match="WORLD_SIZE='two'"):
        join(torch.device("cpu"))


def test_the_global_batch_must_split_evenly(tmp_path):
    config = TrainConfig(data_root=str(tmp_path), batch_size=3)
    with pytest.raises(TrainingError, match=r"batch_size 3 is the global batch.*2 processes"):
        build_dataloaders(config, (0.5,) * 3, (0.5,) * 3, parallel=Distributed(0, 2))


def test_synchronised_batch_norm_shares_the_layer_and_keeps_a_fused_activation():
    from timm.layers import BatchNormAct2d

    torch.manual_seed(0)
    x = torch.randn(4, 8, 5, 5)
    for bn in (torch.nn.BatchNorm2d(8), BatchNormAct2d(8, act_layer=torch.nn.ReLU6)):
        torch.nn.init.normal_(bn.weight)
        shared = CPUSyncBatchNorm.sharing(bn)
        assert shared.weight is bn.weight and shared.running_mean is bn.running_mean
        reference = copy.deepcopy(bn)
        for mode in (True, False):  # one process: an ordinary batch norm (+ its activation)
            torch.testing.assert_close(shared.train(mode)(x), reference.train(mode)(x))
        torch.testing.assert_close(bn.running_var, reference.running_var)  # updated in place
    with pytest.raises(TrainingError, match="cannot synchronise the batch norm LazyBatchNorm2d"):
        CPUSyncBatchNorm.sharing(torch.nn.LazyBatchNorm2d())


def test_world_size_is_recorded_not_set():
    assert TrainConfig().world_size == 1
    assert TrainConfig.from_dict(TrainConfig(world_size=2).to_dict()).world_size == 2
    with pytest.raises(ValueError, match="world_size"):
        TrainConfig(world_size=0)


def kdas_lite(*args: str, torchrun: bool = False, port: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                "127.0.0.1", "--master_port", str(port)] if torchrun else []
    return subprocess.run([sys.executable, *launcher, "-m", "kdas_lite", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_torchrun_cli_writes_one_run_and_resumes(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    made = kdas_lite("make-synthetic", str(data), "--train", "12", "--test", "0", "--size", "64")
    assert made.returncode == 0, made.stderr
    flags = ["--preset", "smoke", "--data", str(data), "--output", str(out), "--teacher-encoder",
             "pvt_v2_b0", "--quiet"]
    run = kdas_lite("train-teacher", *flags, torchrun=True, port=free_port())
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("teacher: best validation Dice") == 1  # process 0 alone prints
    assert sorted(p.name for p in out.iterdir()) == ["teacher"]
    folder = out / "teacher"
    assert sorted(p.name for p in folder.iterdir()) == [
        "best.pth", "config.json", "history.csv", "history.json", "last.pth"]
    config = json.loads((folder / "config.json").read_text())
    assert config["world_size"] == 2 and config["batch_size"] == 2
    history = json.loads((folder / "history.json").read_text())
    # one validation image: process 1 scores none of it, the all-reduced mean is still defined
    assert 0 <= history[0]["val_dice"] <= 1
    last = load_checkpoint(folder / "last.pth")
    # 8 training images, a global batch of 2 (1 per process): 4 steps, as with one process
    assert last["epoch"] == 1 and last["step"] == 4
    assert last["train_config"]["world_size"] == 2

    again = kdas_lite("train-teacher", *flags, "--epochs", "2", "--resume", torchrun=True,
                      port=free_port())
    assert again.returncode == 0, again.stdout + again.stderr
    history = json.loads((folder / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert load_checkpoint(folder / "last.pth")["step"] == 8
