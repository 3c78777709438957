"""``edgead parity``: does the bundle score like the model it came from?"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from edgead.bundle.records import Verdicts
from edgead.cli.main import EXIT_DATA_MISMATCH, EXIT_ERROR, main
from edgead.cli.options import THRESHOLD, runtime_options, runtime_settings
from edgead.errors import DataMismatchError


@main.command()
@click.argument("bundle", type=click.Path())
@click.argument("data", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--batch", default=1, show_default=True)
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False), help="Also write the report as JSON."
)
@THRESHOLD
@runtime_options
@click.pass_context
def parity(
    ctx: click.Context,
    bundle: str,
    data: str | None,
    backend: str,
    device: str | None,
    batch: int,
    json_out: str | None,
    precision: str,
    search: str,
    threshold: float | None,
) -> None:
    """Check that BUNDLE scores like the original model (golden outputs; DATA's test set).

    Exits 1 when any difference exceeds its tolerance, 4 when DATA is not what the bundle was
    evaluated on.
    """
    from edgead.runtime.parity import run_parity

    try:
        settings = runtime_settings(ctx, batch=batch)
        report = run_parity(bundle, data, settings, ctx.obj["quiet"])
    except DataMismatchError as exc:
        click.echo(f"parity not run: {exc}", err=True)
        sys.exit(EXIT_DATA_MISMATCH)
    click.echo(f"parity of {bundle} on {report.backend}" + (f" over {data}" if data else ""))
    click.echo(report.table())
    for failure in report.failures:
        click.echo(f"skipped unreadable image: {failure}", err=True)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if report.verdicts:
        click.echo(
            f"at the threshold {report.verdicts['threshold']:.4g}"
            + (" (--threshold)" if threshold is not None else " (the bundle's)")
            + ": "
            + Verdicts.from_dict(report.verdicts).describe()
        )
    if len(report.latency):
        click.echo(report.latency.table(f"runtime latency (batch {batch}, ms per image)"))
    if json_out:
        Path(json_out).write_text(
            json.dumps(
                {
                    "bundle": report.bundle,
                    "backend": report.backend,
                    "passed": report.passed,
                    "rows": [asdict(r) for r in report.rows],
                    "failures": report.failures,
                    "warnings": report.warnings,
                    "verdicts": report.verdicts,
                    "latency_ms": report.latency.summary(),
                },
                indent=2,
            )
        )
    if not report.passed:
        click.echo("parity FAILED", err=True)
        sys.exit(EXIT_ERROR)
    click.echo("parity passed")
