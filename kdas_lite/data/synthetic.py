"""Synthetic colonoscopy-like images with polyp masks, for tests, notebooks and CPU labs.

What this module teaches: when the real data cannot be shipped (the polyp datasets are
research-only), a *procedural* dataset with the same file layout lets every code path run
end to end. It is **not** a substitute for real data: numbers measured on it say nothing about
real polyp segmentation, and every folder it writes carries a ``SYNTHETIC.txt`` marker
(:func:`is_synthetic`) so that tables and figures can say so.

How an image is drawn (vectorised numpy + a few OpenCV calls, ~15 ms per 256-px image):

1. **Mucosa**: a pink-red base colour, smooth low-frequency shading (upsampled noise), a dark
   lumen with circular folds around it, slight colour variation and fine texture.
2. **Vessels**: a few smooth random curves, blurred, darkening green/blue more than red.
3. **Polyps** (1, or 2 in ~20 % of images, tiny in ~2 %): an irregular ellipse (radius
   modulated by low harmonics) shaded as a lit dome, with a hue slightly different from the
   surrounding mucosa, its own texture, a soft edge and a faint shadow rim. The mask is the
   inside of the boundary.
4. **Specular highlights**: small saturated white blobs, mostly on polyps, some on mucosa.
5. **Optics**: vignetting, sometimes a circular black field of view (the mask is clipped to
   it), and a per-dataset *style* (colour cast, blur, gamma, noise, polyp size, contrast).

Polyps differ from mucosa by a mix of colour, texture and shading, never by one channel alone
(the shading of the mucosa varies more than the polyp's colour offset), so a model has to
learn local appearance; a small CNN reaches a good Dice in a few CPU minutes. Each test set
has its own style, so "seen" (Kvasir, CVC-ClinicDB) versus "unseen" (CVC-ColonDB, CVC-300,
ETIS) generalisation is a meaningful notion, as in the paper.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from kdas_lite.data.registry import DATASETS, MARKER, TEST_SETS, TRAIN_SET, is_synthetic
from kdas_lite.errors import DataError

__all__ = ["MARKER", "MAX_SYNTHETIC_SIZE", "STYLES", "SyntheticStyle", "is_synthetic",
           "make_synthetic_dataset", "render_polyp_image"]

"""Name of the file that marks a data root as synthetic."""
MAX_SYNTHETIC_SIZE = 2048
"""Largest side (px) of a synthetic image: bounds the generator's memory (a 40000 px image
alone would take 4.8 GB)."""
_GENERATOR_VERSION = 1  # bump when the images change, so stale folders are detected


@dataclass(frozen=True)
class SyntheticStyle:
    """Per-dataset appearance ("acquisition device") of synthetic images.

    Attributes:
        tint: RGB multipliers applied last (colour cast of the camera).
        blur: Gaussian blur sigma, in pixels of a 256-px image.
        gamma: exponent on [0, 1] intensities (> 1 darker).
        noise: standard deviation of additive sensor noise, on [0, 1] intensities.
        polyp_scale: multiplier of polyp radii.
        contrast: multiplier of the polyp-vs-mucosa colour difference.
        jpeg_quality: JPEG quality of the written images.
    """

    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    blur: float = 0.0
    gamma: float = 1.0
    noise: float = 0.01
    polyp_scale: float = 1.0
    contrast: float = 1.0
    jpeg_quality: int = 92


STYLES: dict[str, SyntheticStyle] = {
    "Kvasir": SyntheticStyle(),
    "CVC-ClinicDB": SyntheticStyle(tint=(1.0, 0.95, 0.96), blur=0.6, polyp_scale=0.9),
    "CVC-ColonDB": SyntheticStyle(tint=(0.92, 0.92, 1.02), blur=1.2, gamma=1.15,
                                  polyp_scale=0.85, contrast=0.9),
    "CVC-300": SyntheticStyle(tint=(1.05, 0.97, 0.86), blur=0.8, gamma=0.95, contrast=0.85),
    "ETIS-LaribPolypDB": SyntheticStyle(tint=(0.96, 0.98, 1.06), blur=1.5, noise=0.02,
                                        polyp_scale=0.6, contrast=0.8, jpeg_quality=80),
}
"""Style of each synthetic test set; the training set mixes the Kvasir and CVC-ClinicDB styles
in the real proportion 900 : 550. Other test-set names get the Kvasir style."""

# Polyp colour families: multipliers of the surrounding mucosa colour (before `contrast`).
_POLYP_TINTS = np.array([[1.10, 0.84, 0.88],   # redder
                         [1.04, 1.10, 1.08],   # paler
                         [1.08, 0.98, 0.80]],  # orange
                        dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell_px: float,
                  channels: int = 1) -> np.ndarray:
    """Noise of roughly unit amplitude varying over ``cell_px`` pixels, shape ``(H, W, C)``."""
    height, width = shape
    grid = (int(np.ceil(height / cell_px)) + 1, int(np.ceil(width / cell_px)) + 1, channels)
    small = rng.standard_normal(grid).astype(np.float32)
    big = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return big.reshape(height, width, channels)


def _mucosa(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Step 1 + 2: background tissue with lumen, folds, texture and vessels, (S, S, 3)."""
    base = np.array([0.80, 0.40, 0.35], np.float32) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    lx, ly = rng.uniform(-0.9, 0.9, 2)
    dist = np.sqrt((xx - lx) ** 2 + (yy - ly) ** 2)
    lumen = rng.uniform(0.3, 0.7) * np.exp(-(dist**2) / (2 * rng.uniform(0.15, 0.3) ** 2))
    folds = 0.07 * np.sin(dist * rng.uniform(9, 18) + rng.uniform(0, 2 * np.pi))
    shade = (1 + 0.22 * _smooth_noise(rng, (size, size), size / 2)[..., 0]) * (1 - lumen) + folds
    image = base * shade[..., None] * (1 + 0.06 * _smooth_noise(rng, (size, size), size / 3, 3))
    image *= 1 + 0.04 * _smooth_noise(rng, (size, size), 6)

    vessels = np.zeros((size, size), np.float32)
    for _ in range(rng.integers(3, 9)):  # smooth wandering curves: integrate a random heading
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.25, 80))
        steps = 0.02 * np.stack([np.cos(heading), np.sin(heading)], axis=1)
        points = ((steps.cumsum(axis=0) + rng.uniform(-1, 1, 2) + 1) / 2 * size)
        cv2.polylines(vessels, [points.astype(np.int32)], False, rng.uniform(0.4, 1.0),
                      thickness=1, lineType=cv2.LINE_AA)
    vessels = cv2.GaussianBlur(vessels, (0, 0), 0.8 * size / 256)
    image *= 1 - vessels[..., None] * np.array([0.15, 0.35, 0.3], np.float32)
    return image


