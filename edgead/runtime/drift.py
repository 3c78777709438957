"""Drift: is the line still making the parts the threshold was set on? (no torch)

A threshold keeps its false-reject promise only for parts like the good images it was set on.
A new lamp, a cleaned lens or a new batch of material moves the scores, and nothing else says
so. The monitor keeps a rolling window of the latest scores and compares it, every
``check_every`` parts once ``min_parts`` are in, with the bundle's reference (the calibration
images' scores, kept in the manifest):

- **flag rate** against the promised false-reject rate: a one-sided binomial test (scipy) of
  the window's flagged parts against the target. At a 1% target, 3 flags in 100 parts is
  p = 0.08 (no alarm); 12 is p < 1e-8 (alarm). The default ``alpha`` 0.001 is strict because a
  check runs every 25 parts: over 1,000 checks of a line that keeps its promise about one
  false alarm. This check assumes the window's parts are good, so a burst of real defects
  raises it too: the alarm says "look", and the operator's confirmations say which.
- **median shift**: how far the window's median score moved from the reference's, as a
  fraction of the way from the reference median to the threshold (0: unchanged; 1: the median
  part now sits at the threshold; negative: scores fell, e.g. a darker or blurred view, and
  defects may pass). Beyond the limit 0.5 either way it alarms, before the flag rate climbs.
- **population stability index** (PSI) of the scores, in bins cut at the reference's
  quantiles (as many as the reference supports, one per 10 images, 2 to 10). The common limit
  of 0.2 assumes large samples; a reference of 20-60 images makes PSI noisy (its expected value
  with no drift at all is about (bins - 1) x (1/reference + 1/window)), so the limit in force
  is the larger of ``psi_limit`` and the PSI that no drift exceeds with probability ``alpha``
  (chi-square approximation).

The first two break (or are about to break) the promise: they raise the **alarm** (state
``drift``). PSI alone raises a **notice** (state ``shift``): the scores moved but the promise
holds. Measured why: on mvtec3d_tire the test set's good images score higher than
validation/good, on which the threshold was set (PaDiM: PSI 2.5, median 0.30 of the way to the
threshold), while none of the 25 is flagged: the data's own next run. An alarm on every such
run would be an alarm people learn to ignore; the notice says "recalibrate at the next chance".

The defaults follow a peer's (windows of 500 parts, at least 100, checked every 25, PSI limit
0.2) and were measured with ``benchmarks/shift.py`` (README, "Drift").
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

from edgead.bundle.manifest import Normalization

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftSettings:
    """Window and limits of the drift checks (see the module's docstring for the defaults)."""

    window: int = 500
    min_parts: int = 100
    check_every: int = 25
    psi_limit: float = 0.2
    alpha: float = 0.001
    median_limit: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.min_parts <= self.window:
            raise ValueError(f"drift: min_parts {self.min_parts} must be in 1..window")
        if self.check_every < 1:
            raise ValueError(f"drift: check_every {self.check_every} must be 1 or more")
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"drift: alpha {self.alpha} must be in (0, 0.5)")
        if self.psi_limit <= 0 or self.median_limit <= 0:
            raise ValueError("drift: limits must be positive")


