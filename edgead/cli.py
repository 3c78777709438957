"""The ``edgead`` command line. torch is imported only inside the fit and export commands."""

from __future__ import annotations

import csv
import json
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgead.errors import EdgeadError
from edgead.runtime.search import SEARCHES

log = logging.getLogger("edgead")


class EdgeadGroup(click.Group):
    """Turns EdgeadError into a one-line message and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeadError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=EdgeadGroup)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or info messages.")
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
@click.version_option(package_name="edgead")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """edgead: fit anomaly detectors on good images, export a verified bundle, run it lean."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader reports CPU features
    ctx.obj = {"quiet": quiet}


def _size(value: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in value.lower().split("x")]
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: expected N or HxW, e.g. 224 or 256x320") from exc
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 32:
        raise click.BadParameter(f"{value!r}: expected N or HxW with sides >= 32")
    return parts[0], parts[1]


COMMON_OPTIONS = [
    click.option(
        "--backbone",
        default="efficientnet_lite0",
        show_default=True,
        help="efficientnet_lite0 (offline weights), wide_resnet50_2 or resnet18.",
    ),
    click.option(
        "--weights",
        default=None,
        help="Backbone weights file (state dict), or 'none' for random weights.",
    ),
    click.option(
        "--layers",
        default=None,
        help="Comma-separated feature layers (default: the detector's stages of the "
        "backbone, e.g. blocks.2,blocks.4 or layer2,layer3 for PatchCore).",
    ),
    click.option(
        "--image-size",
        default=None,
        help="Network input size: N or HxW [default: 224; 256 for efficientad and puad].",
    ),
    click.option("--seed", default=0, show_default=True),
    click.option("--batch-size", default=16, show_default=True),
    click.option("--device", default="cpu", show_default=True, help="torch device for fitting."),
    click.option(
        "--target-frr",
        default=0.01,
        show_default=True,
        type=float,
        help="False-reject rate the threshold is set at, on held-out good images.",
    ),
    click.option(
        "--holdout",
        default=0.1,
        show_default=True,
        type=float,
        help="Fraction of train/good held out of the fit to set the threshold on "
        "(used where the data has no validation/good).",
    ),
]

