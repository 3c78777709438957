"""Datasets and image decoding (numpy and OpenCV only: the runtime uses them too)."""

from edgead.data.datasets import MVTecCategory, Sample, folder_samples, open_dataset
from edgead.data.images import decode_image, iter_images, list_images, read_image, read_mask

__all__ = [
    "MVTecCategory",
    "Sample",
    "decode_image",
    "folder_samples",
    "iter_images",
    "list_images",
    "open_dataset",
    "read_image",
    "read_mask",
]
