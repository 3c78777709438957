"""Safe decoding of uploaded images.

The byte size is capped before anything is read (``BodyLimit`` in the app); here the image's
*pixel* count is checked from its header with Pillow, which reads the header without decoding
the pixels, so a small file that claims to be 100,000 x 100,000 pixels (a decompression bomb) is
refused before OpenCV allocates anything. OpenCV then decodes it as every other image is.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgead.data.images import MAX_PIXELS, decode_with_channels
from edgead.errors import ImageDecodeError

ALLOWED_FORMATS = {"PNG", "JPEG", "BMP", "TIFF", "WEBP"}


def decode_upload(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """RGB uint8 image from uploaded bytes; ImageDecodeError naming the upload otherwise."""
    return decode_upload_with_channels(data, name, max_pixels)[0]


def decode_upload_with_channels(
    data: bytes, name: str, max_pixels: int = MAX_PIXELS
) -> tuple[np.ndarray, int]:
    """``decode_upload`` and the colour channels the file had (1 gray, 3 colour)."""
    if not data:
        raise ImageDecodeError(name, "empty upload")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:
                width, height = header.size
                fmt = header.format
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(
            name, f"image is over the limit of {max_pixels:,} pixels (Pillow: {exc})"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageDecodeError(name, f"not a readable image ({exc.__class__.__name__})") from exc
    if fmt not in ALLOWED_FORMATS:
        raise ImageDecodeError(
            name, f"image format {fmt} not accepted (use {', '.join(sorted(ALLOWED_FORMATS))})"
        )
    if width * height > max_pixels:
        raise ImageDecodeError(
            name, f"{width}x{height} pixels is over the limit of {max_pixels:,} pixels"
        )
    return decode_with_channels(data, name, max_pixels)