# Per detector: its own fit options, its export-only options, and how options become a config.
DETECTOR_OPTIONS: dict[str, list] = {
    "patchcore": [
        click.option(
            "--embed-dim",
            default=1024,
            show_default=True,
            help="Patch feature dimension after projection.",
        ),
        click.option(
            "--coreset-ratio",
            default=0.1,
            show_default=True,
            help="Fraction of training patches kept in the memory bank.",
        ),
        click.option(
            "--coreset-projection",
            default=128,
            show_default=True,
            help="Random projection dimension for coreset selection (0: none).",
        ),
        click.option(
            "--reweight/--no-reweight",
            default=False,
            show_default=True,
            help="The paper's image-score re-weighting by neighbourhood density.",
        ),
    ],
    "padim": [
        click.option(
            "--n-features",
            default=None,
            type=int,
            help="Random channel subset size d (default 100; 550 for wide_resnet50_2).",
        ),
        click.option(
            "--epsilon-relative",
            default=0.1,
            show_default=True,
            help="Covariance regularization as a fraction of the mean feature variance "
            "(added to the diagonal).",
        ),
        click.option(
            "--epsilon",
            default=None,
            type=float,
            help="Absolute covariance regularization instead (the paper's is 0.01).",
        ),
    ],
    "spade": [
        click.option(
            "--k",
            "k",
            default=50,
            show_default=True,
            help="Image level: nearest training images averaged into the score.",
        ),
        click.option(
            "--gallery-k",
            default=5,
            show_default=True,
            help="Pixel level: nearest training images searched (K).",
        ),
    ],
}
EFFICIENTAD_OPTIONS = [
    click.option(
        "--model-size",
        type=click.Choice(["small", "medium"]),
        default="small",
        show_default=True,
        help="EfficientAD-S or -M networks.",
    ),
    click.option(
        "--steps",
        default=70_000,
        show_default=True,
        help="Student and autoencoder training steps (the paper: 70,000).",
    ),
    click.option(
        "--teacher",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Teacher weights (teacher_small.pth / teacher_medium.pth of the public "
        "reproductions); without it a teacher is distilled from --backbone.",
    ),
    click.option(
        "--teacher-steps",
        default=10_000,
        show_default=True,
        help="Distillation steps when no --teacher file is given.",
    ),
    click.option(
        "--teacher-data",
        type=click.Path(exists=True, file_okay=False),
        default=None,
        help="Images to distill the teacher on (default: the training images).",
    ),
    click.option(
        "--penalty-data",
        type=click.Path(exists=True, file_okay=False),
        default=None,
        help="The paper's penalty images (it uses ImageNet): any folder of images.",
    ),
    click.option(
        "--checkpoint",
        type=click.Path(dir_okay=False),
        default=None,
        help="Training checkpoint file: written every --checkpoint-every steps; a run "
        "started again with the same settings resumes from it.",
    ),
    click.option("--checkpoint-every", default=1000, show_default=True),
    click.option("--lr", default=1e-4, show_default=True),
]
PUAD_OPTIONS = [
    click.option(
        "--puad-feature",
        type=click.Choice(["student", "teacher"]),
        default="student",
        show_default=True,
        help="Which network's pooled output the Gaussian models.",
    ),
    click.option(
        "--puad-weight",
        default=1.0,
        show_default=True,
        help="Weight of the Mahalanobis z-score in the sum with the EfficientAD z-score.",
    ),
]
DETECTOR_OPTIONS["efficientad"] = EFFICIENTAD_OPTIONS
DETECTOR_OPTIONS["puad"] = EFFICIENTAD_OPTIONS + PUAD_OPTIONS
EXPORT_OPTIONS: dict[str, list] = {
    "patchcore": [
        click.option(
            "--index",
            type=click.Choice(["auto", "flat", "gemm", "hnsw", "ivfpq"]),
            default="auto",
            show_default=True,
            help="Memory-bank search on the CPU. auto: the fastest of exact flat, exact numpy "
            "matrix products (gemm) and HNSW that keeps recall@1 >= 0.999 and the scores, "
            "measured on held-out good images. Or force one (ivfpq: approximate, for big banks).",
        ),
        click.option("--nprobe", default=8, show_default=True, help="IVF lists searched (ivfpq)."),
        click.option(
            "--search",
            type=click.Choice(["faiss", "graph"]),
            default="faiss",
            show_default=True,
            help="faiss: memory bank searched by faiss at run time; graph: exact search "
            "folded into the ONNX graph / engine (matrix product + min).",
        ),
    ],
}

EXPORT_OPTION_NAMES = {
    "patchcore": ("index", "nprobe", "fp16", "search", "torch_graph"),
    "padim": ("fp16", "torch_graph"),
    "spade": ("fp16", "torch_graph"),
    "efficientad": ("fp16", "torch_graph"),
    "puad": ("fp16", "torch_graph"),
}
TORCH_GRAPH_OPTION = click.option(
    "--torch-graph",
    is_flag=True,
    help="Also write the graph as a torch.export program, for `--backend torch` "
    "(GPU machines without TensorRT).",
)
FP16_OPTION = click.option(
    "--fp16/--no-fp16",
    default=True,
    show_default=True,
    help="Also write an FP16 graph (for TensorRT FP16 engines and FP16 parity).",
)
PRECISION_OPTION = click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16"]),
    default="fp32",
    show_default=True,
    help="Which of the bundle's graphs to run.",
)
SEARCH_OPTION = click.option(
    "--search",
    type=click.Choice(list(SEARCHES)),
    default="auto",
    show_default=True,
    help="Where PatchCore/SPADE search their memory banks: auto = on the GPU (faiss-gpu, else "
    "torch matrix products) when the backend runs on one, else faiss on the CPU.",
)


def _apply(options: list, f: Callable) -> Callable:
    for option in reversed(options):
        f = option(f)
    return f


