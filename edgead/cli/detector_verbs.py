"""``edgead fit <detector>`` and ``edgead export <detector>``, made from the detector registry:
the CLI holds no per-detector knowledge. torch is imported only when one of them runs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from edgead.cli.main import EdgeadGroup, import_torch_side
from edgead.cli.options import MAX_PIXELS, QUIET, THREADS
from edgead.cli.report import metrics_table
from edgead.detectors.registry import Detector, apply_options, detector_names, get_detector
from edgead.errors import EdgeadError

log = logging.getLogger("edgead")


class DetectorVerb(EdgeadGroup):
    """A group whose subcommands are the registered detectors (built on demand)."""

    def __init__(self, *args: Any, make: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.make = make

    def list_commands(self, ctx: click.Context) -> list[str]:
        return detector_names()

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in detector_names():
            return None
        return self.make(get_detector(name))


def check_before_fitting(data: str | None, out: str, overwrite: bool, kw: dict) -> None:
    """What can be checked before minutes of fitting: the output, the data's layout, rates."""
    from edgead.bundle.io import remove_stale_staging
    from edgead.data.holdout import parse_holdout_by
    from edgead.metrics.calibration import check_confidence, check_target

    if Path(out).exists() and not overwrite:
        raise EdgeadError(f"{out}: already exists; pass --overwrite to replace it")
    remove_stale_staging(Path(out))
    check_target(kw["target_frr"])
    check_confidence(kw["confidence"])
    parse_holdout_by(kw["holdout_by"])
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


def _fit(ctx: click.Context, detector: Detector, data: str, out: str, kw: dict) -> Any:
    from edgead.threads import configure

    import_torch_side()
    configure(ctx.obj.get("threads"))  # now that torch is loaded: its pool too
    from edgead.workflows import fit_detector

    config = detector.config_from_options(kw)
    checkpoint = _default_checkpoint(config, out)
    saved = fit_detector(
        detector.name,
        data,
        config,
        kw["device"],
        ctx.obj["quiet"],
        kw["target_frr"],
        kw["holdout"],
        kw["holdout_by"],
        kw["confidence"],
    )
    click.echo(metrics_table(saved))
    return saved, checkpoint


DATA_OPTION = click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False),
    help="MVTec-layout category folder (train/good, optional validation/good and test/), or "
    "a plain folder of good images.",
)


def make_fit(detector: Detector) -> click.Command:
    from edgead.detectors.options import FIT_OPTIONS

    def fit_command(ctx: click.Context, data: str, out: str, overwrite: bool, **kw: Any) -> None:
        check_before_fitting(data, out, overwrite, kw)
        saved, checkpoint = _fit(ctx, detector, data, out, kw)
        from edgead.components.saved import save

        save(out, saved, overwrite)
        _done_with_checkpoint(checkpoint)
        click.echo(f"saved model: {out}")

    fit_command.__doc__ = f"Fit {detector.name} ({detector.summary}) and evaluate it."
    options = [
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
        *FIT_OPTIONS,
        *detector.fit_options(),
        THREADS,
        MAX_PIXELS,
        QUIET,
    ]
    return click.command(detector.name, short_help=detector.summary)(
        apply_options(options, click.pass_context(fit_command))
    )


def make_export(detector: Detector) -> click.Command:
    from edgead.detectors.options import EXPORT_OPTIONS, FIT_OPTIONS

    export_names = set(detector.all_export_option_names())

    def export_command(
        ctx: click.Context,
        data: str | None,
        model: str | None,
        out: str,
        overwrite: bool,
        **kw: Any,
    ) -> None:
        if (data is None) == (model is None):
            raise click.UsageError("give exactly one of --data (fit and export) or --model")
        int8 = kw.pop("int8")
        if int8:
            if data is None:
                raise click.UsageError("--int8 calibrates and gates on --data: give --data")
            from edgead.export.quantize import Int8Settings

            Int8Settings().check()  # the quantizer and OpenVINO installed, before the fit
        check_before_fitting(data, out, overwrite, kw)
        checkpoint = None
        if model is not None:
            import_torch_side()
            from edgead.workflows import load_model

            saved = load_model(model)
            if saved.detector != detector.name:
                raise EdgeadError(
                    f"{model}: a {saved.detector} model, not {detector.name}; "
                    f"use `edgead export {saved.detector} --model {model}`"
                )
        else:
            saved, checkpoint = _fit(ctx, detector, data, out, kw)
            from edgead.many import fingerprint

            # what the bundle was fitted from: `export-many` skips a product that holds its own
            saved.fit_report["fingerprint"] = fingerprint(detector.name, data, {**kw, "int8": int8})
        from edgead.workflows import export_model

        export_model(saved, out, overwrite, **{k: v for k, v in kw.items() if k in export_names})
        _done_with_checkpoint(checkpoint)
        if int8:
            _add_int8(out, data)
        click.echo(f"bundle written: {out}")
        _say_runtime(out)

    export_command.__doc__ = (
        f"Write a {detector.name} bundle ({detector.summary}): graphs, scoring artifacts, "
        "thresholds, manifest."
    )
    options = [
        DATA_OPTION,
        click.option(
            "--model",
            type=click.Path(exists=True, file_okay=False),
            help=f"A model saved by `edgead fit {detector.name}`.",
        ),
        click.option("--out", required=True, type=click.Path(), help="Bundle folder to write."),
        click.option("--overwrite", is_flag=True, help="Replace --out if it exists."),
        click.option(
            "--int8",
            is_flag=True,
            help="Also add an INT8 graph (`edgead quantize` with its defaults): calibrated on "
            "good training images, written only if it passes parity on the test set.",
        ),
        *EXPORT_OPTIONS,
        *detector.export_options(),
        *FIT_OPTIONS,
        *detector.fit_options(),
        THREADS,
        MAX_PIXELS,
        QUIET,
    ]
    return click.command(detector.name, short_help=detector.summary)(
        apply_options(options, click.pass_context(export_command))
    )


fit = DetectorVerb(
    "fit",
    make=make_fit,
    help="Fit a detector on good images, set its threshold on held-out good images, and "
    "evaluate it on the test set.",
)
export = DetectorVerb(
    "export",
    make=make_export,
    help="Export a detector to a bundle (fitting first when given --data).",
)


def _add_int8(out: str, data: str) -> None:
    """The INT8 graph through its gate; a refusal leaves the bundle as exported and says why."""
    from edgead.export.quantize import Int8Settings, add_int8_graph

    try:
        add_int8_graph(out, data, Int8Settings())
    except EdgeadError as exc:
        click.echo(f"warning: no INT8 graph: {exc}", err=True)
    else:
        click.echo("INT8 graph added (passed its parity gate on onnxruntime and openvino)")


def _say_runtime(out: str) -> None:
    from edgead.bundle.io import read_manifest

    choice = read_manifest(out).runtime
    if choice:
        measured = ", ".join(f"{k} {v:.2f} ms" for k, v in choice["graph_p50_ms"].items())
        click.echo(
            f"runs by default as {choice['backend']} {choice['precision']} (holds parity here; "
            "another backend or a lower precision only where 10% faster; graph p50: "
            f"{measured})"
        )