@dataclass(frozen=True)
class DriftReference:
    """What calibration saw: the good images' scores, the threshold and the promised rate."""

    scores: tuple[float, ...]
    threshold: float
    target_frr: float

    @classmethod
    def from_normalization(cls, norm: Normalization) -> DriftReference | None:
        """The bundle's reference; None for bundles calibrated before references were kept."""
        cal = norm.calibration
        scores = cal.scores if cal is not None else []
        if norm.image_threshold is None or len(scores) < 2:
            return None
        return cls(tuple(float(s) for s in scores), float(norm.image_threshold), cal.target_frr)

    @property
    def median(self) -> float:
        return float(np.median(self.scores))

    def bin_edges(self) -> np.ndarray:
        """Inner bin edges at the reference's quantiles: one bin per 10 images, 2 to 10."""
        bins = int(min(10, max(2, len(self.scores) // 10)))
        return np.quantile(self.scores, np.arange(1, bins) / bins)


def psi(reference: np.ndarray, window: np.ndarray, edges: np.ndarray) -> float:
    """Population stability index of ``window`` against ``reference`` in the bins ``edges``
    cut (empty bins count as half a part, the usual guard against log 0)."""
    ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    now = np.bincount(np.searchsorted(edges, window, side="right"), minlength=len(edges) + 1)
    p = np.maximum(ref, 0.5) / max(len(reference), 1)
    q = np.maximum(now, 0.5) / max(len(window), 1)
    return float(np.sum((q - p) * np.log(q / p)))


def psi_noise_limit(n_reference: int, n_window: int, bins: int, alpha: float) -> float:
    """The PSI that two samples of one distribution exceed with probability ``alpha``:
    PSI ~ (1/n_ref + 1/n_window) * chi2(bins - 1) for small differences."""
    from scipy.stats import chi2

    return float((1 / n_reference + 1 / n_window) * chi2.ppf(1 - alpha, bins - 1))


@dataclass
class DriftStatus:
    """The latest check: the window's figures, which checks fired and what to do."""

    # "off", "warming up", "ok", "shift" (a notice: the scores moved, the promise holds) or
    # "drift" (the alarm: the promise is broken or about to be)
    state: str
    parts: int = 0
    flagged: int = 0
    flag_rate: float | None = None
    target_frr: float | None = None
    flag_p_value: float | None = None
    psi: float | None = None
    psi_limit: float | None = None
    median_shift: float | None = None
    median_limit: float | None = None
    alarms: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    advice: str = ""
    checked_at_part: int = 0  # the part count (since start) of this check

    def to_dict(self) -> dict:
        return asdict(self)


def check_window(
    ref: DriftReference, window: np.ndarray, flagged: int, settings: DriftSettings
) -> DriftStatus:
    """The three checks on one window of scores (``flagged``: how many were judged anomalous)."""
    from scipy.stats import binomtest

    n = len(window)
    p_value = float(binomtest(flagged, n, ref.target_frr, alternative="greater").pvalue)
    reference = np.asarray(ref.scores)
    edges = ref.bin_edges()
    value = psi(reference, window, edges)
    limit = max(
        settings.psi_limit, psi_noise_limit(len(reference), n, len(edges) + 1, settings.alpha)
    )
    span = ref.threshold - ref.median
    shift = (float(np.median(window)) - ref.median) / span if span > 0 else 0.0
    alarms, notices = [], []
    if p_value < settings.alpha:
        alarms.append(
            f"flag rate {100 * flagged / n:.1f}% over the promised {100 * ref.target_frr:.1f}% "
            f"({flagged} of {n}, binomial p = {p_value:.1e})"
        )
    if abs(shift) > settings.median_limit:
        direction = (
            "towards the threshold (false rejects to come)"
            if shift > 0
            else "down, away from the threshold (defects may pass)"
        )
        alarms.append(
            f"median score moved {direction}: {shift:+.2f} of the way, limit "
            f"{settings.median_limit:.2f}"
        )
    if value > limit:
        notices.append(f"score distribution moved (PSI {value:.2f} > {limit:.2f})")
    advice = ""
    if alarms:
        advice = (
            "the parts or the view changed since calibration: check the camera, lighting and "
            "material; if the parts are good, confirm some and recalibrate "
            "(`edgead calibrate BUNDLE CONFIRMED_GOOD_DIR`)"
        )
    elif notices:
        advice = (
            "the scores moved since calibration but the promise holds: recalibrate on the "
            "line's good parts at the next chance"
        )
    return DriftStatus(
        "drift" if alarms else "shift" if notices else "ok",
        parts=n,
        flagged=flagged,
        flag_rate=flagged / n,
        target_frr=ref.target_frr,
        flag_p_value=p_value,
        psi=value,
        psi_limit=limit,
        median_shift=shift,
        median_limit=settings.median_limit,
        alarms=alarms,
        notices=notices,
        advice=advice,
    )


class DriftMonitor:
    """A rolling window of scores and verdicts, checked against the bundle's reference.

    Thread-safe: ``serve`` adds from its inference thread and reads from the web server's.
    ``add`` costs an append per part; the checks (a few hundred microseconds) run every
    ``check_every`` parts."""

    def __init__(self, reference: DriftReference | None, settings: DriftSettings | None = None):
        self.reference = reference
        self.settings = settings or DriftSettings()
        self._scores: deque[float] = deque(maxlen=self.settings.window)
        self._flags: deque[bool] = deque(maxlen=self.settings.window)
        self._lock = threading.Lock()
        self.parts = 0
        self._status = DriftStatus("off" if reference is None else "warming up")

    @classmethod
    def for_normalization(
        cls, norm: Normalization, settings: DriftSettings | None = None, name: str = ""
    ) -> DriftMonitor:
        ref = DriftReference.from_normalization(norm)
        if ref is None:
            log.warning(
                "%sthe bundle keeps no reference of its calibration scores (calibrated by an "
                "older edgead): drift checks are off; `edgead calibrate` adds one",
                f"[{name}] " if name else "",
            )
        return cls(ref, settings)

    @property
    def enabled(self) -> bool:
        return self.reference is not None

    def add(self, score: float, flagged: bool) -> DriftStatus | None:
        """Add one part; returns the new status when a check ran, else None."""
        if self.reference is None or not math.isfinite(score):
            return None
        with self._lock:
            self._scores.append(score)
            self._flags.append(flagged)
            self.parts += 1
            n = len(self._scores)
            if n < self.settings.min_parts:
                self._status = DriftStatus("warming up", parts=n)
                return None
            if (self.parts - self.settings.min_parts) % self.settings.check_every:
                return None
            window = np.fromiter(self._scores, np.float64, n)
            flagged_n = sum(self._flags)
        status = check_window(self.reference, window, flagged_n, self.settings)
        status.checked_at_part = self.parts
        with self._lock:
            self._status = status
        return status

    def status(self) -> DriftStatus:
        with self._lock:
            return self._status
