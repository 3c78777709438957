"""``edgead calibrate``: thresholds from the line's own good images, without refitting."""

from __future__ import annotations

from pathlib import Path

import click

from edgead.cli.main import main
from edgead.cli.options import runtime_options, runtime_settings
from edgead.cli.report import threshold_rows
from edgead.errors import EdgeadError


@main.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.argument("good_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--target-frr",
    default=0.01,
    show_default=True,
    type=float,
    help="False-reject rate to set the threshold at, on the good images.",
)
@click.option(
    "--confidence",
    default=0.95,
    show_default=True,
    type=float,
    help="The threshold keeps the false-reject rate at or below --target-frr with this "
    "confidence (0.5: the point estimate).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the recalibrated bundle here [default: replace BUNDLE, atomically].",
)
@click.option("--overwrite", is_flag=True, help="--out exists: replace it.")
@runtime_options
@click.pass_context
def calibrate(
    ctx: click.Context,
    bundle: str,
    good_dirs: tuple[str, ...],
    target_frr: float,
    confidence: float,
    out: str | None,
    overwrite: bool,
    backend: str,
    device: str | None,
    precision: str,
    search: str,
) -> None:
    """Set BUNDLE's thresholds from the good images in GOOD_DIRS (e.g. the line's own camera;
    one folder per run, shift or day) at a target false-reject rate; written as a new
    revision of the bundle. With several folders, each is also judged by a threshold set on
    the others: what a run the calibration has not seen would likely get."""
    from tabulate import tabulate

    from edgead.bundle.io import open_bundle
    from edgead.metrics.calibration import check_confidence, check_target
    from edgead.runtime.calibrate import calibrate_bundle

    check_target(target_frr)
    check_confidence(confidence)
    if out is not None and Path(out).exists() and not overwrite:
        raise EdgeadError(f"{out}: already exists; pass --overwrite to replace it")
    settings = runtime_settings(ctx)
    target, record = calibrate_bundle(bundle, good_dirs, target_frr, out, settings, confidence)
    m = open_bundle(target).manifest
    for skipped in record.skipped:
        click.echo(f"skipped unreadable image: {skipped}", err=True)
    click.echo(tabulate(threshold_rows(m.normalization), tablefmt="github", headers=["", target]))
    click.echo(run_table(record.runs or []))
    click.echo(f"bundle revision {m.revision} written: {target}")


def run_table(runs: list[dict]) -> str:
    """Per folder: images, flagged at the new threshold, and at one set without the folder."""
    from tabulate import tabulate

    rows = []
    for r in runs:
        unseen = "-"
        if "flagged_without_it" in r:
            unseen = (
                f"{r['flagged_without_it']} ({100 * r['flagged_without_it'] / r['images']:.1f}%)"
            )
        rows.append(
            [
                r["folder"],
                r["images"],
                f"{r['flagged']} ({100 * r['flagged'] / max(r['images'], 1):.1f}%)",
                unseen,
                "-" if r["median_score"] is None else f"{r['median_score']:.4g}",
            ]
        )
    return tabulate(
        rows,
        tablefmt="github",
        headers=[
            "folder",
            "images",
            "flagged at the threshold",
            "flagged at a threshold set without it",
            "median score",
        ],
    )
