"""Image decoding with OpenCV: every image comes out as 8-bit RGB, HxWx3, C-contiguous.

Grayscale is replicated to three channels, alpha is dropped, 16-bit images are scaled to
8 bits. Anything that cannot be decoded raises :class:`ImageDecodeError` naming the file.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from edgead.errors import ImageDecodeError

# OpenCV's decoders print their own warnings for a broken file ("[ WARN:0@...] ... chunk
# data is too large"); edgead reports every file it cannot read, with its name, instead
if hasattr(cv2.utils, "logging"):
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)
else:  # OpenCV builds before the utils.logging binding: the same levels, by number
    cv2.setLogLevel(1)  # LOG_LEVEL_FATAL

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MAX_PIXELS = 64_000_000  # 8K x 8K: larger than any inspection camera frame (run, serve)


def source_channels(image: np.ndarray) -> int:
    """Colour channels of a decoded OpenCV image as stored in its file (1 gray, 3 colour;
    alpha not counted)."""
    return 1 if image.ndim == 2 or image.shape[2] == 1 else 3


def to_rgb8(image: np.ndarray, source: str = "<array>") -> np.ndarray:
    """Convert a decoded OpenCV image (BGR/BGRA/gray, 8 or 16 bit) to RGB uint8."""
    if image is None or image.size == 0:
        raise ImageDecodeError(source, "empty image")
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageDecodeError(source, f"unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim != 3:
        raise ImageDecodeError(source, f"unsupported image shape {image.shape}")
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ImageDecodeError(source, f"unsupported number of channels: {channels}")


def set_max_pixels(limit: int) -> int:
    """The process's pixel limit for every decode (``--max-pixels``); returns it."""
    global MAX_PIXELS
    if limit < 1:
        raise ValueError(f"max pixels {limit}: expected 1 or more")
    MAX_PIXELS = int(limit)
    return MAX_PIXELS


def image_header(data: bytes) -> tuple[int, int, str] | None:
    """(width, height, format) from an encoded image's header, without decoding a pixel
    (Pillow reads the header lazily); None when Pillow does not know the format."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Pillow's own bomb limit is not ours: it only reads the header here
            with Image.open(io.BytesIO(data)) as header:
                return header.size[0], header.size[1], header.format or ""
    except Image.DecompressionBombError as exc:
        match = re.search(r"(\d+) pixels", str(exc))
        n = int(match.group(1)) if match else 2**62
        return n, 1, "unknown"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def _too_large(source: str, width: int, height: int, max_pixels: int) -> ImageDecodeError:
    size = f"{width}x{height} pixels" if height > 1 else f"{width:,} pixels"
    return ImageDecodeError(source, f"{size} is over the limit of {max_pixels:,} pixels")


def decode_with_channels(
    data: bytes, source: str = "<bytes>", max_pixels: int | None = None
) -> tuple[np.ndarray, int]:
    """Decode an encoded image to RGB uint8, with the colour channels its file had. Images over
    ``max_pixels`` (default ``MAX_PIXELS``, ``--max-pixels``) are refused from their header,
    before a pixel is decoded (a 2.7 MB PNG can declare 30000x30000: 900 MB decoded), and
    again from the decoded size for formats Pillow cannot read the header of."""
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    if not data:
        raise ImageDecodeError(source, "empty file")
    header = image_header(data)
    if header is not None and header[0] * header[1] > max_pixels:
        raise _too_large(source, header[0], header[1], max_pixels)
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageDecodeError(source, "not a readable image (corrupt or unsupported format)")
    height, width = image.shape[:2]
    if width * height > max_pixels:
        raise _too_large(source, width, height, max_pixels)
    return to_rgb8(image, source), source_channels(image)


def decode_image(data: bytes, source: str = "<bytes>", max_pixels: int | None = None) -> np.ndarray:
    """Decode an encoded image (PNG, JPEG, ...) from memory to RGB uint8."""
    return decode_with_channels(data, source, max_pixels)[0]


def read_with_channels(path: str | Path, max_pixels: int | None = None) -> tuple[np.ndarray, int]:
    """Read an image file to RGB uint8 and the channels of the file; errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(path, f"cannot read file ({exc.strerror or exc})") from exc
    return decode_with_channels(data, str(path), max_pixels)


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file to RGB uint8; raises ImageDecodeError naming the file."""
    return read_with_channels(path, max_pixels)[0]


def read_mask(path: str | Path) -> np.ndarray:
    """Read a ground-truth mask: any non-zero pixel is anomalous. Returns uint8 0/1, HxW."""
    path = Path(path)
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ImageDecodeError(path, "not a readable mask image")
    return (mask > 0).astype(np.uint8)


def file_digest(path: str | Path) -> str:
    """The first 16 hex digits of a file's sha256: which image files a model was fitted on
    (the same file, byte for byte; a re-encoded copy is another image)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()[:16]


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def iter_images(
    paths: Iterable[str | Path],
) -> Iterator[tuple[Path, np.ndarray | None, ImageDecodeError | None]]:
    """Yield ``(path, image, None)`` or ``(path, None, error)``: batch commands report and go on."""
    for path in paths:
        try:
            yield Path(path), read_image(path), None
        except ImageDecodeError as exc:
            yield Path(path), None, exc
