"""``edgead export-triton``: bundles as a Triton Inference Server model repository."""

from __future__ import annotations

import click

from edgead.cli.main import main


@main.command("export-triton")
@click.argument("bundles", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The repository.")
@click.option(
    "--form",
    type=click.Choice(["python", "ensemble", "both"]),
    default="both",
    show_default=True,
    help="python: one Python-backend model per bundle running the edgead runtime (CPU or GPU "
    "servers); ensemble: preprocess -> graph (onnxruntime/TensorRT backend) -> scorer, for "
    "GPU servers; both.",
)
@click.option("--name", "names", multiple=True, help="Model name per bundle (default: folder).")
@click.option("--max-batch", default=16, show_default=True, help="Triton max_batch_size.")
@click.option(
    "--max-queue-delay-us",
    default=2000,
    show_default=True,
    help="Longest a request waits for the dynamic batcher to fill a batch.",
)
@click.option("--instances", default=1, show_default=True, help="Model instances per device.")
@click.option("--gpu", is_flag=True, help="Python models' instances on GPUs (KIND_GPU).")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option(
    "--graph",
    type=click.Choice(["onnx", "tensorrt"]),
    default="onnx",
    show_default=True,
    help="The ensemble's graph: the bundle's ONNX (onnxruntime_onnx) or its TensorRT engine "
    "(tensorrt_plan; build it on the server's GPU model first).",
)
@click.option(
    "--model-threads",
    default=0,
    show_default=True,
    help="onnxruntime/BLAS threads per Python-model instance (0: the server's cores).",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def export_triton(
    bundles: tuple[str, ...],
    out: str,
    form: str,
    names: tuple[str, ...],
    max_batch: int,
    max_queue_delay_us: int,
    instances: int,
    gpu: bool,
    precision: str,
    graph: str,
    model_threads: int,
    overwrite: bool,
) -> None:
    """Write a Triton model repository serving BUNDLES (see the README's Triton section)."""
    from edgead.triton.repository import TritonOptions, export_triton

    options = TritonOptions(
        form=form,
        max_batch=max_batch,
        max_queue_delay_us=max_queue_delay_us,
        instances=instances,
        gpu=gpu,
        precision=precision,
        threads=model_threads,
        graph=graph,
    )
    models = export_triton(list(bundles), out, options, list(names) or None, overwrite)
    click.echo(f"wrote {out}: {', '.join(models)}")
    if form != "python":
        click.echo(
            "the *_ensemble models need Triton's onnxruntime"
            + (" and tensorrt" if graph == "tensorrt" else "")
            + " backend (the NGC tritonserver container has them)"
        )
