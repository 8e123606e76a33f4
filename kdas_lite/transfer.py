"""A transfer set: images the student has no labels for, brought by the teacher.

In the course's other runs the distillation term is computed on the student's own labelled
images L, which the teacher has mostly trained on. With a *transfer set* U (images disjoint
from L whose labels the student never sees) every optimiser step trains on two batches: one
from L with the run's objective, and one from U with a term chosen by
``config.transfer_target`` (:class:`~kdas_lite.config.TrainConfig`):

- ``"kd"``: the distillation terms alone, ``α·(ΣL_AT + w·L_SGM + ΣL_KD)`` (Eq. 6 without
  its ``(1 − α)·ΣL_seg``): U's masks are never read (:class:`ImageDataset` holds no mask
  path at all);
- ``"pseudo"``: ``ΣL_seg`` against the frozen teacher's **hard** pseudo-labels
  ``σ(P1_t + P2_t) > 0.5`` (:func:`pseudo_labels`, computed once, on the un-augmented images,
  then augmented together with them): self-training, the control that tells soft targets
  from plain pseudo-labels;
- ``"labels"``: ``ΣL_seg`` against U's true masks: the oracle, the ceiling of what U can give.

Both batches go through the student (and the teacher) in **one** forward pass, so batch norm
sees them together; the loss is the objective on the L part plus the transfer term on the U
part, each a mean over its own images (:meth:`kdas_lite.objectives.Objective.forward`).
:func:`transfer_loader` builds U's loader; :func:`kdas_lite.train.fit` draws one U batch per
L batch, from a permutation of U seeded by ``(config.seed, epoch)`` (:func:`transfer_seed`),
so a resumed run sees the same U batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from kdas_lite.config import TrainConfig
from kdas_lite.data.io import read_image
from kdas_lite.data.transforms import build_eval_transform, build_resize, build_train_transform
from kdas_lite.errors import TrainingError
from kdas_lite.training_data import seed_augmentation

__all__ = ["TARGETS", "ImageDataset", "pseudo_labels", "transfer_batches", "transfer_loader",
           "transfer_seed"]

TARGETS = ("kd", "pseudo", "labels")
"""What the transfer batch is trained on (``TrainConfig.transfer_target``)."""


class ImageDataset(Dataset):
    """Images without their masks: decoded once, resized to ``size²`` and kept in memory.

    ``dataset[i]`` is the image tensor ``float32 (3, size, size)``, normalised with
    ``mean`` / ``std`` and augmented like the training images when ``augment``; with
    ``targets`` (``uint8 (N, size, size)`` in {0, 1}, e.g. :func:`pseudo_labels`) it is
    ``(image, target float32 (1, size, size))``, the target augmented with the image.

    It is given image paths only, so it cannot read a mask.
    """

    def __init__(self, images: Sequence[str | Path], size: int, augment: bool = False,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                 targets: np.ndarray | None = None) -> None:
        self.images = [Path(p) for p in images]
        self.size = size
        resize = build_resize(size)
        self.pixels = np.stack([resize(image=read_image(p))["image"] for p in self.images]) \
            if self.images else np.zeros((0, size, size, 3), np.uint8)
        if targets is not None and targets.shape != self.pixels.shape[:3]:
            raise ValueError(f"targets must be (N, {size}, {size}) for the {len(self.images)} "
                             f"images, got {tuple(targets.shape)}")
        self.targets = targets
        build = build_train_transform if augment else build_eval_transform
        self.transform = build(size, mean, std)
        self.transform.set_random_seed(torch.initial_seed() % 2**32)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tensor | tuple[Tensor, Tensor]:
        if self.targets is None:
            return self.transform(image=self.pixels[index])["image"]
        out = self.transform(image=self.pixels[index], mask=self.targets[index])
        return out["image"], torch.from_numpy(out["mask"].numpy()[None].astype(np.float32))


@torch.no_grad()
def pseudo_labels(teacher: nn.Module, pixels: np.ndarray, batch_size: int = 16,
                  device: torch.device | str = "cpu") -> np.ndarray:
    """The teacher's hard labels ``σ(P1_t + P2_t) > 0.5`` of un-augmented images.

    Args:
        teacher: a trained model returning ``(P1, P2)`` logits at its input size; its
            ``input_mean`` / ``input_std`` (EfficientNet-Lite: 0.5) normalise the images.
        pixels: ``uint8 (N, S, S, 3)`` RGB images (:attr:`ImageDataset.pixels`).

    Returns:
        ``uint8 (N, S, S)`` in {0, 1}.
    """
    mean = torch.tensor(getattr(teacher, "input_mean", (0.5, 0.5, 0.5))).view(1, 3, 1, 1)
    std = torch.tensor(getattr(teacher, "input_std", (0.5, 0.5, 0.5))).view(1, 3, 1, 1)
    was_training = teacher.training
    teacher.eval()
    out = []
    try:
        for start in range(0, len(pixels), batch_size):
            x = torch.from_numpy(pixels[start:start + batch_size]).permute(0, 3, 1, 2).float()
            x = ((x / 255 - mean) / std).to(device)
            p1, p2 = teacher(x)[:2]
            out.append((torch.sigmoid(p1 + p2) > 0.5)[:, 0].to(torch.uint8).cpu().numpy())
    finally:
        teacher.train(was_training)
    size = pixels.shape[1:3]
    return np.concatenate(out) if out else np.zeros((0, *size), np.uint8)


def transfer_seed(seed: int, epoch: int) -> int:
    """The 32-bit seed of epoch ``epoch``'s permutation and augmentation of U (distinct from
    the L loader's :func:`kdas_lite.training_data.epoch_seed`)."""
    return int(np.random.SeedSequence([seed, epoch, 2**31 - 1]).generate_state(1)[0])


