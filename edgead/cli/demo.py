"""``edgead demo``: the whole flow on a generated inspection set, offline."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from edgead.cli.main import import_torch_side, main
from edgead.cli.options import QUIET, THREADS
from edgead.cli.report import metrics_table
from edgead.errors import EdgeadError


@main.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep data, model and bundle here (default: a temporary folder, removed at the end).",
)
@THREADS
@QUIET
@click.pass_context
def demo(ctx: click.Context, workdir: str | None) -> None:
    """Synthetic inspection set -> PatchCore -> bundle -> runtime, parity and latency.

    Works offline on a fresh machine: the data is generated, the backbone weights ship in a
    package.
    """
    import_torch_side()
    if workdir:
        work = Path(workdir).resolve()
        _demo(work, ctx.obj["quiet"])
        click.echo(f"kept: data, bundle and results in {work}")
        click.echo(next_steps(work / "bundle", work / "data"))
        return
    with tempfile.TemporaryDirectory(prefix="edgead-demo-") as tmp:
        _demo(Path(tmp), ctx.obj["quiet"])
    click.echo(f"removed the demo's folder {tmp} (keep it with --workdir DIR)")
    click.echo(next_steps())


def next_steps(bundle: Path | None = None, data: Path | None = None) -> str:
    """What to try next, with this demo's paths when they were kept."""
    b = bundle or "BUNDLE"
    images = data / "test" / "good" if data else "IMAGES"
    return (
        "next:\n"
        f"  edgead run {b} {images} --out results       # verdicts, regions, overlays\n"
        f"  edgead serve {b} --folder {images}          # the live page on 127.0.0.1:8000\n"
        "  edgead export patchcore --data YOUR_GOOD_IMAGES --out BUNDLE   # your own parts"
    )


def _demo(work: Path, quiet: bool) -> None:
    from edgead.detectors.patchcore.model import PatchCoreConfig
    from edgead.runtime.parity import run_parity
    from edgead.workflows import export_model, fit_detector

    data = generate_data(work / "data")
    saved = fit_detector("patchcore", data, PatchCoreConfig(), quiet=quiet)
    click.echo(metrics_table(saved))
    bundle = export_model(saved, work / "bundle", overwrite=True)
    click.echo(f"bundle: {bundle}")
    report = run_parity(bundle, data, quiet=quiet)
    click.echo(report.table())
    click.echo(report.latency.table(f"runtime latency ({report.backend}, batch 1, ms per image)"))
    torch_ms = saved.evaluation.metrics.torch_ms_per_image if saved.evaluation else None
    if torch_ms is not None:
        click.echo(
            f"PyTorch model, for comparison: {torch_ms:.1f} ms per image (median, batch 1, "
            "preprocessed input to anomaly map = graph + score + postprocess)"
        )
    if not report.passed:
        raise EdgeadError("demo: parity failed (see the table above)")
    click.echo("demo passed: the bundle scores like the PyTorch model")


def generate_data(root: Path) -> Path:
    from edgead.data.synthetic import generate

    data = generate(root, n_train=30, n_test_good=10, n_test_defect=6)
    click.echo(f"synthetic inspection set: {data} (30 train, 10 good + 18 defective test images)")
    return data