def _add_polyp(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray,
               yy: np.ndarray, xx: np.ndarray, radius: float, style: SyntheticStyle,
               highlights: np.ndarray) -> None:
    """Step 3: paint one polyp of mean radius ``radius`` (a fraction of the half-width)."""
    size = image.shape[0]
    cx, cy = rng.uniform(-0.75, 0.75, 2)
    # Work in the polyp's bounding box (boundary ≤ 1.27 × radius, shadow rim up to 1.14 ×).
    reach = 1.5 * radius
    y0, x0 = (int(max((c - reach + 1) / 2 * (size - 1), 0)) for c in (cy, cx))
    y1, x1 = (int(min((c + reach + 1) / 2 * (size - 1) + 2, size)) for c in (cy, cx))
    box = (slice(y0, y1), slice(x0, x1))
    xs, ys = xx[box] - cx, yy[box] - cy
    angle = rng.uniform(0, np.pi)
    ra, rb = radius, radius * rng.uniform(0.6, 1.0)
    u = (xs * np.cos(angle) + ys * np.sin(angle)) / ra
    v = (-xs * np.sin(angle) + ys * np.cos(angle)) / rb
    rho, phi = np.sqrt(u**2 + v**2), np.arctan2(v, u)
    boundary = 1 + sum(rng.uniform(0, 0.09) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
                       for k in (2, 3, 4))
    d = rho / boundary  # < 1 inside the polyp
    height = np.sqrt(np.clip(1 - d**2, 0, 1))  # a dome
    light = rng.normal(0, 0.5, 2)
    shading = 0.8 + 0.35 * height - 0.2 * (u * light[0] + v * light[1]) * d
    tint = 1 + style.contrast * (_POLYP_TINTS[rng.integers(len(_POLYP_TINTS))] - 1)
    tint = tint * rng.uniform(0.97, 1.03, 3).astype(np.float32)
    texture = 1 + 0.07 * _smooth_noise(rng, d.shape, 10 * size / 256)[..., 0]
    region = image[box]
    polyp = region * tint * (shading * texture)[..., None]
    edge = 1.5 / (radius * size / 2)  # soft edge about 1.5 px wide
    alpha = np.clip((1 - d) / edge, 0, 1)[..., None]
    rim = np.clip(1 - np.abs(d - 1.07) / 0.07, 0, 1)[..., None]  # faint shadow just outside
    region[:] = region * (1 - 0.15 * rim) * (1 - alpha) + polyp * alpha
    mask[box] |= d < 1
    # wet polyp surface: a few highlights on the top of the dome
    top_y, top_x = np.nonzero(height > 0.5)
    for _ in range(rng.integers(1, 5) if len(top_y) else 0):
        k = rng.integers(len(top_y))
        _draw_highlight(rng, highlights, (int(top_x[k]) + x0, int(top_y[k]) + y0))


