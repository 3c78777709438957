"""``edgead run``: score images with a bundle, write per-image results and overlays."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from edgead.cli.main import EXIT_SKIPPED, main
from edgead.cli.options import (
    GRAY,
    REQUIRE_SIGNATURE,
    THRESHOLD,
    drift_options,
    region_options,
    runtime_options,
    runtime_settings,
)
from edgead.cli.outdir import APPEND, OVERWRITE, check_out, clear_owned
from edgead.cli.output import ResultWriter, check_appendable, failure_row, prediction_row
from edgead.errors import EdgeadError

log = logging.getLogger("edgead")


@main.command()
@click.argument("bundle", type=click.Path())
@click.argument("images", type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Results folder.")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True
)
@click.option("--batch", default=1, show_default=True, help="Images per inference call.")
@click.option("--overlays/--no-overlays", default=True, show_default=True)
@OVERWRITE
@APPEND
@THRESHOLD
@REQUIRE_SIGNATURE
@GRAY
@region_options
@drift_options
@runtime_options
@click.pass_context
def run(
    ctx: click.Context,
    bundle: str,
    images: str,
    out: str,
    fmt: str,
    backend: str,
    device: str | None,
    batch: int,
    overlays: bool,
    precision: str,
    search: str,
    threshold: float | None,
    min_region_area: int,
    require_region: bool,
    public_key: str | None,
    gray: str,
    overwrite: bool,
    append: bool,
) -> None:
    """Score IMAGES (a file or folder) with BUNDLE; write per-image results and overlays.

    Each result row carries the drift state of the rolling window at that image (images in
    name order, as the parts came); a drift alarm is also said at the end.
    Exits 3 when some images could not be read (the others are scored and written).
    """
    import cv2
    from tqdm.auto import tqdm

    from edgead.data.datasets import folder_samples
    from edgead.runtime import Failure, Pipeline
    from edgead.runtime.drift import DriftMonitor
    from edgead.runtime.postprocess import overlay
    from edgead.runtime.timing import LatencyStats

    root = Path(images)
    paths = [root] if root.is_file() else [s.path for s in folder_samples(root)]
    if not paths:
        raise EdgeadError(f"{images}: no images found")
    out_dir = check_out(out, overwrite, append)
    results_path = out_dir / f"results.{fmt}"
    if append:
        check_appendable(results_path, fmt)
    stats = LatencyStats()
    n_bad = 0
    verdicts: dict[str, int] = {}
    base = root.resolve() if root.is_dir() else root.resolve().parent
    # the bundle opens (and is verified) before anything is written
    runtime = runtime_settings(ctx)
    with Pipeline(bundle, runtime) as pipeline:
        monitor = DriftMonitor.for_normalization(pipeline.normalization, ctx.obj["drift"])
        first_alarm = None
        if overwrite:
            clear_owned(out_dir, ["results.csv", "results.jsonl", "overlays"])
        if overlays:
            (out_dir / "overlays").mkdir(parents=True, exist_ok=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        new_file = not results_path.is_file() or results_path.stat().st_size == 0
        with open(results_path, "a" if append else "w", newline="") as f:
            writer = ResultWriter(f, fmt, header=new_file or not append)
            for r in tqdm(
                pipeline.predict_files(paths, batch),
                total=len(paths),
                unit="img",
                disable=ctx.obj["quiet"] or None,
                leave=False,
            ):
                if isinstance(r, Failure):
                    n_bad += 1
                    log.warning("skipped %s: %s", r.source, r.error)
                    writer.write(failure_row(r))
                    continue
                for note in r.warnings:
                    log.warning("%s: %s", r.source, note)
                stats.add(r.timings_ms)
                label = r.label or "no threshold"
                verdicts[label] = verdicts.get(label, 0) + 1
                checked = monitor.add(r.image_score, r.label == "anomalous")
                if checked is not None and checked.alarms and first_alarm is None:
                    first_alarm = (r.source, checked)
                writer.write({**prediction_row(r), "drift": monitor.status().state})
                if overlays:
                    name = Path(r.source).resolve().relative_to(base).with_suffix(".png")
                    cv2.imwrite(
                        str(out_dir / "overlays" / "__".join(name.parts)),
                        overlay(r.image, r.anomaly_map, pipeline.normalization, regions=r.regions),
                    )
        backend_name = pipeline.describe()
    counts = ", ".join(f"{n} {label}" for label, n in sorted(verdicts.items()))
    click.echo(
        f"{len(stats)} images scored ({counts or 'none'}), {n_bad} skipped -> {results_path}"
    )
    if first_alarm is not None:
        source, status = first_alarm
        log.warning(
            "drift from %s on (part %d): %s. %s",
            source,
            status.checked_at_part,
            "; ".join(status.alarms),
            status.advice,
        )
    elif monitor.enabled:
        status = monitor.status()
        said = f": {'; '.join(status.notices)}. {status.advice}" if status.notices else ""
        click.echo(f"drift: {status.state} ({monitor.parts} parts){said}")
    if len(stats):
        click.echo(stats.table(f"per-stage latency ({backend_name}, batch {batch}, ms per image)"))
    if n_bad:
        click.echo(f"{n_bad} of {len(paths)} inputs skipped (exit status {EXIT_SKIPPED})", err=True)
        sys.exit(EXIT_SKIPPED)
