"""Option groups the verbs share (Polygraphy's argument groups): each verb composes the groups
it needs, so a spelling, a default and a help text exist once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from edgead.detectors.registry import apply_options
from edgead.runtime.search import SEARCHES
from edgead.runtime.settings import RuntimeSettings

BACKENDS = ("onnxruntime", "openvino", "tensorrt", "torch")


def _quiet(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    from edgead.cli.main import set_quiet

    if value:
        set_quiet(ctx, True)
    return value


def _max_pixels(ctx: click.Context, param: click.Parameter, value: int) -> int:
    from edgead.data.images import set_max_pixels

    try:
        return set_max_pixels(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    from edgead.threads import configure

    if value is not None and value < 1:
        raise click.BadParameter("expected 1 or more")
    ctx.ensure_object(dict)["threads"] = configure(value)
    return value


QUIET = click.option(
    "--quiet",
    "-q",
    is_flag=True,
    expose_value=False,
    callback=_quiet,
    help="No progress bars or info messages (also before the verb).",
)
THREADS = click.option(
    "--threads",
    type=int,
    default=None,
    expose_value=False,
    callback=_threads,
    help="Threads for onnxruntime, faiss, BLAS, numba and torch alike [default: the cores "
    "this process may use].",
)
MAX_PIXELS = click.option(
    "--max-pixels",
    type=int,
    default=64_000_000,
    show_default=True,
    expose_value=False,
    callback=_max_pixels,
    help="Images declaring more pixels are refused from their header, before decoding "
    "(reported and skipped; a decompression bomb costs nothing).",
)
THRESHOLD = click.option(
    "--threshold",
    type=float,
    default=None,
    help="Image-score threshold of the verdict, instead of the bundle's calibrated one.",
)


def _rules(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if param.name == "min_region_area" and value < 0:
        raise click.BadParameter("expected 0 or more pixels")
    return value


MIN_REGION_AREA = click.option(
    "--min-region-area",
    type=int,
    default=0,
    show_default=True,
    callback=_rules,
    help="Defect regions smaller than this many pixels of the original image are dropped.",
)
REQUIRE_REGION = click.option(
    "--require-region/--no-require-region",
    default=False,
    show_default=True,
    help="Anomalous only when the score is over the threshold and a region of at least "
    "--min-region-area is left.",
)
REGION_OPTIONS = [MIN_REGION_AREA, REQUIRE_REGION]


def region_options(f: Callable) -> Callable:
    return apply_options(REGION_OPTIONS, f)


def _drift_settings(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Collects the drift options into one DriftSettings (``drift_settings`` in the verb)."""
    from edgead.runtime.drift import DriftSettings

    obj = ctx.ensure_object(dict)
    given = obj.setdefault("_drift", {})
    given[param.name] = value
    if len(given) == len(DRIFT_OPTIONS):
        try:
            obj["drift"] = DriftSettings(
                window=given["drift_window"],
                min_parts=given["drift_min_parts"],
                check_every=given["drift_every"],
                psi_limit=given["drift_psi_limit"],
                alpha=given["drift_alpha"],
                median_limit=given["drift_median_limit"],
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
    return value


def _drift_option(flag: str, default: Any, kind: type, text: str) -> Callable:
    return click.option(
        flag,
        default=default,
        type=kind,
        show_default=True,
        expose_value=False,
        callback=_drift_settings,
        help=text,
    )


DRIFT_OPTIONS = [
    _drift_option("--drift-window", 500, int, "Drift checks: parts in the rolling window."),
    _drift_option("--drift-min-parts", 100, int, "Drift checks start after this many parts."),
    _drift_option("--drift-every", 25, int, "Drift checks run every this many parts."),
    _drift_option(
        "--drift-psi-limit", 0.2, float, "Population stability index of the scores that alarms."
    ),
    _drift_option(
        "--drift-alpha",
        0.001,
        float,
        "Significance of the flag-rate test against the promised false-reject rate.",
    ),
    _drift_option(
        "--drift-median-limit",
        0.5,
        float,
        "Median score shift that alarms, as a fraction of the way to the threshold.",
    ),
]


def drift_options(f: Callable) -> Callable:
    return apply_options(DRIFT_OPTIONS, f)


GRAY = click.option(
    "--gray",
    type=click.Choice(["auto", "reject", "convert", "accept"]),
    default="auto",
    show_default=True,
    help="An image whose colour channels differ from the training images': auto refuses a "
    "grayscale image into a colour model (reported and skipped, exit 3) and converts a colour "
    "image into a grayscale one; reject refuses both, convert converts both, accept scores "
    "either as decoded (with a note).",
)
REQUIRE_SIGNATURE = click.option(
    "--require-signature",
    "public_key",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Run only a bundle signed with the private key of this public key (PEM; "
    "`edgead keygen`, `edgead sign`).",
)

BACKEND = click.option(
    "--backend",
    type=click.Choice(("auto", *BACKENDS)),
    default="auto",
    show_default=True,
    help="What runs the graph: auto (the bundle's measured default where installed, else "
    "onnxruntime), onnxruntime (CPU, or its CUDA provider), openvino (Intel "
    "CPU/GPU/NPU; `pip install 'edgead[openvino]'`), tensorrt (engines from `edgead "
    "build-engine`), torch (the --torch-graph program).",
)
DEVICE = click.option(
    "--device",
    type=click.Choice(["cpu", "cuda", "gpu", "npu", "auto"], case_sensitive=False),
    default=None,
    help="Where the backend runs [default: the backend's: onnxruntime cpu, openvino CPU, "
    "tensorrt cuda, torch cuda when present]. gpu, npu and auto are OpenVINO's devices.",
)
PRECISION = click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "fp16", "int8"]),
    default="auto",
    show_default=True,
    help="Which of the bundle's graphs to run: auto (the bundle's measured default with its "
    "backend, else fp32), or int8 (the graph `edgead quantize` added, on the backends it "
    "passed parity on).",
)
SEARCH = click.option(
    "--search",
    type=click.Choice(list(SEARCHES)),
    default="auto",
    show_default=True,
    help="Where kNN detectors search their memory banks: auto = on the GPU (faiss-gpu, else "
    "torch matrix products) when the backend runs on one, else what export measured fastest "
    "on the CPU (faiss index or numpy gemm).",
)

