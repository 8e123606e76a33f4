"""Reading polyp images and masks from disk, and pairing them by file name.

What this module teaches: real datasets are messy. The public polyp sets mix JPEG, PNG, TIFF
and BMP; masks come as 0/255, as 0/1 ("label" PNGs that look black in a viewer), as 16-bit
or palette PNGs, as lossy JPEGs with grey noise at the border; folders contain ``Thumbs.db``
and ``.DS_Store``. Every reader here either returns exactly what the model expects or raises
a :class:`~kdas_lite.errors.DataError` that names the file and the fix; nothing is skipped
silently (ignored files are counted in a :class:`DataWarning`).

- :func:`read_image` → ``uint8 (H, W, 3)`` RGB.
- :func:`read_mask` → ``bool (H, W)``, binarised by the rule documented there.
- :func:`read_pair` → both, checked to have the same size.
- :func:`pair_files` → sorted ``(image, mask)`` paths matched by file-name stem.
- :func:`list_folder` → the regular files of a folder; FIFOs and other special files, which
  would block a reader, are skipped and named.

Pixels are read as stored: EXIF orientation tags are *not* applied, so an image and its mask
(which rarely carries the tag) keep the same pixel grid.
"""

from __future__ import annotations

import hashlib
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from kdas_lite.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "DataWarning", "file_sha256", "list_folder", "pair_files",
           "read_image", "read_mask", "read_pair", "write_text_atomic"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
"""File suffixes (lower case) treated as images; everything else in a folder is ignored."""

_SHOW = 10  # how many file names an error or warning lists before summarising with a count


class DataWarning(UserWarning):
    """Something in a dataset folder was ignored (e.g. ``Thumbs.db``); the data still loads."""


def _open(path: Path) -> Image.Image:
    """Open and fully decode ``path`` with PIL, turning every failure into a DataError."""
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later in a worker
    except FileNotFoundError as exc:
        raise DataError(f"image file not found: {path}") from exc
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError) as exc:
        raise DataError(
            f"cannot decode {path} ({exc}). The file is truncated, corrupt or not an image: "
            "re-download or re-export it, or delete it together with its partner file."
        ) from exc
    if image.mode == "F":
        raise DataError(f"{path} is a floating-point image; save it as 8- or 16-bit PNG instead.")
    return image


def _is_16_bit(img: Image.Image) -> bool:
    """PIL opens 16-bit grayscale files as mode "I;16", "I;16B" or "I" (a 32-bit container)."""
    return img.mode.startswith("I")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as RGB.

    Grayscale, palette, RGBA (alpha dropped), CMYK JPEG and 16-bit files are converted;
    16-bit values are scaled by 255/65535.

    Returns:
        ``uint8`` array of shape ``(H, W, 3)``.

    Raises:
        DataError: missing, truncated or undecodable file (the message names it).
    """
    path = Path(path)
    img = _open(path)
    if _is_16_bit(img):
        gray = np.clip(np.rint(np.asarray(img) / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a segmentation mask as a boolean foreground map.

    The binarisation rule (the same for every format):

    1. Colour masks (RGB, RGBA, palette, CMYK) are reduced to one channel by the **maximum
       over channels**, so white-on-black and coloured (e.g. red) masks both work.
    2. A mask whose largest value is exactly **1** is a 0/1 "label" mask: 1 is foreground.
    3. Otherwise a pixel is foreground when it exceeds **half of its dtype's range**:
       > 127.5 for 8-bit files (0/255 masks, and the grey halo of JPEG masks), > 32767.5 for
       16-bit files (0/65535).

    Returns:
        ``bool`` array of shape ``(H, W)``.

    Raises:
        DataError: missing, truncated or undecodable file (the message names it).
    """
    path = Path(path)
    img = _open(path)
    if img.mode == "1":  # bilevel: already binary (but PIL's bool array stores True as 255,
        return np.asarray(img.convert("L")) > 127  # which byte-level metric code misreads)
    if _is_16_bit(img):
        values, full_scale = np.asarray(img), 65535
    elif img.mode in ("L", "LA"):
        values, full_scale = np.asarray(img.convert("L")), 255
    else:
        values, full_scale = np.asarray(img.convert("RGB")).max(axis=2), 255
    if values.max() == 1:
        return values == 1
    return values > full_scale / 2


