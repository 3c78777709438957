"""``edgead bench``: per-stage latency, throughput, memory, with the context of the figures."""

from __future__ import annotations

from pathlib import Path

import click

from edgead.cli.main import main
from edgead.cli.options import THRESHOLD, compare_options, runtime_settings
from edgead.cli.outdir import OVERWRITE, check_out, clear_owned


@main.command()
@click.argument("bundle", type=click.Path())
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False),
    help="Images to time (an MVTec category's test set or a folder); default: "
    "synthetic images, which leaves out the decode stage. A labelled test set also gives "
    "accuracy at the threshold.",
)
@click.option(
    "--batch",
    "batches",
    default="1,16",
    show_default=True,
    help="Comma-separated batch sizes for throughput.",
)
@click.option("--warmup", default=5, show_default=True)
@click.option("--iterations", default=30, show_default=True, help="Timed runs at batch 1.")
@click.option(
    "--format", "fmt", type=click.Choice(["md", "json", "html"]), default="md", show_default=True
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Write bench.<format> here (then nothing but its path goes to the terminal).",
)
@OVERWRITE
@THRESHOLD
@compare_options
@click.pass_context
def bench(
    ctx: click.Context,
    bundle: str,
    data: str | None,
    batches: str,
    backend: list[str],
    device: str | None,
    warmup: int,
    iterations: int,
    fmt: str,
    out: str | None,
    overwrite: bool,
    precision: list[str],
    search: str,
    threshold: float | None,
) -> None:
    """Per-stage latency (batch 1), throughput per batch size, memory and bundle size.

    With several backends or precisions (``--backend onnxruntime,openvino --precision
    fp32,int8``): every configuration side by side in one run, the same images fed to each in
    turn, with latency ratios and, with labelled --data, ROCAUC and false rejects of each.
    """
    from edgead.runtime.bench import run_bench

    if out:
        check_out(out, overwrite)
    if len(backend) > 1 or len(precision) > 1:
        from edgead.runtime.compare import run_compare

        # each configuration replaces backend and precision
        settings = runtime_settings(ctx, backend="auto", precision="auto")
        compared = run_compare(bundle, backend, precision, data, settings, warmup, iterations)
        _emit(compared, fmt, out)
        return
    backend, precision = backend[0], precision[0]

    try:
        sizes = tuple(int(b) for b in batches.split(",") if b)
    except ValueError as exc:
        raise click.BadParameter(f"--batch {batches!r}: expected e.g. 1,16,64") from exc
    settings = runtime_settings(ctx, backend=backend, precision=precision)
    report = run_bench(bundle, data, sizes, settings, warmup, iterations)
    _emit(report, fmt, out)


def _emit(report, fmt: str, out: str | None) -> None:
    text = {"json": report.to_json, "html": report.html}.get(fmt, report.markdown)()
    if out:
        clear_owned(Path(out), ["bench.md", "bench.json", "bench.html"])
        Path(out).mkdir(parents=True, exist_ok=True)
        target = Path(out) / f"bench.{fmt}"
        target.write_text(text)
        click.echo(f"bench written: {target}")
    else:
        click.echo(text)