# every verb that runs a bundle
RUNTIME = [BACKEND, PRECISION, SEARCH, DEVICE, THREADS, MAX_PIXELS, QUIET]


def runtime_options(f: Callable) -> Callable:
    return apply_options(RUNTIME, f)


def _listed(choices: tuple[str, ...]) -> Callable:
    def check(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
        items = [v.strip() for v in value.split(",") if v.strip()]
        wrong = [v for v in items if v not in choices]
        if wrong or not items:
            raise click.BadParameter(
                f"{value!r}: one or more of {', '.join(choices)}, comma-separated"
            )
        return list(dict.fromkeys(items))

    return check


# bench: several backends and precisions, measured side by side in one run
BACKEND_LIST = click.option(
    "--backend",
    default="auto",
    show_default=True,
    callback=_listed(("auto", *BACKENDS)),
    help="What runs the graph (see `edgead run --help`); several, comma-separated, are "
    "measured side by side.",
)
PRECISION_LIST = click.option(
    "--precision",
    default="auto",
    show_default=True,
    callback=_listed(("auto", "fp32", "fp16", "int8")),
    help="Which of the bundle's graphs to run; several, comma-separated, are measured side "
    "by side.",
)


def compare_options(f: Callable) -> Callable:
    return apply_options(
        [BACKEND_LIST, PRECISION_LIST, SEARCH, DEVICE, THREADS, MAX_PIXELS, QUIET], f
    )


# the verbs' parameters that are RuntimeSettings fields under the same name
_SETTINGS_PARAMS = ("backend", "device", "precision", "search", "threshold", "gray", "public_key")


def runtime_settings(ctx: click.Context, **fields: Any) -> RuntimeSettings:
    """The RuntimeSettings of the verb's options (``ctx.params``): backend, device, precision,
    search, threshold, gray policy, public key, the region rules, and ``--threads`` from the
    context (the group or the verb put it there); ``fields`` replace or add to them."""
    given = {k: ctx.params[k] for k in _SETTINGS_PARAMS if k in ctx.params}
    if "min_region_area" in ctx.params:
        from edgead.runtime.regions import VerdictRules

        given["rules"] = VerdictRules(
            ctx.params["min_region_area"], ctx.params.get("require_region", False)
        )
    return RuntimeSettings(threads=(ctx.obj or {}).get("threads"), **{**given, **fields})
