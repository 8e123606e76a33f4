"""One training run across several processes: ``torchrun`` and DistributedDataParallel.

Under ``torchrun --nproc_per_node N -m kdas_lite train-teacher ...`` (or ``distill``, or a
script that calls :func:`kdas_lite.train.fit`) every process runs the same training loop;
:func:`join` joins the process group torchrun describes in the environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): NCCL on CUDA, one GPU per
process (``cuda:LOCAL_RANK``), gloo on the CPU. Without torchrun (``WORLD_SIZE`` unset or 1)
nothing here does anything, and a run is exactly the single-process run.

Why the N processes train *one* run, the same as one process would (up to float rounding):

- The global batch ``B = config.batch_size`` is split into N per-process batches of ``B / N``
  images (:class:`torch.utils.data.DistributedSampler`, reshuffled every epoch with
  ``set_epoch``). Every loss term is a mean over the images of a batch, so with equal
  per-process batches the mean of the N per-process losses *is* the loss of the global batch,
  and DistributedDataParallel, which averages the gradients over the processes, steps along
  its gradient: the same steps per epoch, learning rate and schedule as one process.
- Batch norm normalises with the statistics of the global batch (:func:`sync_batch_norm`
  replaces the student's batch-norm layers during training), so the activations, and the
  running statistics used at validation, are those of one process on the whole batch. The
  frozen teacher runs in eval mode (running statistics, nothing to synchronise), one copy per
  process.
- Multi-scale training trains every batch at every size of ``config.train_sizes``, in the same
  order on every process: no random scale is drawn, so all processes run the same size at every
  step (a collective on tensors of different shapes would hang).
- The logged loss values are averaged over the processes at every step, before the NaN check,
  so a non-finite loss on any process stops all of them at the same step.
- Validation scores a disjoint share of the validation images on each process and all-reduces
  the Dice sums: every process gets the same mean, hence the same best epoch.
- Only process 0 (:attr:`Distributed.is_main`) writes: checkpoints, history, ``config.json``
  (which records ``world_size``), progress bars and messages.
- When a process dies (killed, out of memory), the others fail in their next collective with
  the backend's ``RuntimeError`` (gloo: "Connection closed by peer"); :func:`reports_lost_process`
  turns it into one :class:`~kdas_lite.errors.TrainingError` line that names the lost process
  and says that ``--resume`` continues the run from its last completed epoch.
"""

from __future__ import annotations

import atexit
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from kdas_lite.errors import TrainingError

__all__ = ["SINGLE", "CPUSyncBatchNorm", "Distributed", "SyncBatchNorm", "environment_world_size",
           "is_main_process", "join", "reports_lost_process", "sync_batch_norm"]

F = TypeVar("F", bound=Callable[..., Any])
# What the backends say when the other end of a collective has gone away.
_LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "Broken pipe",
              "remote worker crashing", "NCCL communicator was aborted", "ProcessGroupNCCL")