def _config(name: str, kw: dict) -> Any:
    """Command-line options -> the detector's config dataclass."""
    from edgead.models.registry import get_detector

    config_cls = get_detector(name).config_cls
    fields = set(config_cls.__dataclass_fields__)
    values = {k: v for k, v in kw.items() if k in fields}
    values["layers"] = tuple(kw["layers"].split(",")) if kw.get("layers") else None
    if kw.get("image_size"):
        values["image_size"] = _size(kw["image_size"])
    else:
        values.pop("image_size", None)  # the detector's own default
    if "coreset_ratio" in values and not 0 < values["coreset_ratio"] <= 1:
        raise click.BadParameter("--coreset-ratio must be in (0, 1]")
    if "coreset_projection" in values:
        values["coreset_projection"] = values["coreset_projection"] or None
    return config_cls(**values)


def check_before_fitting(data: str | None, out: str, overwrite: bool, kw: dict) -> None:
    """What can be checked before minutes of fitting: the output, the data's layout, rates."""
    from edgead.bundle.io import remove_stale_staging
    from edgead.metrics.calibration import check_target

    if Path(out).exists() and not overwrite:
        raise EdgeadError(f"{out}: already exists; pass --overwrite to replace it")
    remove_stale_staging(Path(out))
    check_target(kw["target_frr"])
    if not 0 <= kw["holdout"] < 1:
        raise EdgeadError(f"--holdout {kw['holdout']}: expected a fraction in [0, 1), e.g. 0.1")
    if data is not None:
        from edgead.workflows import check_data

        check_data(Path(data))


def _default_checkpoint(config: Any, out: str) -> Path | None:
    """Trained detectors checkpoint beside their output unless told where."""
    if not hasattr(config, "checkpoint"):
        return None
    if config.checkpoint is None:
        out_path = Path(out)
        config.checkpoint = str(out_path.with_name(out_path.name + ".train-checkpoint.pt"))
    return Path(config.checkpoint)


def _done_with_checkpoint(checkpoint: Path | None) -> None:
    """The result is safely written: the checkpoint it was resumable from is not needed."""
    if checkpoint is not None and checkpoint.exists():
        checkpoint.unlink()
        log.info("removed the training checkpoint %s", checkpoint)


def _metrics_table(saved: Any) -> str:
    from tabulate import tabulate

    r = saved.fit_report
    rows = [
        ["training images", r["n_train_images"]],
        ["model", r.get("model_size", "-")],
        ["fit seconds", r["fit_seconds"]],
    ]
    if "regularization" in r:  # PaDiM: how --epsilon compares with the features' scale
        rows.append(["covariance regularization", r["regularization"]])
    if saved.evaluation is not None:
        m = saved.evaluation.metrics
        pct = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
        rows += [
            ["test images (anomalous)", f"{m.n_images} ({m.n_anomalous})"],
            ["image ROCAUC %", pct(m.image_rocauc)],
            ["pixel ROCAUC %", pct(m.pixel_rocauc)],
            ["AUPRO %", pct(m.aupro)],
            ["image F1 %", pct(m.image_f1)],
        ]
        if m.torch_ms_per_image is not None:
            rows.append(["PyTorch ms per image", f"{m.torch_ms_per_image:.1f} ({m.torch_device})"])
    if saved.evaluation is not None:
        rows += threshold_rows(saved.evaluation.normalization)
    if r.get("skipped"):
        rows.append(["skipped training files", len(r["skipped"])])
    return tabulate(rows, tablefmt="github", headers=["", saved.detector])


def threshold_rows(norm: Any) -> list[list[str]]:
    """The threshold, where it came from, and what it costs on labelled test images."""
    cal = norm.calibration or {}
    if norm.image_threshold is None:
        return [["image threshold", "none: " + norm.source]]
    rows = [["image threshold", f"{norm.image_threshold:.4g}"]]
    if cal:
        image = cal["image"]
        lo, hi = image["frr_interval"]
        rows += [
            ["threshold set on", cal["source"]],
            [
                "false-reject rate (target)",
                f"{100 * image['estimated_frr']:.1f}% ({100 * cal['target_frr']:.1f}%), "
                f"90% interval {100 * lo:.1f}-{100 * hi:.1f}%, {image['method']} estimate",
            ],
        ]
        from edgead.metrics.calibration import Verdicts

        test = cal.get("test")
        if test:
            keys = ("threshold", "n_good", "n_anomalous", "false_rejects", "detections")
            rows.append(["at it, on the test set", Verdicts(*[test[k] for k in keys]).describe()])
        f1 = cal.get("f1_optimal")
        if f1:
            keys = ("threshold", "n_good", "n_anomalous", "false_rejects", "detections")
            rows.append(
                [
                    "F1-optimal on the test set (diagnostic)",
                    f"{f1['threshold']:.4g}: " + Verdicts(*[f1[k] for k in keys]).describe(),
                ]
            )
    return rows


