"""EfficientAD's and PUAD's own command-line options."""

from __future__ import annotations

import click

FIT = [
    click.option(
        "--model-size",
        type=click.Choice(["small", "medium"]),
        default="small",
        show_default=True,
        help="EfficientAD-S or -M networks.",
    ),
    click.option(
        "--steps",
        default=70_000,
        show_default=True,
        help="Student and autoencoder training steps (the paper: 70,000).",
    ),
    click.option(
        "--teacher",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Teacher weights (teacher_small.pth / teacher_medium.pth of the public "
        "reproductions); without it a teacher is distilled from --backbone.",
    ),
    click.option(
        "--teacher-steps",
        default=10_000,
        show_default=True,
        help="Distillation steps when no --teacher file is given.",
    ),
    click.option(
        "--teacher-data",
        type=click.Path(exists=True, file_okay=False),
        default=None,
        help="Images to distill the teacher on (default: the training images).",
    ),
    click.option(
        "--penalty-data",
        type=click.Path(exists=True, file_okay=False),
        default=None,
        help="The paper's penalty images (it uses ImageNet): any folder of images.",
    ),
    click.option(
        "--checkpoint",
        type=click.Path(dir_okay=False),
        default=None,
        help="Training checkpoint file: written every --checkpoint-every steps; a run "
        "started again with the same settings resumes from it.",
    ),
    click.option("--checkpoint-every", default=1000, show_default=True),
    click.option("--lr", default=1e-4, show_default=True),
]
PUAD = [
    click.option(
        "--puad-feature",
        type=click.Choice(["student", "teacher"]),
        default="student",
        show_default=True,
        help="Which network's pooled output the Gaussian models.",
    ),
    click.option(
        "--puad-weight",
        default=1.0,
        show_default=True,
        help="Weight of the Mahalanobis z-score in the sum with the EfficientAD z-score.",
    ),
]