@dataclass(frozen=True)
class Distributed:
    """This process's place in a training run.

    Attributes:
        rank: index of this process, 0 … world_size − 1 (0 writes the run folder).
        world_size: number of processes training the run (1: a plain single-process run).
        local_rank: index of this process on its machine (its GPU under torchrun).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """True when several processes train the run (collectives are needed)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on process 0, the one that writes files and shows progress."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every process gets here (nothing with one process)."""
        if self.active:
            dist.barrier()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Run the block on process 0 first, then on the others: e.g. to create shared files
        (synthetic data, a decode cache) once and let the others find them."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def sum(self, tensor: Tensor) -> Tensor:
        """The element-wise sum of ``tensor`` over the processes (``tensor`` itself with one)."""
        if self.active:
            tensor = tensor.clone()
            dist.all_reduce(tensor)
        return tensor

    def mean(self, tensor: Tensor) -> Tensor:
        """The element-wise mean of ``tensor`` over the processes."""
        return self.sum(tensor) / self.world_size if self.active else tensor

    def broadcast(self, value: Any) -> Any:
        """Process 0's ``value`` (any picklable object) on every process."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def shard(self, items: Sequence[Any]) -> Sequence[Any]:
        """This process's disjoint share of ``items`` (every N-th item from ``rank``): the
        shares of all processes together are ``items``, each exactly once."""
        return items[self.rank::self.world_size] if self.active else items

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` in DistributedDataParallel (gradients averaged over the processes), or
        ``model`` itself with one process. Call :func:`sync_batch_norm` on it first."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [device] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)


SINGLE = Distributed()
"""A single-process run."""


def environment_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 without torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise TrainingError(f"the environment variable WORLD_SIZE={os.environ['WORLD_SIZE']!r} "
                            "is not a number of processes; launch with torchrun, or unset it"
                            ) from None


def is_main_process() -> bool:
    """True unless this is a process other than 0 of a torchrun job (for messages)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def join(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join the process group of a torchrun job, if this process belongs to one.

    An existing default process group (e.g. set up by the caller with
    ``torch.distributed.init_process_group``) is used as it is. Otherwise, with ``WORLD_SIZE``
    above 1, the group is created from the environment, with NCCL when ``device`` is a CUDA
    device and gloo otherwise, and destroyed when the process exits.

    Args:
        device: the device the run asked for (:func:`kdas_lite.train.resolve_device`).

    Returns:
        ``(this process's Distributed, its device)``: under torchrun a CUDA run uses
        ``cuda:LOCAL_RANK``.

    Raises:
        TrainingError: a specific GPU (``cuda:N``) was asked for under torchrun, which gives
            each process its own.
    """
    joined = dist.is_available() and dist.is_initialized()
    if not joined and environment_world_size() == 1:
        return SINGLE, device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device.index is not None and device.index != local_rank:
            raise TrainingError(f"device {device} was requested, but under torchrun process "
                                f"{local_rank} of this machine uses cuda:{local_rank}; use "
                                "--device cuda (or auto), and CUDA_VISIBLE_DEVICES to choose "
                                "the GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not joined:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave)
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank), device


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _lost_process(exc: RuntimeError) -> TrainingError | None:
    """The one-line error for a collective that failed because another process of the run is
    gone, or None if ``exc`` is something else (or there is no multi-process run)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return None
    text = str(exc)
    network = getattr(dist, "DistNetworkError", ())
    if not (isinstance(exc, network) or any(marker in text for marker in _LOST_PEER)):
        return None
    rank, world = dist.get_rank(), dist.get_world_size()
    lost = f"process {1 - rank}" if world == 2 else "another process"
    detail = text.split("] ", 1)[-1].split(". ")[0].strip()
    return TrainingError(
        f"process {rank} of {world}: {lost} of this torchrun run stopped (its own output says "
        f"why: killed, out of memory, an error), so this one stops too ({detail}). The "
        "checkpoints hold the last completed epoch: run the same command with --resume to "
        "continue the run.")


def reports_lost_process(fn: F) -> F:
    """Decorate a training entry point (:func:`kdas_lite.train.fit`): when a collective fails
    because another process died, raise the one-line :class:`TrainingError` of
    :func:`_lost_process` instead of the backend's ``RuntimeError`` traceback."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RuntimeError as exc:
            lost = _lost_process(exc)
            if lost is None:
                raise
            raise lost from None
    return wrapper  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Batch norm over the global batch
# ---------------------------------------------------------------------------------------------
class _SharedBatchNorm:
    """Building a synchronised batch norm from an ordinary one, sharing its tensors."""

    post: nn.Module | None

    @classmethod
    def sharing(cls, bn: _BatchNorm) -> Any:
        """A layer of this class with the very parameters and buffers of ``bn`` (not copies),
        so that training it trains ``bn`` and the optimiser's parameters stay the same objects.
        ``post`` holds what a batch norm fused with its activation runs after normalising
        (timm's ``BatchNormAct2d`` in the EfficientNet-Lite encoders: dropout, activation).

        Raises:
            TrainingError: ``bn`` is a batch-norm variant whose forward is not known here.
        """
        kind = type(bn)
        fused = kind.__name__ == "BatchNormAct2d" and hasattr(bn, "drop") and hasattr(bn, "act")
        if kind not in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d) and not fused:
            raise TrainingError(f"cannot synchronise the batch norm {kind.__name__} across "
                                "processes: train this model with a single process")
        new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine,  # type: ignore[call-arg]
                  bn.track_running_stats)
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            setattr(new, name, getattr(bn, name))
        new.post = nn.Sequential(bn.drop, bn.act) if fused else None
        new.train(bn.training)
        return new


class SyncBatchNorm(_SharedBatchNorm, nn.SyncBatchNorm):
    """:class:`torch.nn.SyncBatchNorm` (CUDA), followed by ``post`` when there is one."""

    def forward(self, input: Tensor) -> Tensor:
        out = super().forward(input)
        return out if self.post is None else self.post(out)


class CPUSyncBatchNorm(_SharedBatchNorm, _BatchNorm):
    """Batch norm with the global batch's statistics on the CPU (gloo).

    :class:`torch.nn.SyncBatchNorm` runs on GPUs only (and DistributedDataParallel refuses it
    in a CPU model), so the same formulas are computed here: with ``n`` values per channel
    over all processes, ``μ = Σx / n`` and ``σ² = Σx² / n − μ²`` from one differentiable
    all-reduce of ``(Σx, Σx², n)`` in float64, ``y = γ·(x − μ)/√(σ² + ε) + β``, and the
    running statistics updated with ``μ`` and the unbiased ``σ²·n/(n − 1)``. The backward of
    the all-reduce sums the gradients of the statistics over the processes, as torch's CUDA
    implementation does. In eval mode, or with one process, it is an ordinary batch norm.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        needs_sync = (self.training and dist.is_available() and dist.is_initialized()
                      and dist.get_world_size() > 1)
        out = _cpu_sync_batch_norm(self, input) if needs_sync else super().forward(input)
        return out if self.post is None else self.post(out)


class _AllReduceSum(torch.autograd.Function):
    """The sum over the processes, differentiable: the gradient of every process's input is
    the sum of the gradients of the output over the processes."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _cpu_sync_batch_norm(bn: CPUSyncBatchNorm, x: Tensor) -> Tensor:
    """Training-mode batch norm of ``x`` (``(B, C, ...)``) with the global batch's statistics."""
    channels = x.shape[1]
    dims = [0, *range(2, x.dim())]
    wide = x.double()
    local = torch.cat([wide.sum(dims), (wide * wide).sum(dims),
                       wide.new_full((1,), x.numel() / channels)])
    total = _AllReduceSum.apply(local)
    n = total[-1]
    mean = total[:channels] / n
    var = (total[channels:2 * channels] / n - mean * mean).clamp_min(0)
    if bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None:
        with torch.no_grad():
            if bn.num_batches_tracked is not None:
                bn.num_batches_tracked.add_(1)
            factor = (1.0 / float(bn.num_batches_tracked) if bn.momentum is None
                      else bn.momentum)
            bn.running_mean.mul_(1 - factor).add_(factor * mean.to(bn.running_mean.dtype))
            unbiased = var * n / (n - 1).clamp_min(1)
            bn.running_var.mul_(1 - factor).add_(factor * unbiased.to(bn.running_var.dtype))
    shape = (1, channels) + (1,) * (x.dim() - 2)
    scale = torch.rsqrt(var + bn.eps).to(x.dtype).view(shape)
    out = (x - mean.to(x.dtype).view(shape)) * scale
    if bn.affine:
        out = out * bn.weight.view(shape) + bn.bias.view(shape)
    return out


def sync_batch_norm(model: nn.Module, parallel: Distributed, device: torch.device
                    ) -> Callable[[], None]:
    """Replace every batch-norm layer inside ``model`` (already on ``device``) by a
    synchronised one that shares its parameters and buffers: :class:`SyncBatchNorm` on CUDA,
    :class:`CPUSyncBatchNorm` on the CPU (nothing happens with one process).

    Returns:
        A function that puts the original layers back (they hold the trained values, which
        they share), so that the model handed back after training is the model given.
    """
    kind = SyncBatchNorm if device.type == "cuda" else CPUSyncBatchNorm
    swaps: list[tuple[nn.Module, str, nn.Module]] = []
    if parallel.active:
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, _BatchNorm) and not isinstance(child, _SharedBatchNorm):
                    swaps.append((parent, name, child))
                    setattr(parent, name, kind.sharing(child))

    def restore() -> None:
        for parent, name, child in swaps:
            setattr(parent, name, child)

    return restore
