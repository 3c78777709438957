"""Which good images the fit leaves out, to set the threshold on (no torch).

A threshold set on images drawn at random from the runs the detector was fitted on is set on
near-duplicates of fitted images: they score lower than the parts of the next run will, and the
false-reject rate promised on them is not kept (the calibration's interval covers sampling
noise, not a new run). So the held-out images are the *newest* ones, as a line's next parts
are newer than everything fitted, and where the images come in runs, whole runs:

- ``auto`` (default): whole runs when the images show them, else the newest by name. Runs are
  read from subfolders of the training folder (``train/good/run3/*.png``), else from file-name
  prefixes (the name less its trailing number: ``2026-05-01_0007.png`` is of run
  ``2026-05-01_``); they count as runs when there are 3 or more, each with 2 or more images.
  The newest runs (last in natural name order) are held out until at least the fraction is
  reached, never more than half the images (else: the newest images).
- ``newest``: the last images in natural name order (``img9`` before ``img10``).
- ``mtime``: the last images by file modification time (for cameras that name files by a
  counter that restarts; copies lose their times, so this is never the default).
- ``group:REGEX``: runs named by a regular expression searched in the path relative to the
  training folder (its first group if it has one, else the whole match); the newest runs held
  out whole. Files the expression does not match are an error (nothing is silently fitted).
- ``random``: a seeded random fraction (what earlier versions did; measured worse, README
  "Thresholds").
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgead.errors import DatasetError

HOLDOUT_BY = ("auto", "newest", "mtime", "random", "group:REGEX")
DEFAULT_HOLDOUT_BY = "auto"
MIN_RUNS = 3
MIN_RUN_IMAGES = 2
MAX_HELD_SHARE = 0.5  # never hold out more than half of the images to keep runs whole

_DIGITS = re.compile(r"(\d+)")
_TRAILING_NUMBER = re.compile(r"[-_. ]*\d+$")


def natural_key(text: str) -> list:
    """Sort key that orders embedded numbers by value: ``img9`` before ``img10``."""
    return [int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(text)]


@dataclass(frozen=True)
class HoldoutBy:
    kind: str  # auto, newest, mtime, random, group
    pattern: re.Pattern | None = None

    def __str__(self) -> str:
        return f"group:{self.pattern.pattern}" if self.pattern is not None else self.kind


def parse_holdout_by(text: str) -> HoldoutBy:
    """``auto``, ``newest``, ``mtime``, ``random`` or ``group:REGEX``; errors say which."""
    if text.startswith("group:"):
        try:
            pattern = re.compile(text[len("group:") :])
        except re.error as exc:
            raise DatasetError(f"--holdout-by {text}: not a regular expression ({exc})") from exc
        if not pattern.pattern:
            raise DatasetError("--holdout-by group: needs a regular expression, e.g. group:run\\d+")
        return HoldoutBy("group", pattern)
    if text not in HOLDOUT_BY[:-1]:
        raise DatasetError(
            f"--holdout-by {text}: expected one of auto, newest, mtime, random, group:REGEX"
        )
    return HoldoutBy(text)


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _runs_by(paths: list[Path], key: Callable[[Path], str | None]) -> dict[str, list[Path]]:
    runs: dict[str, list[Path]] = {}
    for p in paths:
        k = key(p)
        if k is None:
            return {}
        runs.setdefault(k, []).append(p)
    return runs


def _looks_like_runs(runs: dict[str, list[Path]]) -> bool:
    return len(runs) >= MIN_RUNS and all(len(v) >= MIN_RUN_IMAGES for v in runs.values())


def detect_runs(paths: list[Path], root: Path) -> tuple[dict[str, list[Path]], str]:
    """Runs shown by the images' subfolders or file-name prefixes ({} when neither shows any)."""
    by_folder = _runs_by(paths, lambda p: str(Path(_rel(p, root)).parent))
    if _looks_like_runs(by_folder):
        return by_folder, "subfolders"
    by_prefix = _runs_by(paths, lambda p: _TRAILING_NUMBER.sub("", p.stem) or None)
    if _looks_like_runs(by_prefix):
        return by_prefix, "file-name prefixes"
    return {}, ""


