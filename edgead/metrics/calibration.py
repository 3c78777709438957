"""Thresholds from good images at a false-reject rate the user chooses (no torch).

A line has many good parts and few labelled defects, so the verdict's threshold comes from the
scores of held-out good images, never from a labelled test set: it is set where an estimated
fraction ``target_frr`` of good parts would score above it.

**Which estimate, and why.** With the 20-60 held-out images a category usually has, the
empirical 99th percentile does not exist (it needs >= 100 images) and the sample maximum is a
noisy 1/n quantile. Every detector's image score is a maximum over many patches or pixels
(PatchCore, PaDiM, EfficientAD: map maxima) or a mean of nearest distances (SPADE), and the
maximum of many light-tailed values follows a Gumbel distribution (extreme value theory,
Fisher-Tippett-Gnedenko). So the threshold is the (1 - target) quantile of a Gumbel fitted by
maximum likelihood (scipy) to the held-out scores; where that falls below the largest held-out
score although fewer than 1/target images were held out (the largest of n sits near the
n/(n+1) quantile, under the target's), the tail is heavier than the fit and the threshold is
raised to that score. From ``EMPIRICAL_FROM / target`` images
on, there are enough images above the quantile to read it off directly, and the empirical
quantile is used instead (no model needed). Measured on the three shared categories (PatchCore
with defaults, 21-54 held-out images, target 1%): 0 of 25, 0 of 20 and 1 of 60 good test
images above the Gumbel threshold (README, "Thresholds").

The estimated false-reject rate comes with a bootstrap interval: the held-out scores are
resampled, the Gumbel refitted, and the rate of each refit above the threshold taken (its 5th
and 95th percentiles). The pixel threshold is the same estimate on the maxima of the held-out
anomaly maps: a good image shows any region above it with probability ``target``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from edgead.bundle.manifest import Normalization
from edgead.errors import EdgeadError

log = logging.getLogger(__name__)

DEFAULT_TARGET_FRR = 0.01
MIN_IMAGES = 20  # fewer held-out good images: a warning that the estimate is rough
EMPIRICAL_FROM = 10  # images per expected false reject from which the empirical quantile is used
BOOTSTRAP = 200


@dataclass
class Threshold:
    """A threshold and how it was estimated (goes into the manifest's calibration record)."""

    value: float
    method: str  # "gumbel" or "empirical"
    n_images: int
    target_frr: float
    estimated_frr: float
    frr_interval: tuple[float, float]  # 90% bootstrap interval of the false-reject rate

    def to_dict(self) -> dict:
        d = asdict(self)
        d["frr_interval"] = list(self.frr_interval)
        return d


def check_target(target_frr: float) -> float:
    if not 0 < target_frr < 0.5:
        raise EdgeadError(f"--target-frr {target_frr}: expected a rate in (0, 0.5), e.g. 0.01")
    return float(target_frr)


def threshold_at_frr(
    scores: Sequence[float], target_frr: float = DEFAULT_TARGET_FRR, seed: int = 0
) -> Threshold:
    """The threshold above which a fraction ``target_frr`` of good images is estimated to score."""
    from scipy import stats

    target_frr = check_target(target_frr)
    x = np.asarray(scores, np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        raise EdgeadError(
            f"{len(x)} held-out good image score(s): a threshold needs at least 2 "
            "(more than 20 for a useful estimate)"
        )
    if len(x) < MIN_IMAGES:
        log.warning(
            "only %d held-out good images: the threshold at a %.1f%% false-reject rate is a "
            "rough estimate (%d or more recommended)",
            len(x),
            100 * target_frr,
            MIN_IMAGES,
        )
    rng = np.random.default_rng(seed)
    if len(x) * target_frr >= EMPIRICAL_FROM:
        value = float(np.quantile(x, 1 - target_frr, method="higher"))
        boot = [float((rng.choice(x, len(x)) > value).mean()) for _ in range(BOOTSTRAP)]
        estimated = float((x > value).mean())
        method = "empirical"
    else:
        if np.ptp(x) == 0:  # a constant score: nothing to fit
            value = float(x[0])
            return Threshold(value, "constant", len(x), target_frr, 0.0, (0.0, 0.0))
        loc, scale = stats.gumbel_r.fit(x)
        value = float(stats.gumbel_r.ppf(1 - target_frr, loc, scale))
        method = "gumbel"
        if value < x.max() and len(x) + 1 < 1 / target_frr:
            # the largest of n good scores sits near the n/(n+1) quantile, below the target's
            # 1 - r: a fitted quantile under it says the tail is heavier than the fit
            value = float(x.max())
            method = "gumbel, raised to the largest held-out score"
        estimated = float(stats.gumbel_r.sf(value, loc, scale))
        boot = []
        for _ in range(BOOTSTRAP):
            sample = rng.choice(x, len(x))
            if np.ptp(sample) == 0:
                continue
            b_loc, b_scale = stats.gumbel_r.fit(sample)
            boot.append(float(stats.gumbel_r.sf(value, b_loc, b_scale)))
    lo, hi = np.percentile(boot, [5, 95]) if boot else (estimated, estimated)
    return Threshold(value, method, len(x), target_frr, estimated, (float(lo), float(hi)))


@dataclass
class Verdicts:
    """What a threshold does on labelled images: false rejects and detections."""

    threshold: float
    n_good: int
    n_anomalous: int
    false_rejects: int
    detections: int

    @property
    def frr(self) -> float | None:
        return self.false_rejects / self.n_good if self.n_good else None

    @property
    def detection_rate(self) -> float | None:
        return self.detections / self.n_anomalous if self.n_anomalous else None

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "false_reject_rate": self.frr,
            "detection_rate": self.detection_rate,
        }

    def describe(self) -> str:
        parts = []
        if self.n_good:
            parts.append(
                f"{self.false_rejects} of {self.n_good} good flagged ({100 * self.frr:.1f}%)"
            )
        if self.n_anomalous:
            parts.append(
                f"{self.detections} of {self.n_anomalous} defective detected "
                f"({100 * self.detection_rate:.1f}%)"
            )
        return ", ".join(parts) or "no labelled images"


def verdicts_at(threshold: float, labels: Sequence[int], scores: Sequence[float]) -> Verdicts:
    """Count false rejects (good >= threshold) and detections (anomalous >= threshold)."""
    y = np.asarray(labels)
    s = np.asarray(scores, np.float64)
    return Verdicts(
        float(threshold),
        int((y == 0).sum()),
        int((y == 1).sum()),
        int(((y == 0) & (s >= threshold)).sum()),
        int(((y == 1) & (s >= threshold)).sum()),
    )


def calibration_record(
    scores: Sequence[float],
    map_max: Sequence[float],
    map_min: Sequence[float],
    target_frr: float,
    source: str,
    skipped: Sequence[str] = (),
) -> dict:
    """What the manifest records of a calibration (fit, export and ``edgead calibrate``)."""
    image = threshold_at_frr(scores, target_frr)
    pixel = threshold_at_frr(map_max, target_frr)
    return {
        "source": source,
        "target_frr": float(target_frr),
        "image": image.to_dict(),
        "pixel": pixel.to_dict(),
        "image_min": float(min(scores)),
        "image_max": float(max(scores)),
        "pixel_min": float(min(map_min)),
        "pixel_max": float(max(map_max)),
        "skipped": list(skipped),
    }


def normalization_from(
    cal: dict | None,
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
    image_thr = float(cal["image"]["value"])
    record = dict(cal)
    if len(labels):
        record["test"] = verdicts_at(image_thr, labels, scores).to_dict()
        if 0 < sum(labels) < len(labels):
            from edgead.metrics.evaluation import f1_optimal_threshold

            f1_thr, _ = f1_optimal_threshold(labels, scores)
            record["f1_optimal"] = {
                "note": "diagnostic only: chosen on the labelled test set, never the default",
                **verdicts_at(f1_thr, labels, scores).to_dict(),
            }
    return Normalization(
        image_threshold=image_thr,
        pixel_threshold=float(cal["pixel"]["value"]),
        image_min=lo(cal["image_min"], previous.image_min),
        image_max=hi(cal["image_max"], previous.image_max, image_thr),
        pixel_min=lo(cal["pixel_min"], previous.pixel_min),
        pixel_max=hi(cal["pixel_max"], previous.pixel_max, cal["pixel"]["value"]),
        source=(
            f"held-out good images ({cal['source']}) at a {100 * cal['target_frr']:.1f}% "
            f"false-reject rate ({cal['image']['method']} estimate)"
        ),
        calibration=record,
    )