@main.group(cls=EdgeadGroup)
def fit() -> None:
    """Fit a detector on good images and evaluate it on the test set."""


@main.group(cls=EdgeadGroup)
def export() -> None:
    """Export a detector to a bundle (fitting first when given --data)."""


def _add_detector_commands(name: str) -> None:
    def fit_command(ctx: click.Context, data: str, out: str, overwrite: bool, **kw: Any) -> None:
        check_before_fitting(data, out, overwrite, kw)
        from edgead.models.saved import save
        from edgead.workflows import fit_detector

        config = _config(name, kw)
        checkpoint = _default_checkpoint(config, out)
        saved = fit_detector(
            name, data, config, kw["device"], ctx.obj["quiet"], kw["target_frr"], kw["holdout"]
        )
        save(out, saved, overwrite)
        _done_with_checkpoint(checkpoint)
        click.echo(_metrics_table(saved))
        click.echo(f"saved model: {out}")

    fit_command.__doc__ = f"Fit {name} and print the ROCAUC table."
    fit_command = _apply(
        [
            click.option(
                "--data",
                required=True,
                type=click.Path(exists=True, file_okay=False),
                help="MVTec-layout category folder, or a plain folder of good images.",
            ),
            click.option(
                "--out", required=True, type=click.Path(), help="Where to save the fitted model."
            ),
            click.option("--overwrite", is_flag=True, help="Replace --out if it exists."),
            *COMMON_OPTIONS,
            *DETECTOR_OPTIONS[name],
        ],
        click.pass_context(fit_command),
    )
    fit.command(name)(fit_command)

    def export_command(
        ctx: click.Context,
        data: str | None,
        model: str | None,
        out: str,
        overwrite: bool,
        **kw: Any,
    ) -> None:
        from edgead.models import saved as saved_models
        from edgead.workflows import export_model, fit_detector

        if (data is None) == (model is None):
            raise click.UsageError("give exactly one of --data (fit and export) or --model")
        check_before_fitting(data, out, overwrite, kw)
        if model is not None:
            saved = saved_models.load(model)
            if saved.detector != name:
                raise EdgeadError(
                    f"{model}: a {saved.detector} model, not {name}; "
                    f"use `edgead export {saved.detector} --model {model}`"
                )
        checkpoint = None
        if model is None:
            config = _config(name, kw)
            checkpoint = _default_checkpoint(config, out)
            saved = fit_detector(
                name, data, config, kw["device"], ctx.obj["quiet"], kw["target_frr"], kw["holdout"]
            )
            click.echo(_metrics_table(saved))
        export_names = EXPORT_OPTION_NAMES.get(name, ())
        export_model(saved, out, overwrite, **{k: v for k, v in kw.items() if k in export_names})
        _done_with_checkpoint(checkpoint)
        click.echo(f"bundle written: {out}")

    export_command.__doc__ = f"Write a {name} bundle: ONNX graph, scoring artifacts, manifest."
    export_command = _apply(
        [
            click.option(
                "--data",
                type=click.Path(exists=True, file_okay=False),
                help="Fit on this folder first (MVTec layout or plain good images).",
            ),
            click.option(
                "--model",
                type=click.Path(exists=True, file_okay=False),
                help=f"A model saved by `edgead fit {name}`.",
            ),
            click.option("--out", required=True, type=click.Path(), help="Bundle folder to write."),
            click.option("--overwrite", is_flag=True, help="Replace --out if it exists."),
            FP16_OPTION,
            TORCH_GRAPH_OPTION,
            *EXPORT_OPTIONS.get(name, []),
            *COMMON_OPTIONS,
            *DETECTOR_OPTIONS[name],
        ],
        click.pass_context(export_command),
    )
    export.command(name)(export_command)


