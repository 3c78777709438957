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


def bomb_png(path, width: int = 30000, height: int = 30000) -> None:
    """A small PNG declaring width x height gray pixels, written row by row (never in memory)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        z = zlib.compressobj(9)
        row = b"\x00" * (width + 1)
        data = b"".join(z.compress(row) for _ in range(height)) + z.flush()
        f.write(chunk(b"IDAT", data))
        f.write(chunk(b"IEND", b""))


def test_a_decompression_bomb_is_refused_from_its_header_with_little_memory(tmp_path):
    """The 30000x30000 PNG (900 MB decoded) is refused before decoding: the whole process
    that reads it stays under 300 MB at its peak."""
    import subprocess
    import sys

    bomb = tmp_path / "bomb.png"
    bomb_png(bomb)
    assert bomb.stat().st_size < 3_000_000
    # the peak from /proc (VmHWM, kB): getrusage's ru_maxrss survives exec on Linux and would
    # report the parent's (pytest's) peak at fork
    code = (
        "import re, sys\n"
        "from edgead.data.images import read_image\n"
        "from edgead.errors import ImageDecodeError\n"
        "try:\n"
        f"    read_image({str(bomb)!r})\n"
        "except ImageDecodeError as exc:\n"
        "    print(exc)\n"
        "status = open('/proc/self/status').read()\n"
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', status).group(1)) // 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    # Pillow's own bomb guard reports the count (900,000,000), which is refused as it stands
    assert "900,000,000 pixels is over the limit of 64,000,000 pixels" in out[0]
    assert "bomb.png" in out[0]
    assert int(out[-1]) < 300, out  # MB


def test_the_pixel_limit_is_a_setting():
    import cv2
    import numpy as np

    from edgead.data import images

    _, png = cv2.imencode(".png", np.zeros((100, 100), np.uint8))
    previous = images.MAX_PIXELS
    try:
        images.set_max_pixels(5000)
        with pytest.raises(ImageDecodeError, match="100x100 pixels is over the limit of 5,000"):
            images.decode_image(png.tobytes(), "small.png")
    finally:
        images.set_max_pixels(previous)
    assert images.decode_image(png.tobytes()).shape == (100, 100, 3)