def read_pair(image_path: str | os.PathLike[str],
              mask_path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read an image and its mask and check that they have the same height and width.

    Returns:
        ``(image uint8 (H, W, 3), mask bool (H, W))``.

    Raises:
        DataError: either file is unreadable, or the sizes differ (both files and sizes named).
    """
    image, mask = read_image(image_path), read_mask(mask_path)
    if image.shape[:2] != mask.shape:
        raise DataError(
            f"image {image_path} is {image.shape[1]}x{image.shape[0]} (WxH) but its mask "
            f"{mask_path} is {mask.shape[1]}x{mask.shape[0]}. They must have the same size: "
            "re-export the mask at the image's resolution or fix the pairing."
        )
    return image, mask


def _summary(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return shown + (f", ... ({len(names) - _SHOW} more)" if len(names) > _SHOW else "")


def list_folder(folder: str | os.PathLike[str]) -> tuple[list[Path], list[str]]:
    """The regular files of ``folder`` (links to regular files included), sorted, and the
    names of everything else in it: sub-folders as ``name/``, and FIFOs, sockets, devices
    and broken links as ``name (not a regular file)``.

    The dataset readers list folders through this function: opening a FIFO blocks until
    another process writes to it, so a ``x.png`` FIFO among the images would hang a command
    forever; it is skipped and named instead.

    Raises:
        DataError: ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"folder not found: {folder}")
    files: list[Path] = []
    others: list[str] = []
    for path in sorted(folder.iterdir()):
        try:
            mode = path.stat().st_mode  # follows links: a link's target decides
        except OSError:
            mode = 0  # a broken link, or an entry that vanished
        if stat.S_ISREG(mode):
            files.append(path)
        else:
            others.append(path.name + ("/" if stat.S_ISDIR(mode) else " (not a regular file)"))
    return files, others


def _list_images(folder: Path) -> dict[str, Path]:
    """Map stem → path for every image file in ``folder``; warn about everything else."""
    files, ignored = list_folder(folder)
    images: dict[str, Path] = {}
    for path in files:
        # Hidden files include macOS "._name.jpg" resource forks, which are not images.
        if path.suffix.lower() not in IMAGE_EXTENSIONS or path.name.startswith("."):
            ignored.append(path.name)
            continue
        if path.stem in images:
            raise DataError(
                f"two images with the same name stem in {folder}: {images[path.stem].name} and "
                f"{path.name}. Keep one of them so that each mask has exactly one image."
            )
        images[path.stem] = path
    if ignored:
        ignored.sort(key=lambda name: (not name.endswith(" (not a regular file)"), name))
        warnings.warn(
            f"ignored {len(ignored)} non-image entr{'y' if len(ignored) == 1 else 'ies'} in "
            f"{folder}: {_summary(ignored)}",
            DataWarning,
            stacklevel=3,
        )
    if not images:
        raise DataError(
            f"no images in {folder} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}). "
            "Check the path or unpack the dataset there."
        )
    return images


def pair_files(image_dir: str | os.PathLike[str],
               mask_dir: str | os.PathLike[str]) -> list[tuple[Path, Path]]:
    """Match images and masks by file-name stem (``12.jpg`` ↔ ``12.png``).

    Extensions may differ between the two folders (``.jpg .jpeg .png .tif .tiff .bmp``, any
    case). Other files (``.txt``, ``.DS_Store``, ``Thumbs.db``, sub-folders, and anything that
    is not a regular file, such as a FIFO: :func:`list_folder`) are ignored with a
    :class:`DataWarning` that counts and names them.

    Returns:
        ``(image_path, mask_path)`` pairs sorted by stem.

    Raises:
        DataError: a folder is missing or holds no image; some files have no partner (the
            first unmatched names and their counts are listed); two files share a stem.
    """
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    images, masks = _list_images(image_dir), _list_images(mask_dir)
    no_mask = sorted(images.keys() - masks.keys())
    no_image = sorted(masks.keys() - images.keys())
    if no_mask or no_image:
        lines = [f"images and masks do not match ({image_dir} vs {mask_dir}):"]
        if no_mask:
            lines.append(f"  {len(no_mask)} image(s) without a mask: "
                         f"{_summary([images[s].name for s in no_mask])}")
        if no_image:
            lines.append(f"  {len(no_image)} mask(s) without an image: "
                         f"{_summary([masks[s].name for s in no_image])}")
        lines.append("Each image needs a mask with the same file name stem (extensions may "
                     "differ): add the missing files or remove the extra ones.")
        raise DataError("\n".join(lines))
    return [(images[stem], masks[stem]) for stem in sorted(images)]


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a small text file so that a reader never sees half of it: a hidden temporary file
    beside ``path`` (named by this process, so two processes rewriting one file do not share
    it), then a rename; the temporary file is removed when writing fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
