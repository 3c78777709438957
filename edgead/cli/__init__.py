"""The ``edgead`` command line: one module per verb, shared option groups in ``options``,
``fit``/``export`` made from the detector registry. torch is imported only inside fit and
export (and demo)."""

from edgead.cli import (  # noqa: F401
    bench,
    calibrate,
    demo,
    drift,
    engine,
    many,
    parity,
    quantize,
    run,
    serve,
    sign,
    triton,
)
from edgead.cli.detector_verbs import export, fit
from edgead.cli.main import main

main.add_command(fit)
main.add_command(export)

__all__ = ["main"]
