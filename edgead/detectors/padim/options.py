"""PaDiM's own command-line options."""

from __future__ import annotations

import click

from edgead.detectors.options import augment_option

FIT = [
    augment_option("photometric"),
    click.option(
        "--n-features",
        default=None,
        type=int,
        help="Random channel subset size d (default 100; 550 for wide_resnet50_2).",
    ),
    click.option(
        "--epsilon-relative",
        default=0.1,
        show_default=True,
        help="Covariance regularization as a fraction of the mean feature variance "
        "(added to the diagonal).",
    ),
    click.option(
        "--epsilon",
        default=None,
        type=float,
        help="Absolute covariance regularization instead (the paper's is 0.01).",
    ),
]
