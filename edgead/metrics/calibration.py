"""Thresholds from good images at a false-reject rate the user chooses (no torch).

A line has many good parts and few labelled defects, so the verdict's threshold comes from the
scores of held-out good images, never from a labelled test set: it is set where an estimated
fraction ``target_frr`` of good parts would score above it.

**A bound, not a point estimate.** A threshold set where the *estimated* rate equals the
target is exceeded half the time by sampling noise alone; on a line that means more false
rejects than promised. So the threshold is the lowest one whose upper confidence bound
(``confidence``, default 95%) of the false-reject rate is at or below the target:

- with ``images_for_a_bound(target, confidence)`` good images or more (299 at 1% and 95%) no
  model is needed: the rate above the k-th smallest of n scores is Beta(n - k + 1, k)
  distributed for any continuous score distribution, and the smallest k whose bound holds is
  taken (a one-sided distribution-free tolerance limit);
- with fewer (the 20-70 a category usually has) the bound rests on a model of the score tail.
  Every detector's image score is a maximum over many patches or pixels (PatchCore, PaDiM,
  EfficientAD: map maxima) or a mean of nearest distances (SPADE), and the maximum of many
  light-tailed values follows a Gumbel distribution (extreme value theory,
  Fisher-Tippett-Gnedenko). A Gumbel is fitted by maximum likelihood (scipy), and the
  threshold is the exact ``confidence`` upper bound of its (1 - target) quantile from the
  Gumbel's pivotal quantity (simulated once per sample size). Where that falls below the
  largest held-out score although fewer than 1/target images were held out, the tail is
  heavier than the fit and the threshold is raised to that score. A warning says that the
  bound rests on the model and how many images would make it model-free;
- with fewer than ``MIN_IMAGES`` (20) a bound sits so far out that it passes every defect: the
  threshold is the point estimate instead, said as such, with the bound it actually has.

The record keeps the target, the point estimate of the rate at the threshold, its bound and
90% interval, the number of images and the threshold the point estimate alone would have set.

The bound covers the sampling noise of the held-out images, not a change of the parts: held-out
images taken from the same runs as the fitted ones promise less than a new run keeps. That is
what the held-out choice (``edgead.data.datasets.split_holdout``: newest images or whole runs)
and the drift monitor (``edgead.runtime.drift``) are for. The pixel threshold is the same
estimate on the maxima of the held-out anomaly maps: a good image shows any region above it
with probability ``target`` at most.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence

import numpy as np

from edgead.bundle.manifest import Normalization
from edgead.bundle.records import DEFAULT_CONFIDENCE, CalibrationRecord, Threshold
from edgead.errors import EdgeadError
from edgead.metrics.verdicts import Verdicts, verdicts_at

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_TARGET_FRR",
    "CalibrationRecord",
    "Threshold",
    "Verdicts",
    "calibration_record",
    "normalization_from",
    "threshold_at_frr",
    "verdicts_at",
]

log = logging.getLogger(__name__)

DEFAULT_TARGET_FRR = 0.01
MIN_IMAGES = 20  # fewer held-out good images: no bound, the point estimate (with a warning)
PIVOT_SAMPLES = 2000  # simulated fits behind the Gumbel bound (about 1 s per sample size)


def images_for_a_bound(target_frr: float, confidence: float = DEFAULT_CONFIDENCE) -> int:
    """Good images needed to bound a false-reject rate with no model of the score tail: the
    largest of n scores is a threshold whose rate is <= target with the given confidence once
    1 - (1 - target)^n >= confidence (299 images at 1% and 95%)."""
    return int(np.ceil(np.log(1 - confidence) / np.log(1 - target_frr)))


def check_target(target_frr: float) -> float:
    if not 0 < target_frr < 0.5:
        raise EdgeadError(f"--target-frr {target_frr}: expected a rate in (0, 0.5), e.g. 0.01")
    return float(target_frr)


def check_confidence(confidence: float) -> float:
    if not 0.5 <= confidence < 1:
        raise EdgeadError(
            f"--confidence {confidence}: expected a level in [0.5, 1), e.g. 0.95 (0.5: the "
            "point estimate)"
        )
    return float(confidence)


def _order_statistic(x: np.ndarray, target_frr: float, confidence: float) -> Threshold:
    """No model: the smallest order statistic whose false-reject rate is <= target with the
    given confidence. The rate above the k-th smallest of n scores is Beta(n - k + 1, k)
    distributed for any continuous score distribution (a one-sided tolerance limit)."""
    from scipy import stats

    x = np.sort(x)
    n = len(x)
    k = np.arange(1, n + 1)
    # P(rate above x_(k) <= target) = Beta(n - k + 1, k).cdf(target)
    covered = stats.beta.cdf(target_frr, n - k + 1, k)
    ok = np.flatnonzero(covered >= confidence)
    k_pick = int(ok[0]) + 1  # exists: n >= images_for_a_bound makes k = n qualify
    value = float(x[k_pick - 1])
    a, b = n - k_pick + 1, k_pick
    point = float(np.quantile(x, 1 - target_frr, method="higher"))
    return Threshold(
        value,
        "order statistic",
        n,
        target_frr,
        estimated_frr=float(a / (a + b)),
        frr_interval=(float(stats.beta.ppf(0.05, a, b)), float(stats.beta.ppf(0.95, a, b))),
        confidence=confidence,
        frr_bound=float(stats.beta.ppf(confidence, a, b)),
        point_value=point,
        images_needed=images_for_a_bound(target_frr, confidence),
    )


@functools.lru_cache(maxsize=64)
def _standard_gumbel_fits(n: int) -> np.ndarray:
    """(loc, scale) fitted to ``PIVOT_SAMPLES`` samples of n standard Gumbel scores (seeded):
    the sampling distribution of the fit, which for a location-scale family is the same for
    every loc and scale."""
    from scipy import stats

    rng = np.random.default_rng(n)
    return np.array([stats.gumbel_r.fit(rng.gumbel(0.0, 1.0, n)) for _ in range(PIVOT_SAMPLES)])


def _gumbel(x: np.ndarray, target_frr: float, confidence: float) -> Threshold:
    """A Gumbel tail fitted by maximum likelihood, and the threshold ``loc + k * scale`` whose
    rate is <= target with the given confidence. k comes from the pivot (q - loc^)/scale^ of
    the Gumbel (a location-scale family: its distribution does not depend on the true loc and
    scale), simulated once per sample size: an exact confidence bound under the model (Lawless,
    "Statistical Models and Methods for Lifetime Data", tolerance limits from pivotal
    quantities). A nonparametric bootstrap of the quantile, measured on Gumbel samples of 20
    and 40, covered the true rate 80% and 82-91% of the time instead of 95%."""
    from scipy import stats

    n = len(x)
    loc, scale = stats.gumbel_r.fit(x)
    point = float(stats.gumbel_r.ppf(1 - target_frr, loc, scale))
    fits = _standard_gumbel_fits(n)
    q = stats.gumbel_r.ppf(1 - target_frr)
    k = float(np.quantile((q - fits[:, 0]) / fits[:, 1], confidence))
    value = max(point, loc + k * scale)
    method = "gumbel"
    if n < MIN_IMAGES:
        # a bound from so few images sits far out in the tail (above every defect, in
        # practice): the point estimate, said as such, with the bound it actually has
        value, method = point, "gumbel point estimate (too few images for a bound)"
    if value < x.max() and n + 1 < 1 / target_frr:
        # the largest of n good scores sits near the n/(n+1) quantile, below the target's
        # 1 - r: a bound under it says the tail is heavier than the fit
        value = float(x.max())
        method += ", raised to the largest held-out score"
    # the true rate of "loc^ + k_used * scale^" over repeated samples, in standard units
    k_used = (value - loc) / scale
    rates = stats.gumbel_r.sf(fits[:, 0] + k_used * fits[:, 1])
    lo, hi = np.percentile(rates, [5, 95])
    return Threshold(
        value,
        method,
        n,
        target_frr,
        estimated_frr=float(stats.gumbel_r.sf(value, loc, scale)),
        frr_interval=(float(lo), float(hi)),
        confidence=confidence,
        frr_bound=float(np.quantile(rates, confidence)),
        point_value=point,
        images_needed=images_for_a_bound(target_frr, confidence),
    )


def threshold_at_frr(
    scores: Sequence[float],
    target_frr: float = DEFAULT_TARGET_FRR,
    confidence: float = DEFAULT_CONFIDENCE,
    warn: bool = True,
) -> Threshold:
    """The lowest threshold whose false-reject rate on good images is at or below
    ``target_frr`` with ``confidence`` (an upper confidence bound, not the point estimate)."""
    target_frr = check_target(target_frr)
    confidence = check_confidence(confidence)
    x = np.asarray(scores, np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        raise EdgeadError(
            f"{len(x)} held-out good image score(s): a threshold needs at least 2 "
            "(more than 20 for a useful estimate)"
        )
    needed = images_for_a_bound(target_frr, confidence)
    if np.ptp(x) == 0:  # a constant score: nothing to fit
        return Threshold(
            float(x[0]),
            "constant",
            len(x),
            target_frr,
            0.0,
            (0.0, 0.0),
            confidence,
            None,
            float(x[0]),
            needed,
        )
    if len(x) >= needed:
        return _order_statistic(x, target_frr, confidence)
    if warn and len(x) < MIN_IMAGES:
        log.warning(
            "%d held-out good images are too few to bound a %.1f%% false-reject rate: the "
            "threshold is the Gumbel point estimate, which keeps the target only about half "
            "the time (%d or more give a bound through a Gumbel model of the score tail, %d "
            "one without a model)",
            len(x),
            100 * target_frr,
            MIN_IMAGES,
            needed,
        )
    elif warn:
        log.warning(
            "%d held-out good images: a %.1f%% false-reject rate is bounded (%.0f%% confidence) "
            "through a Gumbel model of the score tail; %d images would bound it without one",
            len(x),
            100 * target_frr,
            100 * confidence,
            needed,
        )
    return _gumbel(x, target_frr, confidence)


def calibration_record(
    scores: Sequence[float],
    map_max: Sequence[float],
    map_min: Sequence[float],
    target_frr: float,
    source: str,
    skipped: Sequence[str] = (),
    confidence: float = DEFAULT_CONFIDENCE,
) -> CalibrationRecord:
    """What the manifest records of a calibration (fit, export and ``edgead calibrate``)."""
    return CalibrationRecord(
        source=source,
        target_frr=float(target_frr),
        confidence=float(confidence),
        image=threshold_at_frr(scores, target_frr, confidence),
        pixel=threshold_at_frr(map_max, target_frr, confidence, warn=False),
        image_min=float(min(scores)),
        image_max=float(max(scores)),
        pixel_min=float(min(map_min)),
        pixel_max=float(max(map_max)),
        skipped=list(skipped),
        scores=sorted(float(v) for v in scores),
    )


def normalization_from(
    cal: CalibrationRecord | None,
    labels: Sequence[int],
    scores: Sequence[float],
    previous: Normalization,
) -> Normalization:
    """The bundle's normalization from a calibration record. With labelled test scores (the
    evaluation's) it records the false-reject and detection rates at the threshold, and the
    F1-optimal threshold as a diagnostic only. ``previous`` supplies the test set's ranges."""

    def lo(*values):
        return min(v for v in values if v is not None)

    def hi(*values):
        return max(v for v in values if v is not None)

    if cal is None:
        return Normalization(
            image_min=previous.image_min,
            image_max=previous.image_max,
            pixel_min=previous.pixel_min,
            pixel_max=previous.pixel_max,
            source="no held-out good images: no threshold (`edgead calibrate` sets one)",
        )
    image_thr = float(cal.image.value)
    test = f1_optimal = None
    if len(labels):
        test = verdicts_at(image_thr, labels, scores)
        if 0 < sum(labels) < len(labels):
            from edgead.metrics.evaluation import f1_optimal_threshold

            f1_thr, _ = f1_optimal_threshold(labels, scores)
            f1_optimal = verdicts_at(f1_thr, labels, scores)
    record = dataclasses.replace(cal, test=test, f1_optimal=f1_optimal)
    return Normalization(
        image_threshold=image_thr,
        pixel_threshold=float(cal.pixel.value),
        image_min=lo(cal.image_min, previous.image_min),
        image_max=hi(cal.image_max, previous.image_max, image_thr),
        pixel_min=lo(cal.pixel_min, previous.pixel_min),
        pixel_max=hi(cal.pixel_max, previous.pixel_max, cal.pixel.value),
        source=(
            f"held-out good images ({cal.source}) at a {100 * cal.target_frr:.1f}% "
            f"false-reject rate{_bound_words(cal)} ({cal.image.method} estimate)"
        ),
        calibration=record,
    )


def _bound_words(cal: CalibrationRecord) -> str:
    confidence = cal.confidence  # records written before bounds had none
    return f", bounded at {100 * confidence:.0f}% confidence" if confidence else ""