def _draw_highlight(rng: np.random.Generator, canvas: np.ndarray, center: tuple[int, int]) -> None:
    """Step 4: one small elongated saturated blob."""
    scale = canvas.shape[0] / 256
    axes = (max(1, int(rng.uniform(1, 5) * scale)), max(1, int(rng.uniform(0.5, 2) * scale)))
    cv2.ellipse(canvas, center, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)


def render_polyp_image(rng: np.random.Generator, size: int,
                       style: SyntheticStyle = STYLES["Kvasir"]) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic image and its mask.

    Returns:
        ``(image uint8 (size, size, 3), mask bool (size, size))``.
    """
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)) * 2 - 1
    image = _mucosa(rng, size, yy, xx)
    mask = np.zeros((size, size), bool)
    highlights = np.zeros((size, size), np.float32)
    roll = rng.random()
    count = 2 if roll < 0.2 else 1
    for _ in range(count):
        radius = rng.uniform(0.05, 0.09) if roll > 0.98 else rng.uniform(0.2, 0.65)
        radius = max(radius * style.polyp_scale, 3 / size)  # at least 1.5 px
        _add_polyp(rng, image, mask, yy, xx, radius, style, highlights)
    for _ in range(rng.integers(1, 6)):  # highlights on the mucosa too
        _draw_highlight(rng, highlights, tuple(int(c) for c in rng.integers(0, size, 2)))
    highlights = cv2.GaussianBlur(highlights, (0, 0), 0.7 * size / 256)
    image = image * (1 - highlights[..., None]) + 0.98 * highlights[..., None]

    image *= (1 - rng.uniform(0.25, 0.5) * (xx**2 + yy**2) / 2)[..., None]  # vignetting
    if rng.random() < 0.3:  # circular field of view with black corners
        fov = np.clip((rng.uniform(1.1, 1.35) - np.sqrt(xx**2 + yy**2)) * size / 4, 0, 1)
        image *= fov[..., None]
        mask &= fov > 0.5
    if style.blur > 0:
        image = cv2.GaussianBlur(image, (0, 0), style.blur * size / 256)
    image = np.clip(image * np.array(style.tint, np.float32), 0, 1) ** style.gamma
    image = image + rng.normal(0, style.noise, image.shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), mask


def _write_split(folder: Path, prefix: str, count: int, size: int, seed: int,
                 styles: list[SyntheticStyle], weights: list[float]) -> None:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir(parents=True)
    stream = zlib.crc32(prefix.encode())  # per-split stream: independent of the other splits
    for index in range(count):
        rng = np.random.default_rng([seed, stream, index])
        style = styles[rng.choice(len(styles), p=weights)]
        image, mask = render_polyp_image(rng, size, style)
        name = f"{prefix}_{index:04d}"
        Image.fromarray(image).save(folder / "images" / f"{name}.jpg",
                                    quality=style.jpeg_quality)
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / f"{name}.png")


def _marker_params(root: Path) -> dict | None:
    """The parameters recorded in ``root/SYNTHETIC.txt`` (None when unreadable)."""
    for line in (root / MARKER).read_text().splitlines():
        if line.startswith("parameters: "):
            try:
                return json.loads(line.removeprefix("parameters: "))
            except ValueError:
                return None
    return None


def make_synthetic_dataset(root: str | os.PathLike[str], n_train: int = 200, n_test: int = 40,
                           size: int = 256, seed: int = 0,
                           test_sets: tuple[str, ...] = TEST_SETS) -> Path:
    """Write a SYNTHETIC polyp dataset in the PraNet layout.

    ``root/TrainDataset/{images,masks}`` gets ``n_train`` pairs and every
    ``root/TestDataset/<name>/{images,masks}`` for ``name`` in ``test_sets`` gets ``n_test``
    pairs (JPEG images, PNG masks 0/255), plus ``root/SYNTHETIC.txt`` with the parameters.
    The result is a pure function of the arguments (image ``i`` of a split does not depend on
    the counts). Calling it again with the same arguments returns at once; the folder is
    written to a temporary sibling and renamed, so it is never half-written.

    Args:
        root: target folder; must not exist, be empty, or be a synthetic set made with the
            same arguments.
        n_train: training pairs (≥ 1).
        n_test: pairs per test set (≥ 0; 0 writes no TestDataset).
        size: side of the square images (32 to :data:`MAX_SYNTHETIC_SIZE`).
        seed: random seed.
        test_sets: names of the test folders, styled by :data:`STYLES`.

    Returns:
        ``root``.

    Raises:
        DataError: ``root`` holds something else (it is never overwritten).
    """
    if n_train < 1 or n_test < 0 or size < 32:
        raise ValueError(f"need n_train >= 1, n_test >= 0, size >= 32; got {n_train}, "
                         f"{n_test}, {size}")
    if size > MAX_SYNTHETIC_SIZE:
        raise ValueError(f"synthetic image size {size} px (--size) is above the limit of "
                         f"{MAX_SYNTHETIC_SIZE} px (the models train at 352 px or less)")
    root = Path(root).expanduser()
    params = {"n_train": n_train, "n_test": n_test, "size": size, "seed": seed,
              "test_sets": list(test_sets), "generator_version": _GENERATOR_VERSION}
    if is_synthetic(root) and _marker_params(root) == params:
        return root
    if root.exists() and any(root.iterdir()):
        raise DataError(
            f"{root} already exists and is not empty"
            + (" (a synthetic set made with other parameters)" if is_synthetic(root) else "")
            + ". Choose another folder or delete it first; it is never overwritten."
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
    try:
        seen = [STYLES["Kvasir"], STYLES["CVC-ClinicDB"]]
        _write_split(tmp / DATASETS[TRAIN_SET].folder, "train", n_train, size, seed, seen,
                     [900 / 1450, 550 / 1450])
        for name in test_sets if n_test else ():
            folder = tmp / "TestDataset" / name
            _write_split(folder, name, n_test, size, seed, [STYLES.get(name, STYLES["Kvasir"])],
                         [1.0])
        (tmp / MARKER).write_text(
            "SYNTHETIC polyp dataset: procedurally drawn images, NOT real endoscopy.\n"
            "Written by kdas_lite.data.make_synthetic_dataset for tests, notebooks and labs.\n"
            "Scores measured on it say nothing about real polyp segmentation.\n"
            f"parameters: {json.dumps(params)}\n"
        )
        if root.exists():
            root.rmdir()  # empty (checked above)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
