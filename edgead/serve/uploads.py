"""Safe decoding of uploaded images.

The byte size is capped before anything is read (``Guard`` in the app); the *pixel* count is
checked from the image's header before any pixel is decoded (``edgead.data.images``, as for
every image edgead reads), so a small upload that claims 100,000 x 100,000 pixels (a
decompression bomb) is refused before OpenCV allocates anything. Uploads are also held to the
formats a camera or a client sends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgead.data.images import decode_with_channels, image_header
from edgead.errors import ImageDecodeError

if TYPE_CHECKING:
    from edgead.serve.stream import Stream

ALLOWED_FORMATS = {"PNG", "JPEG", "BMP", "TIFF", "WEBP"}


def decode_upload(data: bytes, name: str, max_pixels: int | None = None) -> np.ndarray:
    """RGB uint8 image from uploaded bytes; ImageDecodeError naming the upload otherwise."""
    return decode_upload_with_channels(data, name, max_pixels)[0]


def decode_upload_with_channels(
    data: bytes, name: str, max_pixels: int | None = None
) -> tuple[np.ndarray, int]:
    """``decode_upload`` and the colour channels the file had (1 gray, 3 colour)."""
    if not data:
        raise ImageDecodeError(name, "empty upload")
    header = image_header(data)
    if header is None:
        raise ImageDecodeError(name, "not a readable image (its header names no known format)")
    fmt = header[2]
    if fmt not in ALLOWED_FORMATS and fmt != "unknown":
        raise ImageDecodeError(
            name, f"image format {fmt} not accepted (use {', '.join(sorted(ALLOWED_FORMATS))})"
        )
    return decode_with_channels(data, name, max_pixels)


def predict_upload(stream: Stream, data: bytes, name: str) -> dict:
    """Score one uploaded, already size-checked image with ``stream``'s bundle and threshold;
    ImageDecodeError when it is bad (reported to the stream)."""
    try:
        image, channels = decode_upload_with_channels(data, name)
        image, note = stream.runner.pipeline.admit(image, channels, name)
    except ImageDecodeError as exc:
        stream.frame_error("upload", str(exc))
        raise
    result = stream.judge(stream.runner.predict_one(image, name))
    stream.metrics.uploads.labels(stream.name, stream.runner.name).inc()
    return {
        "stream": stream.name,
        "source": name,
        "score": result.image_score,
        "normalized_score": result.normalized_score,
        "verdict": result.label,
        "threshold": stream.norm.image_threshold,
        "latency_ms": result.timings_ms,
        "map_max": float(result.anomaly_map.max()),
        "regions": [r.to_dict() for r in result.regions],
        # e.g. a colour image into a grayscale model, converted
        "warnings": [note] if note else [],
    }
