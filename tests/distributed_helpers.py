"""Process-group helpers of the distributed tests: free ports, bounded multi-process runs, and
the worker that takes one training step on its share of a fixed global batch."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, TensorDataset

GLOBAL_BATCH = 4
SIZE = 64
LR = 0.1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_processes(fn: Callable[..., None], args: tuple[Any, ...], nprocs: int = 2,
                  timeout: float = 180.0) -> None:
    """``fn(rank, nprocs, port, *args)`` in ``nprocs`` spawned processes; fails (and stops
    them) if any fails or they run past ``timeout`` seconds."""
    context = mp.spawn(fn, args=(nprocs, free_port(), *args), nprocs=nprocs, join=False)
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                if process.is_alive():
                    process.terminate()
            raise TimeoutError(f"the {nprocs} processes ran past {timeout} s")


def fixed_problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A seeded student without stochastic depth (its random draws would differ between one
    process and two) and a fixed global batch (images with a redder "polyp" in the masks)."""
    from kdas_lite.models import PolypPVT

    torch.manual_seed(0)
    model = PolypPVT("pvt_v2_b0", drop_path_rate=0.0)
    images = torch.randn(GLOBAL_BATCH, 3, SIZE, SIZE)
    masks = torch.zeros(GLOBAL_BATCH, 1, SIZE, SIZE)
    for i in range(GLOBAL_BATCH):
        masks[i, :, 8 + 4 * i:40 + 2 * i, 12:44 - 3 * i] = 1
    images[:, 0] += 2 * masks[:, 0]
    return model, images, masks


def one_step(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor,
             parallel: Any = None, accumulate_steps: int = 1) -> dict[str, float]:
    """One SGD step of the supervised objective (SGD: the update is proportional to the
    gradient, so a wrong gradient scale shows; AdamW's first step would hide it)."""
    from kdas_lite.distributed import SINGLE
    from kdas_lite.train import SupervisedObjective, TrainStep

    parallel = parallel or SINGLE
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    step = TrainStep(parallel.wrap(model, torch.device("cpu")), SupervisedObjective(), optimizer,
                     clip=None, accumulate_steps=accumulate_steps, parallel=parallel)
    return step(images, masks)


def val_loader(images: torch.Tensor, masks: torch.Tensor) -> DataLoader:
    return DataLoader(TensorDataset(images, masks), batch_size=3)


def step_worker(rank: int, world_size: int, port: int, out: Path) -> None:
    """Process ``rank``: one step on its contiguous share of the global batch, then the
    validation Dice on its share of the batch, with batch norm synchronised (``sync``) and
    not; writes ``out/<sync>-<rank>.pt``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from kdas_lite.distributed import join

    parallel, device = join(torch.device("cpu"))
    for sync in (True, False):
        _step_and_score(parallel, device, out / f"{sync}-{rank}.pt", sync)


def _step_and_score(parallel: Any, device: torch.device, path: Path, sync: bool) -> None:
    from kdas_lite.distributed import sync_batch_norm
    from kdas_lite.train import validation_dice

    rank, world_size = parallel.rank, parallel.world_size
    model, images, masks = fixed_problem()
    share = slice(rank * GLOBAL_BATCH // world_size, (rank + 1) * GLOBAL_BATCH // world_size)
    restore = sync_batch_norm(model, parallel, device) if sync else (lambda: None)
    synced = sum(type(m).__name__ == "CPUSyncBatchNorm" for m in model.modules())
    values = one_step(model, images[share], masks[share], parallel)
    restore()
    index = parallel.shard(list(range(GLOBAL_BATCH)))
    dice = validation_dice(model, val_loader(images[index], masks[index]), device,
                           parallel=parallel)
    torch.save({"state": model.state_dict(), "values": values, "dice": dice,
                "classes": sorted({type(m).__name__ for m in model.modules()}),
                "synced": synced},
               path)


def accumulate_worker(rank: int, world_size: int, port: int, out: Path) -> None:
    """Process ``rank``: one step of a seeded student on its share of the global batch, with
    ``accumulate_steps`` 1 and 2, counting DistributedDataParallel's gradient all-reduces (a
    communication hook); writes ``out/accumulate-<k>-<rank>.pt``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    from kdas_lite.distributed import join
    from kdas_lite.train import SupervisedObjective, TrainStep

    parallel, device = join(torch.device("cpu"))
    share = slice(rank * GLOBAL_BATCH // world_size, (rank + 1) * GLOBAL_BATCH // world_size)
    for k in (1, 2):
        model, images, masks = fixed_problem()
        wrapped = parallel.wrap(model, device)
        calls = [0]

        def counting(state, bucket, calls=calls):  # DDP checks the annotations: none here
            calls[0] += 1
            return allreduce_hook(state, bucket)

        wrapped.register_comm_hook(None, counting)
        step = TrainStep(wrapped, SupervisedObjective(), torch.optim.SGD(model.parameters(),
                                                                         lr=LR),
                         clip=None, accumulate_steps=k, parallel=parallel)
        step(images[share], masks[share])
        torch.save({"calls": calls[0], "state": model.state_dict()},
                   out / f"accumulate-{k}-{rank}.pt")
