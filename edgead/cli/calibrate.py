"""``edgead calibrate``: thresholds from the line's own good images, without refitting."""

from __future__ import annotations

import click

from edgead.cli.main import main
from edgead.cli.options import runtime_options
from edgead.cli.report import threshold_rows


@main.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.argument("good_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--target-frr",
    default=0.01,
    show_default=True,
    type=float,
    help="False-reject rate to set the threshold at, on GOOD_DIR's images.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the recalibrated bundle here [default: replace BUNDLE, atomically].",
)
@runtime_options
@click.pass_context
def calibrate(
    ctx: click.Context,
    bundle: str,
    good_dir: str,
    target_frr: float,
    out: str | None,
    backend: str,
    device: str | None,
    precision: str,
    search: str,
) -> None:
    """Set BUNDLE's thresholds from the good images in GOOD_DIR (e.g. the line's own camera)
    at a target false-reject rate; written as a new revision of the bundle."""
    from tabulate import tabulate

    from edgead.bundle.io import open_bundle
    from edgead.metrics.calibration import check_target
    from edgead.runtime.calibrate import calibrate_bundle

    check_target(target_frr)
    target, record = calibrate_bundle(
        bundle,
        good_dir,
        target_frr,
        out,
        backend,
        device,
        precision,
        search,
        ctx.obj.get("threads"),
    )
    m = open_bundle(target).manifest
    for skipped in record["skipped"]:
        click.echo(f"skipped unreadable image: {skipped}", err=True)
    click.echo(tabulate(threshold_rows(m.normalization), tablefmt="github", headers=["", target]))
    click.echo(f"bundle revision {m.revision} written: {target}")