for _name in DETECTOR_OPTIONS:
    _add_detector_commands(_name)


@main.command()
@click.argument("bundle", type=click.Path())
@click.argument("images", type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Results folder.")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True
)
@click.option("--backend", default="onnxruntime", show_default=True)
@PRECISION_OPTION
@SEARCH_OPTION
@click.option("--device", default=None, help="Backend device (cpu, cuda); default: the backend's.")
@click.option("--batch", default=1, show_default=True, help="Images per inference call.")
@click.option("--overlays/--no-overlays", default=True, show_default=True)
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
) -> None:
    """Score IMAGES (a file or folder) with BUNDLE; write per-image results and overlays."""
    import cv2
    from tqdm.auto import tqdm

    from edgead.data.datasets import folder_samples
    from edgead.runtime import Failure, Pipeline
    from edgead.runtime.postprocess import overlay
    from edgead.runtime.timing import STAGES, LatencyStats

    root = Path(images)
    paths = [root] if root.is_file() else [s.path for s in folder_samples(root)]
    if not paths:
        raise EdgeadError(f"{images}: no images found")
    out_dir = Path(out)
    (out_dir / "overlays").mkdir(parents=True, exist_ok=True)
    stats = LatencyStats()
    n_bad = 0
    verdicts: dict[str, int] = {}
    results_path = out_dir / f"results.{fmt}"
    fields = [
        "path",
        "score",
        "normalized",
        "label",
        *[f"{s}_ms" for s in STAGES],
        "total_ms",
        "error",
    ]
    with (
        Pipeline(bundle, backend, device, precision, search) as pipeline,
        open(results_path, "w", newline="") as f,
    ):
        writer = csv.DictWriter(f, fieldnames=fields) if fmt == "csv" else None
        if writer:
            writer.writeheader()
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
                row = {"path": r.source, "error": r.error}
            else:
                stats.add(r.timings_ms)
                verdicts[r.label or "no threshold"] = verdicts.get(r.label or "no threshold", 0) + 1
                row = {
                    "path": r.source,
                    "score": f"{r.image_score:.6g}",
                    "normalized": "" if r.normalized_score is None else f"{r.normalized_score:.4f}",
                    "label": r.label or "",
                    "total_ms": f"{sum(r.timings_ms.values()):.3f}",
                    **{f"{k}_ms": f"{v:.3f}" for k, v in r.timings_ms.items()},
                    "error": "",
                }
                if overlays:
                    name = (
                        Path(r.source)
                        .resolve()
                        .relative_to(root.resolve() if root.is_dir() else root.resolve().parent)
                    )
                    target = out_dir / "overlays" / ("__".join(name.with_suffix(".png").parts))
                    cv2.imwrite(
                        str(target),
                        overlay(r.image, r.anomaly_map, pipeline.normalization),
                    )
            if writer:
                writer.writerow(row)
            else:
                f.write(json.dumps(row) + "\n")
            f.flush()
        backend_name = pipeline.describe()
    counts = ", ".join(f"{n} {label}" for label, n in sorted(verdicts.items()))
    click.echo(
        f"{len(stats)} images scored ({counts or 'none'}), {n_bad} skipped -> {results_path}"
    )
    if len(stats):
        click.echo(stats.table(f"per-stage latency ({backend_name}, batch {batch}, ms per image)"))


@main.command()
@click.argument("bundle", type=click.Path())
@click.argument("data", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--backend", default="onnxruntime", show_default=True)
@PRECISION_OPTION
@SEARCH_OPTION
@click.option("--device", default=None)
@click.option("--batch", default=1, show_default=True)
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False), help="Also write the report as JSON."
)
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
) -> None:
    """Check that BUNDLE scores like the original model (golden outputs; DATA's test set).

    Exits 1 when any difference exceeds its tolerance.
    """
    from dataclasses import asdict

    from edgead.runtime.parity import run_parity

    report = run_parity(bundle, data, backend, device, batch, ctx.obj["quiet"], precision, search)
    click.echo(f"parity of {bundle} on {report.backend}" + (f" over {data}" if data else ""))
    click.echo(report.table())
    for failure in report.failures:
        click.echo(f"skipped unreadable image: {failure}", err=True)
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
                    "latency_ms": report.latency.summary(),
                },
                indent=2,
            )
        )
    if not report.passed:
        click.echo("parity FAILED", err=True)
        sys.exit(1)
    click.echo("parity passed")


