"""The ``edgead`` group: logging, errors as one line, interrupts, exit statuses.

Exit statuses (README, "Exit statuses"):

- 0: done.
- 1: an error (bad bundle, bad data, a failed parity check), said in one line.
- 2: a usage error (unknown option, missing argument).
- 3: ``run``: some inputs could not be read; the others were scored and written.
- 4: ``parity``: the data is not what the bundle was evaluated on (nothing to compare).
- 5: ``drift``: a drift check fired (the parts moved away from the calibration's).
- 130 / 143: interrupted by SIGINT / SIGTERM; nothing half-written is left.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from typing import Any

import click

from edgead.errors import STOPPED, EdgeadError, TerminatedError, exit_interrupted

log = logging.getLogger("edgead")

EXIT_ERROR = 1
EXIT_SKIPPED = 3
EXIT_DATA_MISMATCH = 4
EXIT_DRIFT = 5
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def _on_sigterm(signum: int, frame: Any) -> None:
    raise TerminatedError()


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while native libraries initialise (an interrupt inside ``import
    onnx`` aborted the process with exit 134 and a C++ trace); delivered right after."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def import_torch_side() -> None:
    """Import the heavy native libraries of fit and export with interrupts held."""
    with signals_blocked():
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import torch  # noqa: F401


class EdgeadGroup(click.Group):
    """Turns EdgeadError into a one-line message and a non-zero exit, and interrupts into
    exit 130 (SIGINT) or 143 (SIGTERM) with one line."""

    def invoke(self, ctx: click.Context) -> Any:
        previous = signal.getsignal(signal.SIGTERM)
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return super().invoke(ctx)
        except EdgeadError as exc:
            raise click.ClickException(str(exc)) from exc
        except KeyboardInterrupt:
            exit_interrupted(EXIT_SIGINT, f"interrupted (SIGINT): {STOPPED}")
        except TerminatedError:
            exit_interrupted(EXIT_SIGTERM, f"terminated (SIGTERM): {STOPPED}")
        finally:
            if previous in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, signal.SIG_DFL)


def set_quiet(ctx: click.Context, quiet: bool, verbose: bool = False) -> None:
    obj = ctx.ensure_object(dict)
    obj["quiet"] = obj.get("quiet", False) or quiet
    level = logging.DEBUG if verbose else logging.WARNING if obj["quiet"] else logging.INFO
    logging.getLogger().setLevel(level)


@click.group(cls=EdgeadGroup)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or info messages.")
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
@click.version_option(package_name="edgead")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """edgead: fit anomaly detectors on good images, export a verified bundle, run it lean."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader reports CPU features
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # font cache chatter
    ctx.obj = {"quiet": False, "threads": None}
    set_quiet(ctx, quiet, verbose)
