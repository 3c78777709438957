"""Errors raised at the boundary (files, user input, bundles, devices).

Each message names the thing that is wrong and, where there is one, the command that fixes it.
The CLI prints them as a single line and exits non-zero.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path


class EdgeadError(Exception):
    """Base class for errors a user can act on."""


class ImageDecodeError(EdgeadError):
    """An image file could not be read or decoded."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DatasetError(EdgeadError):
    """A dataset folder does not have the expected layout."""


class BundleError(EdgeadError):
    """A bundle is missing, incomplete, tampered with or incompatible."""


class ParityError(EdgeadError):
    """Parity could not be computed (not: parity failed; that is a result, not an error)."""


class DataMismatchError(ParityError):
    """``parity`` on data that is not what the bundle was evaluated on: nothing to compare."""


class BackendError(EdgeadError):
    """A runtime backend cannot be created or was given inputs that do not fit its graph."""


class TerminatedError(BaseException):
    """SIGTERM, raised in the main thread (``edgead.entry``) so that ``finally`` blocks run:
    staging folders are removed, nothing half-written is left. A BaseException, like
    KeyboardInterrupt: a handler of ``Exception`` around a library call (loading a graph, say)
    must not turn a SIGTERM into that call's error message."""


STOPPED = "stopped, nothing half-written left"


def exit_interrupted(code: int, message: str) -> None:
    """End an interrupted command with one line and ``code`` (130 SIGINT, 143 SIGTERM).

    The ``finally`` blocks have run by now (staging folders removed). Exit handlers run here,
    then the process ends without the interpreter's finalisation: a KeyboardInterrupt that
    once passed through a C extension's embedded Python leaves CPython set to re-raise SIGINT
    at exit, which turned exit 130 into death by signal (-2) in about one run in five."""
    import atexit
    import os

    sys.stderr.write(message + "\n")
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
