"""Command-line options every detector shares (fit and export); each detector adds its own in
its package's ``options.py``. Click option decorators only: no torch."""

from __future__ import annotations

from collections.abc import Callable

import click

FIT_OPTIONS = [
    click.option(
        "--backbone",
        default="efficientnet_lite0",
        show_default=True,
        help="efficientnet_lite0 (offline weights), wide_resnet50_2 or resnet18.",
    ),
    click.option(
        "--weights",
        default=None,
        help="Backbone weights file (state dict), or 'none' for random weights.",
    ),
    click.option(
        "--layers",
        default=None,
        help="Comma-separated feature layers (default: the detector's stages of the "
        "backbone, e.g. blocks.2,blocks.4 or layer2,layer3 for PatchCore).",
    ),
    click.option(
        "--image-size",
        default=None,
        help="Network input size: N or HxW [default: 224; 256 for efficientad and puad].",
    ),
    click.option("--seed", default=0, show_default=True),
    click.option("--batch-size", default=16, show_default=True),
    click.option(
        "--device",
        default="cpu",
        show_default=True,
        type=click.Choice(["cpu", "cuda"]),
        help="torch device for fitting.",
    ),
    click.option(
        "--target-frr",
        default=0.01,
        show_default=True,
        type=float,
        help="False-reject rate the threshold is set at, on held-out good images.",
    ),
    click.option(
        "--holdout",
        default=0.1,
        show_default=True,
        type=float,
        help="Fraction of train/good held out of the fit to set the threshold on "
        "(used where the data has no validation/good).",
    ),
    click.option(
        "--holdout-by",
        default="auto",
        show_default=True,
        help="Which images are held out: auto (the newest whole runs where subfolders or "
        "file-name prefixes show runs, else the newest by name), newest (by name), mtime, "
        "random, or group:REGEX (runs named by a regex on the file path, held out whole).",
    ),
    click.option(
        "--confidence",
        default=0.95,
        show_default=True,
        type=float,
        help="The threshold keeps the false-reject rate at or below --target-frr with this "
        "confidence (an upper bound, not the point estimate; 0.5 for the point estimate).",
    ),
]


# the detectors that fit on features of the training images take this in their own FIT group
def augment_option(default: str) -> Callable:
    """``--augment``, for the detectors that fit on features of the training images, each
    with the default its measurement chose (README, "Shifts")."""
    return click.option(
        "--augment",
        type=click.Choice(["none", "photometric"]),
        default=default,
        show_default=True,
        help="photometric: also fit on a copy of each training image with mild random "
        'brightness, contrast, gamma and blur (README, "Shifts"); doubles the features.',
    )


EXPORT_OPTIONS = [
    click.option(
        "--fp16/--no-fp16",
        default=True,
        show_default=True,
        help="Also write an FP16 graph (for TensorRT FP16 engines and FP16 parity).",
    ),
    click.option(
        "--torch-graph",
        is_flag=True,
        help="Also write the graph as torch.export programs, for `--backend torch` "
        "(GPU machines without TensorRT).",
    ),
]