def _newest_runs(runs: dict[str, list[Path]], n_out: int) -> list[str]:
    picked, held = [], 0
    for name in sorted(runs, key=natural_key, reverse=True):
        if held >= n_out:
            break
        picked.append(name)
        held += len(runs[name])
    return picked


def _split_runs(
    paths: list[Path], runs: dict[str, list[Path]], n_out: int, what: str
) -> tuple[list[Path], list[Path], str] | None:
    """Hold out the newest whole runs (None when that would take more than half)."""
    picked = _newest_runs(runs, n_out)
    held_set = {p for name in picked for p in runs[name]}
    if len(held_set) > MAX_HELD_SHARE * len(paths) or len(held_set) == len(paths):
        return None
    fit = [p for p in paths if p not in held_set]
    held = [p for p in paths if p in held_set]
    names = ", ".join(sorted(picked, key=natural_key))
    return fit, held, f"the newest of {len(runs)} runs by {what} ({names})"


def split_holdout_paths(
    paths: list[Path],
    fraction: float,
    by: str | HoldoutBy = DEFAULT_HOLDOUT_BY,
    seed: int = 0,
    root: Path | None = None,
    where: str = "train/good",
) -> tuple[list[Path], list[Path], str]:
    """(images to fit on, held-out images, where the held-out ones came from)."""
    import numpy as np

    if not 0 <= fraction < 1:
        raise DatasetError(f"--holdout {fraction}: expected a fraction in [0, 1), e.g. 0.1")
    by = parse_holdout_by(by) if isinstance(by, str) else by
    n_out = min(len(paths) - 1, max(1, round(fraction * len(paths)))) if fraction > 0 else 0
    if n_out <= 0:
        return list(paths), [], "none"
    root = root or Path(os.path.commonpath([str(p.parent) for p in paths]))

    def done(fit: list[Path], held: list[Path], how: str) -> tuple[list, list, str]:
        return fit, held, f"{len(held)} images of {where} held out of the fit: {how}"

    if by.kind == "group":
        runs: dict[str, list[Path]] = {}
        unmatched = []
        for p in paths:
            m = by.pattern.search(_rel(p, root))
            if m is None:
                unmatched.append(_rel(p, root))
                continue
            runs.setdefault(m.group(1) if m.groups() else m.group(0), []).append(p)
        if unmatched:
            raise DatasetError(
                f"--holdout-by {by}: {len(unmatched)} of {len(paths)} images of {where} match no "
                f"run (e.g. {unmatched[0]})"
            )
        if len(runs) < 2:
            raise DatasetError(
                f"--holdout-by {by}: all images of {where} are one run ({next(iter(runs))}); "
                "whole runs can be held out only when there are two or more"
            )
        picked = _newest_runs(runs, n_out)
        if len(picked) == len(runs):
            picked = picked[:-1]  # keep one run to fit on
        held_set = {p for name in picked for p in runs[name]}
        names = ", ".join(sorted(picked, key=natural_key))
        return done(
            [p for p in paths if p not in held_set],
            [p for p in paths if p in held_set],
            f"the newest {len(picked)} of {len(runs)} runs by {by} ({names})",
        )
    if by.kind == "auto":
        runs, what = detect_runs(paths, root)
        if runs:
            split = _split_runs(paths, runs, n_out, what)
            if split is not None:
                return done(*split)
        by = HoldoutBy("newest")
    if by.kind == "random":
        picked = set(np.random.default_rng(seed).permutation(len(paths))[:n_out].tolist())
        fit = [p for i, p in enumerate(paths) if i not in picked]
        held = [p for i, p in enumerate(paths) if i in picked]
        return done(fit, held, f"at random ({fraction:.0%}, seed {seed})")
    if by.kind == "mtime":
        ordered = sorted(paths, key=lambda p: (p.stat().st_mtime_ns, natural_key(_rel(p, root))))
        how = f"the newest {fraction:.0%} by modification time"
    else:
        ordered = sorted(paths, key=lambda p: natural_key(_rel(p, root)))
        how = f"the newest {fraction:.0%} by name ({_rel(ordered[-n_out], root)} on)"
    held_set = set(ordered[-n_out:])
    return done([p for p in paths if p not in held_set], [p for p in paths if p in held_set], how)
