"""Build the data pack of the GPU check: the real training set at 352 px + two test sets, ≤ 50 MiB.

Usage::

    .venv/bin/python benchmarks/build_gpu_pack.py                  # → build/gpu_pack.tar
    .venv/bin/python benchmarks/build_gpu_pack.py --data /path/to/data --quality 80

The pack is one uncompressed tar (its files are JPEG/PNG already) holding, under
``gpu_pack/``, the PraNet layout that :func:`kdas_lite.data.find_layout` reads:

- ``TrainDataset/{images,masks}``: every training pair (1450 for the PraNet set) resized to
  ``--size``² as training resizes them (image bilinear, mask nearest) and re-encoded: image
  JPEG at ``--quality``, mask PNG 0/255;
- ``TestDataset/Kvasir`` and ``TestDataset/CVC-ClinicDB``: copied byte for byte (the
  protocol scores at the masks' original resolution);
- ``PACK.json``: what was packed, from where, how.

The pack must stay under ``--max-mib`` (50 by default): the builder fails (exit 2, nothing
written) when it would not, and says which quality to try. It is built from the data's files
and never writes next to them. The GPU check (``benchmarks/gpu_check.sh``) reads it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from kdas_lite.data import find_shared_data, image_mask_dirs, pair_files, read_pair
from kdas_lite.data.transforms import build_resize

TEST_SETS_PACKED: tuple[str, ...] = ("Kvasir", "CVC-ClinicDB")
MAX_MIB = 50.0
PACK_DIR = "gpu_pack"


class PackTooLarge(ValueError):
    """The pack would exceed its size bound."""


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # reproducible
    tar.addfile(info, io.BytesIO(data))


def _encoded_pair(image_path: Path, mask_path: Path, size: int, quality: int
                  ) -> tuple[bytes, bytes]:
    """One training pair resized to ``size²`` as training does: JPEG image, PNG mask 0/255."""
    image, mask = read_pair(image_path, mask_path)
    small = build_resize(size)(image=image, mask=mask.astype(np.uint8))
    jpeg, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(small["image"]).save(jpeg, format="JPEG", quality=quality)
    Image.fromarray(small["mask"] * np.uint8(255)).save(png, format="PNG", optimize=True)
    return jpeg.getvalue(), png.getvalue()


def build_pack(data_root: str | os.PathLike[str], out: str | os.PathLike[str], size: int = 352,
               quality: int = 85, max_mib: float = MAX_MIB, limit: int | None = None,
               test_sets: Sequence[str] = TEST_SETS_PACKED) -> dict:
    """Write the pack to ``out`` (a tar, replaced atomically) and return its ``PACK.json``.

    Args:
        data_root: folder with ``TrainDataset/`` and ``TestDataset/<set>/`` (PraNet layout).
        out: the tar file to write.
        size: side of the re-encoded training pairs.
        quality: JPEG quality of the training images.
        max_mib: size bound of the tar, in MiB.
        limit: pack only the first ``limit`` training pairs (the dry run's tiny pack).
        test_sets: test sets copied as they are.

    Raises:
        PackTooLarge: the tar would exceed ``max_mib`` (nothing is written to ``out``).
        DataError: a set is missing or a file unreadable (the message names it).
    """
    root, out = Path(data_root), Path(out)
    train = pair_files(*image_mask_dirs(root / "TrainDataset"))[:limit]
    tests = {name: pair_files(*image_mask_dirs(root / "TestDataset" / name))
             for name in test_sets}
    limit_bytes = int(max_mib * 2**20)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w") as tar:
            train_bytes = 0
            for image_path, mask_path in train:
                jpeg, png = _encoded_pair(image_path, mask_path, size, quality)
                train_bytes += len(jpeg) + len(png)
                _add_bytes(tar, f"{PACK_DIR}/TrainDataset/images/{image_path.stem}.jpg", jpeg)
                _add_bytes(tar, f"{PACK_DIR}/TrainDataset/masks/{mask_path.stem}.png", png)
                if train_bytes > limit_bytes:
                    break
            for name, pairs in tests.items():
                for pair in pairs:
                    for path, sub in zip(pair, ("images", "masks"), strict=True):
                        _add_bytes(tar, f"{PACK_DIR}/TestDataset/{name}/{sub}/{path.name}",
                                   path.read_bytes())
            manifest = {
                "what": "GPU-check data pack (benchmarks/build_gpu_pack.py); real polyp data, "
                        "not for redistribution beyond the datasets' own licences",
                "source": str(root), "train_pairs": len(train), "train_size_px": size,
                "train_jpeg_quality": quality,
                "test_sets": {name: len(pairs) for name, pairs in tests.items()},
                "max_mib": max_mib,
            }
            _add_bytes(tar, f"{PACK_DIR}/PACK.json", json.dumps(manifest, indent=2).encode())
        total = Path(tmp).stat().st_size
        if total > limit_bytes:
            raise PackTooLarge(
                f"the pack would be {total / 2**20:.1f} MiB, over its {max_mib:g} MiB bound: "
                f"lower --quality (now {quality}) or --size (now {size})")
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    manifest["mib"] = round(total / 2**20, 2)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="data root (default: ../shared/data or $KDAS_DATA)")
    parser.add_argument("--out", type=Path, default=Path("build/gpu_pack.tar"))
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--quality", type=int, default=85)
    parser.add_argument("--max-mib", type=float, default=MAX_MIB)
    args = parser.parse_args(argv)
    root = args.data or find_shared_data()
    if root is None:
        print("build_gpu_pack: error: no data found: pass --data or set KDAS_DATA",
              file=sys.stderr)
        return 2
    try:
        manifest = build_pack(root, args.out, args.size, args.quality, args.max_mib)
    except PackTooLarge as exc:
        print(f"build_gpu_pack: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {manifest['mib']} MiB, {manifest['train_pairs']} training pairs "
          f"at {args.size} px (JPEG q{args.quality}), test sets {manifest['test_sets']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
