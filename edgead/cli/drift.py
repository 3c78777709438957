"""``edgead drift``: has the line moved away from what the threshold was set on? (offline)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgead.cli.main import EXIT_DRIFT, main
from edgead.cli.options import (
    GRAY,
    REQUIRE_SIGNATURE,
    THRESHOLD,
    drift_options,
    region_options,
    runtime_options,
    runtime_settings,
)
from edgead.errors import EdgeadError


def drift_table(checks: list[dict], limit: int = 12) -> str:
    """The checks as a table (the first, every change of state, and the last ones)."""
    from tabulate import tabulate

    keep = [
        c
        for i, c in enumerate(checks)
        if i == 0 or i >= len(checks) - 3 or c["state"] != checks[i - 1]["state"]
    ][-limit:]
    rows = [
        [
            c["checked_at_part"],
            c["state"],
            f"{c['flagged']}/{c['parts']} ({100 * c['flag_rate']:.1f}%)",
            f"{c['flag_p_value']:.2g}",
            f"{c['psi']:.3f} (limit {c['psi_limit']:.2f})",
            f"{c['median_shift']:+.2f}",
            "; ".join(c["alarms"] + c["notices"]),
        ]
        for c in keep
    ]
    return tabulate(
        rows,
        tablefmt="github",
        headers=[
            "at part",
            "state",
            "flagged",
            "flag-rate p",
            "PSI",
            "median shift",
            "alarms, notices",
        ],
    )


@main.command()
@click.argument("bundle", type=click.Path())
@click.argument("images", type=click.Path(exists=True))
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write every check.")
@THRESHOLD
@REQUIRE_SIGNATURE
@GRAY
@region_options
@drift_options
@runtime_options
@click.pass_context
def drift(
    ctx: click.Context,
    bundle: str,
    images: str,
    json_out: str | None,
    threshold: float | None,
    min_region_area: int,
    require_region: bool,
    public_key: str | None,
    gray: str,
    backend: str,
    device: str | None,
    precision: str,
    search: str,
) -> None:
    """Score IMAGES (a folder, taken in name order as the parts came) with BUNDLE and check
    them for drift against what the bundle was calibrated on, as `serve` does on the line:
    the flag rate against the promised false-reject rate, the scores' population stability
    index and the shift of their median, over a rolling window.

    Exits 5 when the alarm fired (the promise broken or about to be), 0 otherwise (a
    notice that the scores moved is said, exit 0)."""
    from tqdm.auto import tqdm

    from edgead.data.datasets import folder_samples
    from edgead.runtime import Failure, Pipeline
    from edgead.runtime.drift import DriftMonitor

    root = Path(images)
    paths = [root] if root.is_file() else [s.path for s in folder_samples(root)]
    if not paths:
        raise EdgeadError(f"{images}: no images found")
    settings = ctx.obj["drift"]
    runtime = runtime_settings(ctx)
    with Pipeline(bundle, runtime) as pipeline:
        monitor = DriftMonitor.for_normalization(pipeline.normalization, settings)
        if not monitor.enabled:
            raise EdgeadError(
                f"{bundle}: no calibration reference in this bundle, nothing to compare with; "
                f"`edgead calibrate {bundle} GOOD_DIR` adds one"
            )
        checks, skipped = [], 0
        for r in tqdm(
            pipeline.predict_files(paths),
            total=len(paths),
            unit="img",
            disable=ctx.obj["quiet"] or None,
            leave=False,
        ):
            if isinstance(r, Failure):
                skipped += 1
                click.echo(f"skipped {r.source}: {r.error}", err=True)
                continue
            status = monitor.add(r.image_score, r.label == "anomalous")
            if status is not None:
                checks.append(status.to_dict())
    ref = monitor.reference
    click.echo(
        f"reference: {len(ref.scores)} calibration scores, median {ref.median:.4g}, threshold "
        f"{ref.threshold:.4g}, promised false-reject rate {100 * ref.target_frr:.1f}%"
    )
    if json_out:
        Path(json_out).write_text(json.dumps({"checks": checks}, indent=1))
    if not checks:
        click.echo(
            f"{monitor.parts} parts scored ({skipped} skipped): fewer than the "
            f"{settings.min_parts} a check needs (--drift-min-parts)"
        )
        return
    click.echo(drift_table(checks))
    fired = [c for c in checks if c["state"] == "drift"]
    if fired:
        first = fired[0]
        click.echo(
            f"drift: {len(fired)} of {len(checks)} checks fired, first at part "
            f"{first['checked_at_part']}: {'; '.join(first['alarms'])}. {first['advice']}",
            err=True,
        )
        sys.exit(EXIT_DRIFT)
    moved = [c for c in checks if c["state"] == "shift"]
    if moved:
        click.echo(
            f"no drift alarm in {len(checks)} checks over {monitor.parts} parts; the scores "
            f"moved in {len(moved)} ({'; '.join(moved[-1]['notices'])}): {moved[-1]['advice']}"
        )
        return
    click.echo(f"no drift: {len(checks)} checks over {monitor.parts} parts")
