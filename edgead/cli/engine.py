"""``edgead build-engine``: compile a bundle's graphs into TensorRT engines."""

from __future__ import annotations

from pathlib import Path

import click

from edgead.cli.main import main


@main.command("build-engine")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--precision",
    "precisions",
    default="fp16,fp32",
    show_default=True,
    help="Engines to build: fp16 (from the FP16 graph), fp32, int8 (from the INT8 graph of "
    "`edgead quantize`, written only if it holds parity on --data on this GPU).",
)
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False),
    help="Evaluation data (MVTec layout) the INT8 engine is gated on.",
)
@click.option("--min-batch", default=1, show_default=True)
@click.option("--opt-batch", default=1, show_default=True)
@click.option("--max-batch", default=16, show_default=True)
@click.option("--workspace-mb", default=2048, show_default=True)
@click.option(
    "--timing-cache",
    type=click.Path(dir_okay=False),
    help="Timing cache file, read and updated (NVIDIA TensorRT only).",
)
def build_engine_command(
    bundle: str,
    precisions: str,
    min_batch: int,
    opt_batch: int,
    max_batch: int,
    workspace_mb: int,
    timing_cache: str | None,
    data: str | None,
) -> None:
    """Compile BUNDLE's ONNX graphs into TensorRT engines and add them to the bundle."""
    from edgead.export.engine import EngineSettings, build_engines

    settings = EngineSettings(
        min_batch, opt_batch, max_batch, workspace_mb, Path(timing_cache) if timing_cache else None
    )
    built = build_engines(bundle, tuple(p for p in precisions.split(",") if p), settings, data)
    for e in built:
        click.echo(
            f"{e['precision']} engine: {e['tensorrt']} {e['tensorrt_version']}, batch "
            f"{e['min_batch']}-{e['max_batch']}, built on {e['built_on']} in "
            f"{e['build_seconds']} s" + (", holds INT8 parity on it" if e.get("gate") else "")
        )
