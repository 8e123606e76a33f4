"""Reading images/masks in every format the polyp datasets use, and pairing files by stem."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from kdas_lite.data import DataWarning, pair_files, read_image, read_mask, read_pair
from kdas_lite.data.io import write_text_atomic
from kdas_lite.errors import DataError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (24, 40, 3), dtype=np.uint8)  # non-square: H=24, W=40
SHAPE = np.zeros((24, 40), bool)
SHAPE[5:15, 10:32] = True


def save(path, array, mode=None, **kwargs):
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path, **kwargs)
    return path


# ---------------------------------------------------------------- read_image


def test_read_image_png_keeps_pixels_and_hw_order(tmp_path):
    image = read_image(save(tmp_path / "a.png", RGB))
    assert image.dtype == np.uint8 and image.shape == (24, 40, 3)
    np.testing.assert_array_equal(image, RGB)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA"])
def test_read_image_converts_other_modes_to_rgb(tmp_path, mode):
    path = save(tmp_path / "a.png", RGB, mode)
    expected = np.asarray(Image.open(path).convert("RGB"))
    image = read_image(path)
    assert image.shape == (24, 40, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, expected)
    if mode in ("L", "LA"):
        assert (image[..., 0] == image[..., 2]).all()


def test_read_image_cmyk_jpeg(tmp_path):
    smooth = np.zeros((32, 32, 3), np.uint8)
    smooth[..., 0], smooth[..., 1], smooth[..., 2] = 200, np.arange(32)[:, None] * 4, 60
    path = save(tmp_path / "cmyk.jpg", smooth, "CMYK", quality=95)
    assert Image.open(path).mode == "CMYK"
    image = read_image(path)
    assert image.shape == (32, 32, 3)
    assert np.abs(image.astype(int) - smooth).mean() < 6


def test_read_image_16_bit_is_scaled(tmp_path):
    gray = (np.arange(24 * 40).reshape(24, 40) * 68).astype(np.uint16)
    path = save(tmp_path / "deep.png", gray)
    assert Image.open(path).mode.startswith("I")
    image = read_image(path)
    np.testing.assert_array_equal(image[..., 1], np.rint(gray / 257).astype(np.uint8))


def test_read_image_truncated_jpeg_names_the_file(tmp_path):
    path = save(tmp_path / "cut.jpg", RGB)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"cut\.jpg"):
        read_image(path)


def test_read_image_not_an_image_or_missing(tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("hello")
    with pytest.raises(DataError, match=r"notes\.jpg"):
        read_image(fake)
    with pytest.raises(DataError, match="not found"):
        read_image(tmp_path / "missing.png")


# ---------------------------------------------------------------- read_mask


@pytest.mark.parametrize(
    ("name", "array"),
    [
        ("0-255.png", SHAPE.astype(np.uint8) * 255),
        ("0-1.png", SHAPE.astype(np.uint8)),  # looks black in a viewer: must still work
        ("16bit-0-65535.png", SHAPE.astype(np.uint16) * 65535),
        ("16bit-0-1.png", SHAPE.astype(np.uint16)),
        ("rgb-white.png", np.repeat(SHAPE[..., None], 3, 2).astype(np.uint8) * 255),
        ("rgb-red.png", np.stack([SHAPE * 255, SHAPE * 0, SHAPE * 0], 2).astype(np.uint8)),
    ],
)
def test_read_mask_binarises_every_encoding(tmp_path, name, array):
    mask = read_mask(save(tmp_path / name, array))
    assert mask.dtype == bool and mask.shape == (24, 40)
    np.testing.assert_array_equal(mask, SHAPE)


def test_read_mask_palette_and_bilevel(tmp_path):
    palette = Image.fromarray(SHAPE.astype(np.uint8), mode="L").convert("P")
    palette.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)  # VOC style: index 1 is dark red
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), SHAPE)
    Image.fromarray(SHAPE).save(tmp_path / "b.png")  # mode "1"
    np.testing.assert_array_equal(read_mask(tmp_path / "b.png"), SHAPE)


def test_read_mask_jpeg_halo_thresholded_at_half_range(tmp_path):
    soft = SHAPE.astype(np.uint8) * 255
    soft[4, 10:32] = 100  # a grey halo row above the polyp: background (< 127.5)
    soft[15, 10:32] = 200  # a light row below it: foreground
    mask = read_mask(save(tmp_path / "m.png", soft))
    assert not mask[4].any() and mask[15, 10:32].all()
    jpeg = read_mask(save(tmp_path / "m.jpg", SHAPE.astype(np.uint8) * 255, quality=70))
    assert (jpeg != SHAPE).mean() < 0.02


def test_read_mask_empty_is_all_background(tmp_path):
    mask = read_mask(save(tmp_path / "empty.png", np.zeros((8, 8), np.uint8)))
    assert mask.shape == (8, 8) and not mask.any()


def test_read_pair_size_mismatch_names_both_files(tmp_path):
    image = save(tmp_path / "img.jpg", RGB)
    mask = save(tmp_path / "msk.png", np.zeros((24, 41), np.uint8))
    with pytest.raises(DataError, match=r"img\.jpg.*40x24.*msk\.png.*41x24"):
        read_pair(image, mask)


def test_read_pair_ok(tmp_path):
    image, mask = read_pair(save(tmp_path / "i.png", RGB),
                            save(tmp_path / "m.png", SHAPE.astype(np.uint8) * 255))
    assert image.shape == (24, 40, 3) and mask.shape == (24, 40)


# ---------------------------------------------------------------- pair_files


def make_folders(tmp_path, image_names, mask_names):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for name in image_names:
        (images / name).write_bytes(b"x")
    for name in mask_names:
        (masks / name).write_bytes(b"x")
    return images, masks


def test_pair_files_matches_stems_across_extensions(tmp_path):
    images, masks = make_folders(tmp_path, ["10.jpg", "2.PNG", "a.tif", "b.bmp"],
                                 ["10.png", "2.png", "a.png", "b.jpeg"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to ignore here: no warning allowed
        pairs = pair_files(images, masks)
    assert [(i.name, m.name) for i, m in pairs] == [
        ("10.jpg", "10.png"), ("2.PNG", "2.png"), ("a.tif", "a.png"), ("b.bmp", "b.jpeg")]


def test_pair_files_ignores_junk_with_a_counted_warning(tmp_path):
    images, masks = make_folders(tmp_path, ["1.jpg", "notes.txt", ".DS_Store", "Thumbs.db",
                                            "._1.jpg"], ["1.png"])
    (images / "sub").mkdir()
    with pytest.warns(DataWarning, match=r"ignored 5 .*\.DS_Store.*Thumbs\.db.*notes\.txt"):
        pairs = pair_files(images, masks)
    assert len(pairs) == 1


def test_pair_files_unmatched_lists_first_names_and_counts(tmp_path):
    images, masks = make_folders(tmp_path, [f"{i:02d}.jpg" for i in range(15)] + ["x.jpg"],
                                 ["x.png", "orphan.png"])
    with pytest.raises(DataError) as info:
        pair_files(images, masks)
    message = str(info.value)
    assert "15 image(s) without a mask" in message and "00.jpg" in message
    assert "(5 more)" in message and "14.jpg" not in message
    assert "1 mask(s) without an image: orphan.png" in message
    assert "same file name stem" in message


def test_pair_files_empty_or_missing_folder(tmp_path):
    images, masks = make_folders(tmp_path, [], ["a.png"])
    with pytest.raises(DataError, match=f"no images in {images}"):
        pair_files(images, masks)
    with pytest.raises(DataError, match="folder not found"):
        pair_files(tmp_path / "nope", masks)


def test_pair_files_duplicate_stem_is_ambiguous(tmp_path):
    images, masks = make_folders(tmp_path, ["a.jpg", "a.png"], ["a.png"])
    with pytest.raises(DataError, match=r"same name stem.*a\.jpg.*a\.png"):
        pair_files(images, masks)


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "history.json"
    write_text_atomic(path, "first\n")
    assert path.read_text(encoding="utf-8") == "first\n"
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "half \udc80 written")  # a lone surrogate cannot be encoded
    assert path.read_text(encoding="utf-8") == "first\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json"]
    write_text_atomic(path, "second\n")
    assert path.read_text(encoding="utf-8") == "second\n"