@main.command()
@click.argument("bundle", type=click.Path())
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False),
    help="Images to time (an MVTec category's test set or a folder); default: "
    "synthetic images, which leaves out the decode stage.",
)
@click.option(
    "--batch",
    "batches",
    default="1,16",
    show_default=True,
    help="Comma-separated batch sizes for throughput.",
)
@click.option("--backend", default="onnxruntime", show_default=True)
@PRECISION_OPTION
@SEARCH_OPTION
@click.option("--device", default=None)
@click.option("--warmup", default=5, show_default=True)
@click.option("--iterations", default=30, show_default=True, help="Timed runs at batch 1.")
@click.option(
    "--format", "fmt", type=click.Choice(["md", "json", "html"]), default="md", show_default=True
)
@click.option("--out", type=click.Path(file_okay=False), help="Also write bench.<format> here.")
def bench(
    bundle: str,
    data: str | None,
    batches: str,
    backend: str,
    device: str | None,
    warmup: int,
    iterations: int,
    fmt: str,
    out: str | None,
    precision: str,
    search: str,
) -> None:
    """Per-stage latency (batch 1), throughput per batch size, memory and bundle size."""
    from edgead.runtime.bench import run_bench

    try:
        sizes = tuple(int(b) for b in batches.split(",") if b)
    except ValueError as exc:
        raise click.BadParameter(f"--batch {batches!r}: expected e.g. 1,16,64") from exc
    report = run_bench(bundle, data, sizes, backend, device, warmup, iterations, precision, search)
    if fmt == "json":
        text = report.to_json()
    elif fmt == "html":
        from edgead.report import markdown_to_html

        text = markdown_to_html(report.markdown(), title=f"edgead bench: {report.bundle}")
    else:
        text = report.markdown()
    click.echo(text)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"bench.{fmt}").write_text(text)


@main.command("build-engine")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--precision",
    "precisions",
    default="fp16,fp32",
    show_default=True,
    help="Engines to build: fp16 (from the FP16 graph), fp32, or both.",
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
) -> None:
    """Compile BUNDLE's ONNX graphs into TensorRT engines and add them to the bundle."""
    from edgead.export.engine import EngineSettings, build_engines

    settings = EngineSettings(
        min_batch, opt_batch, max_batch, workspace_mb, Path(timing_cache) if timing_cache else None
    )
    built = build_engines(bundle, tuple(p for p in precisions.split(",") if p), settings)
    for e in built:
        click.echo(
            f"{e['precision']} engine: {e['tensorrt']} {e['tensorrt_version']}, batch "
            f"{e['min_batch']}-{e['max_batch']}, built on {e['built_on']} in "
            f"{e['build_seconds']} s"
        )


