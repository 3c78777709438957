"""The ``edgead`` program: signal handling from the first instruction, then the command line.

SIGTERM becomes an exception from the start (before the command line's modules load), so an
interrupt at any moment ends with one line and exit 130 (SIGINT) or 143 (SIGTERM), never with
a trace or a native abort.
"""

from __future__ import annotations

import signal

from edgead.errors import STOPPED, TerminatedError, exit_interrupted

EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def _on_sigterm(signum: int, frame: object) -> None:
    raise TerminatedError()


def run() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        from edgead.cli import main

        main()
    except KeyboardInterrupt:
        exit_interrupted(EXIT_SIGINT, f"interrupted (SIGINT): {STOPPED}")
    except TerminatedError:
        exit_interrupted(EXIT_SIGTERM, f"terminated (SIGTERM): {STOPPED}")
