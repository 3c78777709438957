"""SPADE's own command-line options."""

from __future__ import annotations

import click

from edgead.detectors.options import augment_option

FIT = [
    augment_option("none"),
    click.option(
        "--k",
        "k",
        default=50,
        show_default=True,
        help="Image level: nearest training images averaged into the score.",
    ),
    click.option(
        "--gallery-k",
        default=5,
        show_default=True,
        help="Pixel level: nearest training images searched (K).",
    ),
]
