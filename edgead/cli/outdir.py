"""One rule for the folders verbs write into (``--out``): a folder that exists and is not
empty is refused unless ``--overwrite`` (which removes what the verb writes there, and only
that) or, where a verb can add to earlier results, ``--append``. The check runs before any
work; the removal only once the work can start (a bundle that does not open loses nothing)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import click

from edgead.errors import EdgeadError

OVERWRITE = click.option(
    "--overwrite", is_flag=True, help="--out exists: replace what this verb wrote there."
)
APPEND = click.option(
    "--append", is_flag=True, help="--out exists: add to the results already there."
)


def check_out(out: str | Path, overwrite: bool, append: bool | None = None) -> Path:
    """Refuse a non-empty ``out`` without ``overwrite`` or ``append`` (``append`` None: the
    verb cannot append)."""
    out = Path(out)
    if overwrite and append:
        raise EdgeadError("--overwrite and --append: give one")
    if out.exists() and not out.is_dir():
        raise EdgeadError(f"{out}: exists and is not a folder")
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if present and not (overwrite or append):
        shown = ", ".join(present[:4]) + (", ..." if len(present) > 4 else "")
        raise EdgeadError(
            f"{out}: not empty ({shown}); --overwrite replaces what this verb wrote there"
            + (", --append adds to it" if append is not None else "")
        )
    return out


def clear_owned(out: Path, owned: Sequence[str]) -> None:
    """Remove what a verb writes in ``out`` (for ``--overwrite``), nothing else."""
    for name in owned:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
