"""Joint image + mask augmentation with albumentations.

What this module teaches: every *geometric* augmentation (flip, rotation, scale, shift) must
move the image and its mask together, with a **nearest-neighbour** resampling for the mask so
that it stays binary; *photometric* augmentation (brightness, contrast, hue) changes the image
only. albumentations applies one random draw to both when called as
``transform(image=image, mask=mask)``. The mask resize uses OpenCV's ``INTER_NEAREST_EXACT``,
which samples pixel *centres* like the bilinear image resize does; plain ``INTER_NEAREST``
samples pixel corners and shifts the mask by up to one pixel against the image.

Training (:func:`build_train_transform`), in order:

1. resize to ``size × size`` (first: every later step then costs the same whatever the source
   resolution, and a pre-resized cache gives bit-identical results, see ``PolypDataset``);
2. horizontal flip, vertical flip, random 90° rotation (p = 0.5 each: colonoscopy has no
   "up");
3. affine: scale 0.75–1.25, shift ±10 %, rotation ±15° (p = 0.5), black border;
4. colour jitter: brightness/contrast ±20 %, saturation ±10 %, hue ±0.02 (p = 0.5);
5. normalise ``(x/255 − mean)/std`` and convert to tensors.

Evaluation (:func:`build_eval_transform`): steps 1 and 5 only.

Both return a :class:`SharedRandomCompose` (an ``albumentations.Compose``; seed it with
``set_random_seed``) called as ``out = t(image=uint8 (H, W, 3),
mask=uint8 (H, W) in {0, 1})``; ``out["image"]`` is a float32 tensor ``(3, size, size)`` and
``out["mask"]`` a uint8 tensor ``(size, size)`` still in {0, 1}.

With ``soft_masks=True`` (the public script's soft masks, see ``TrainConfig.soft_masks``) the
mask is given as uint8 ``0/255`` and every mask resampling (resize, affine) is **bilinear**
instead of nearest, so ``out["mask"]`` holds 0..255 with fractional values along the edges
(divide by 255); flips and 90° rotations stay exact.

The multi-scale training of Polyp-PVT (batches rescaled to 0.75/1/1.25 × size) is done on the
batch tensor by the training loop, not here. The public reference code never augmented at all
(its flag compared the bool ``True`` to the string ``'True'``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
from albumentations.pytorch import ToTensorV2

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "SharedRandomCompose", "build_eval_transform",
           "build_resize", "build_train_transform"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel mean of ImageNet RGB in [0, 1] (statistics of the PVTv2 encoders)."""
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel standard deviation of ImageNet RGB in [0, 1]."""


class SharedRandomCompose(A.Compose):
    """``A.Compose`` whose transforms draw from one shared random stream.

    In albumentations 2.0, ``Compose.set_random_seed(seed)`` (also what ``Compose(seed=...)``
    calls) gives every child transform its *own* generator seeded with the *same* seed, so the
    children's draws coincide: ``HorizontalFlip`` and ``VerticalFlip`` (both p = 0.5) then fire
    together or not at all, and a horizontal flip alone never happens. Here all children share
    the Compose's generators, so successive draws are independent, and a seed still makes the
    whole sequence reproducible.
    """

    def set_random_seed(self, seed: int | None) -> None:
        super().set_random_seed(seed)
        self.set_random_state(np.random.default_rng(seed), random.Random(seed))


def build_resize(size: int, soft_masks: bool = False) -> A.Resize:
    """Bilinear resize of the image and (centre-aligned) nearest resize of the mask to
    ``size²``; with ``soft_masks`` the mask is resized bilinearly too."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    return A.Resize(size, size, interpolation=cv2.INTER_LINEAR,
                    mask_interpolation=cv2.INTER_LINEAR if soft_masks else cv2.INTER_NEAREST_EXACT)


def _finish(mean: Sequence[float], std: Sequence[float]) -> list[A.BasicTransform]:
    return [A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0), ToTensorV2()]


def build_train_transform(size: int, mean: Sequence[float] = IMAGENET_MEAN,
                          std: Sequence[float] = IMAGENET_STD,
                          soft_masks: bool = False) -> SharedRandomCompose:
    """The training augmentation described in the module docstring (steps 1–5)."""
    return SharedRandomCompose([
        build_resize(size, soft_masks),
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=0.5),
        A.Affine(scale=(0.75, 1.25), translate_percent=(-0.1, 0.1), rotate=(-15, 15),
                 interpolation=cv2.INTER_LINEAR,
                 mask_interpolation=cv2.INTER_LINEAR if soft_masks else cv2.INTER_NEAREST,
                 border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=0.5),
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.1, hue=0.02, p=0.5),
        *_finish(mean, std),
    ])


def build_eval_transform(size: int, mean: Sequence[float] = IMAGENET_MEAN,
                         std: Sequence[float] = IMAGENET_STD,
                         soft_masks: bool = False) -> SharedRandomCompose:
    """Resize to ``size × size``, normalise, convert to tensors (no randomness)."""
    return SharedRandomCompose([build_resize(size, soft_masks), *_finish(mean, std)])