@main.command()
@click.argument("bundle", type=click.Path())
@click.option("--camera", default=None, help="Camera device index (e.g. 0).")
@click.option("--video", default=None, type=click.Path(dir_okay=False), help="Video file.")
@click.option("--rtsp", default=None, help="Stream URL (rtsp://, http://).")
@click.option("--folder", default=None, type=click.Path(file_okay=False), help="Watched folder.")
@click.option("--loop/--no-loop", default=False, show_default=True, help="Replay a video file.")
@click.option(
    "--fps",
    default=None,
    type=float,
    help="Pace the source at this rate (default: a video file's own rate; 0: unpaced).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option(
    "--token",
    default=None,
    envvar="EDGEAD_TOKEN",
    help="Token every request must carry (required when --host is not loopback) "
    "[env: EDGEAD_TOKEN].",
)
@click.option("--backend", default="onnxruntime", show_default=True)
@PRECISION_OPTION
@SEARCH_OPTION
@click.option("--device", default=None)
@click.option(
    "--out",
    default="edgead-serve",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Anomalous frames go to OUT/events.",
)
@click.option("--max-events", default=1000, show_default=True, help="Events kept on disk.")
@click.option("--max-event-mb", default=512, show_default=True, help="Disk space for events.")
@click.option("--queue", "queue_size", default=2, show_default=True, help="Frames buffered.")
@click.option("--max-upload-mb", default=20, show_default=True)
@click.option(
    "--reconnect-max-s",
    default=10.0,
    show_default=True,
    help="Longest wait between reconnect attempts (backoff from 0.5 s, doubling).",
)
def serve(
    bundle: str,
    camera: str | None,
    video: str | None,
    rtsp: str | None,
    folder: str | None,
    loop: bool,
    fps: float | None,
    host: str,
    port: int,
    token: str | None,
    backend: str,
    precision: str,
    search: str,
    device: str | None,
    out: str,
    max_events: int,
    max_event_mb: int,
    queue_size: int,
    max_upload_mb: int,
    reconnect_max_s: float,
) -> None:
    """Score a camera, video, stream or folder with BUNDLE behind a live web page and API."""
    try:
        from edgead.serve.server import ServeSettings
        from edgead.serve.server import serve as run_server
        from edgead.serve.service import ServeOptions
        from edgead.serve.sources import make_source
    except ImportError as exc:
        raise EdgeadError(
            f"edgead serve needs the serve extra: pip install 'edgead[serve]' ({exc})"
        ) from exc

    source = make_source(camera, video, rtsp, folder, fps, loop)
    settings = ServeSettings(
        host,
        port,
        token,
        backend,
        device,
        precision,
        max_upload_bytes=max_upload_mb << 20,
        search=search,
    )
    options = ServeOptions(
        queue_size=queue_size,
        max_events=max_events,
        max_bytes=max_event_mb << 20,
        backoff_initial=min(0.5, reconnect_max_s),
        backoff_max=reconnect_max_s,
    )
    service = run_server(bundle, source, out, settings, options)
    status = service.status()
    click.echo(
        f"stopped: {status['frames']} frames scored, {status['anomalies']} anomalous, "
        f"{status['dropped_frames']} dropped, {status['source']['frame_errors']} bad frames, "
        f"{status['events']['written']} events written to {status['events']['folder']}"
    )


@main.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep data, model and bundle here (default: a temporary folder).",
)
@click.pass_context
def demo(ctx: click.Context, workdir: str | None) -> None:
    """Synthetic inspection set -> PatchCore -> bundle -> runtime, parity and latency.

    Works offline on a fresh machine: the data is generated, the backbone weights ship in a
    package.
    """
    with tempfile.TemporaryDirectory(prefix="edgead-demo-") as tmp:
        _demo(Path(workdir or tmp), ctx.obj["quiet"])


def _demo(work: Path, quiet: bool) -> None:
    from edgead.data.synthetic import generate
    from edgead.models.patchcore import PatchCoreConfig
    from edgead.runtime.parity import run_parity
    from edgead.workflows import export_model, fit_detector

    data = generate(work / "data", n_train=30, n_test_good=10, n_test_defect=6)
    click.echo(f"synthetic inspection set: {data} (30 train, 10 good + 18 defective test images)")
    saved = fit_detector("patchcore", data, PatchCoreConfig(), quiet=quiet)
    click.echo(_metrics_table(saved))
    bundle = export_model(saved, work / "bundle", overwrite=True)
    click.echo(f"bundle: {bundle}")
    report = run_parity(bundle, data, quiet=quiet)
    click.echo(report.table())
    click.echo(report.latency.table(f"runtime latency ({report.backend}, batch 1, ms per image)"))
    torch_ms = saved.evaluation.metrics.torch_ms_per_image if saved.evaluation else None
    if torch_ms is not None:
        click.echo(
            f"PyTorch model, for comparison: {torch_ms:.1f} ms per image (median, batch 1, "
            "preprocessed input to anomaly map = backbone + search + postprocess)"
        )
    if not report.passed:
        raise EdgeadError("demo: parity failed (see the table above)")
    click.echo("demo passed: the bundle scores like the PyTorch model")


if __name__ == "__main__":  # pragma: no cover
    main()
