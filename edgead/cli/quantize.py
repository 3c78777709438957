"""``edgead quantize``: add an INT8 graph to a bundle, calibrated on good training images and
written only when it passes parity on the evaluation set."""

from __future__ import annotations

import click

from edgead.cli.main import main


@main.command("quantize")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="The data the bundle was exported from: train/good calibrates (only images the model "
    "was fitted on), test/ gates.",
)
@click.option(
    "--quantizer",
    type=click.Choice(["nncf", "onnxruntime"]),
    default="nncf",
    show_default=True,
    help="Post-training quantizer; both write a QDQ graph that onnxruntime and OpenVINO run.",
)
@click.option(
    "--calibration-images",
    default=64,
    show_default=True,
    help="Good training images that set the activation ranges (chosen with --seed).",
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--backend",
    "backends",
    default="onnxruntime,openvino",
    show_default=True,
    help="Backends the graph must pass parity on; only these may run it.",
)
@click.option("--threads", type=int, default=None, help="Host threads for the parity runs.")
def quantize_command(
    bundle: str,
    data: str,
    quantizer: str,
    calibration_images: int,
    seed: int,
    backends: str,
    threads: int | None,
) -> None:
    """Add an INT8 graph to BUNDLE if it keeps the bundle's accuracy on DATA.

    The gate: image and pixel ROCAUC within 0.5 points of the original, image-score ranks
    (Spearman) at least 0.99, and detection and false-reject rates at the bundle's threshold
    no more than 2 points worse. A graph that misses any of them is not written, and the
    message says which check failed and by how much.
    """
    from edgead.export.quantize import INT8_NAME, Int8Settings, add_int8_graph

    settings = Int8Settings(
        images=calibration_images,
        seed=seed,
        quantizer=quantizer,
        backends=tuple(b.strip() for b in backends.split(",") if b.strip()),
        threads=threads,
    )
    meta = add_int8_graph(bundle, data, settings)
    for backend, gate in meta["gate"].items():
        checks = ", ".join(
            f"{r['check']} {r['original']:.2f} -> {r['int8']:.2f}"
            if r["unit"] == "points"
            else f"{r['check']} {r['int8']:.4f}"
            for r in gate["rows"]
        )
        if gate["passed"]:
            click.echo(f"int8 on {backend}: passed ({checks})")
        else:
            click.echo(
                f"int8 on {backend}: FAILED, will not run there ({'; '.join(gate['failed'])})"
            )
    from edgead.bundle.io import read_manifest

    cal = meta["calibration"]
    click.echo(
        f"added {INT8_NAME} ({meta['quantizer']} {meta['quantizer_version']}, "
        f"{cal['images']} calibration images, seed {cal['seed']}); run it with "
        f"`--precision int8`"
    )
    choice = read_manifest(bundle).runtime
    measured = ", ".join(f"{k} {v:.2f} ms" for k, v in choice["graph_p50_ms"].items())
    click.echo(
        f"default runtime now {choice['backend']} {choice['precision']} (graph p50 here: "
        f"{measured})"
    )
