from pathlib import Path

import cv2
import numpy as np
import pytest

from edgead.data.images import decode_image, iter_images, read_image, read_mask
from edgead.errors import ImageDecodeError


def write(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


def test_colour_png_comes_back_rgb(tmp_path):
    bgr = np.zeros((8, 9, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's order
    rgb = read_image(write(tmp_path / "c.png", bgr))
    assert rgb.shape == (8, 9, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 2] == 200).all() and (rgb[..., 0] == 0).all()


def test_grayscale_is_replicated(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    rgb = read_image(write(tmp_path / "g.png", gray))
    assert rgb.shape == (8, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], gray)


def test_rgba_drops_alpha(tmp_path):
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 1] = 77
    bgra[..., 3] = 10
    rgb = read_image(write(tmp_path / "a.png", bgra))
    assert rgb.shape == (4, 4, 3) and (rgb[..., 1] == 77).all()


def test_16_bit_is_scaled_to_8_bit(tmp_path):
    img = np.full((4, 4), 65535, np.uint16)
    img[0, 0] = 0
    rgb = read_image(write(tmp_path / "d.png", img))
    assert rgb.dtype == np.uint8 and rgb[1, 1, 0] == 255 and rgb[0, 0, 0] == 0


def test_corrupt_file_error_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(ImageDecodeError) as err:
        read_image(bad)
    assert str(bad) in str(err.value) and "corrupt" in str(err.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ImageDecodeError, match="cannot read file"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty file"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageDecodeError, match="<upload>"):
        decode_image(b"garbage", "<upload>")


def test_iter_images_reports_and_goes_on(tmp_path):
    good = write(tmp_path / "1.png", np.zeros((4, 4, 3), np.uint8))
    bad = tmp_path / "2.png"
    bad.write_bytes(b"junk")
    good2 = write(tmp_path / "3.png", np.ones((4, 4, 3), np.uint8))
    results = list(iter_images([good, bad, good2]))
    assert [r[0] for r in results] == [good, bad, good2]
    assert results[0][1] is not None and results[2][1] is not None
    assert results[1][1] is None and isinstance(results[1][2], ImageDecodeError)


def test_mask_is_binarised(tmp_path):
    m = np.zeros((4, 4), np.uint8)
    m[1, 1] = 3
    m[2, 2] = 255
    mask = read_mask(write(tmp_path / "m.png", m))
    assert mask.sum() == 2 and mask.max() == 1