def transfer_loader(config: TrainConfig, pairs: Sequence[tuple[Path, Path]],
                    mean: Sequence[float], std: Sequence[float],
                    teacher: nn.Module | None = None,
                    device: torch.device | str = "cpu") -> DataLoader:
    """The shuffled loader of the transfer set ``pairs`` for ``config.transfer_target``.

    ``"kd"``: images only (:class:`ImageDataset`: the masks of ``pairs`` are never opened);
    ``"pseudo"``: images with ``teacher``'s :func:`pseudo_labels`; ``"labels"``: a
    :class:`~kdas_lite.data.PolypDataset` of the pairs (true masks). Batches of
    ``config.batch_size``, augmented like the training images.

    Raises:
        TrainingError: ``"pseudo"`` without a teacher.
    """
    from kdas_lite.data import PolypDataset

    target = config.transfer_target
    images = [image for image, _ in pairs]
    if target == "labels":
        dataset: Dataset = PolypDataset(pairs, size=config.image_size, augment=config.augment,
                                        mean=mean, std=std, cache="memory", progress=False)
    elif target == "pseudo":
        if teacher is None:
            raise TrainingError("transfer_target='pseudo' needs the teacher whose pseudo-labels "
                                "the student trains on: pass its checkpoint to distill()")
        dataset = ImageDataset(images, config.image_size, config.augment, mean, std)
        dataset.targets = pseudo_labels(teacher, dataset.pixels, device=device)
    else:
        dataset = ImageDataset(images, config.image_size, config.augment, mean, std)
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=True, num_workers=0,
                      generator=torch.Generator().manual_seed(config.seed))


def transfer_batches(loader: DataLoader, seed: int, epoch: int
                     ) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Endless ``(images, masks or None)`` batches of U for one epoch: the loader's shuffling
    and augmentation reseeded with :func:`transfer_seed`, restarted when U runs out."""
    loader.generator.manual_seed(transfer_seed(seed, epoch))
    seed_augmentation(loader.dataset, transfer_seed(seed, epoch))
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield (batch, None) if isinstance(batch, Tensor) else (batch[0], batch[1])
        if empty:
            raise TrainingError("the transfer set is empty")
