"""The calibration record (``manifest.normalization.calibration``) and its parts, as dataclasses.

``edgead.metrics.calibration`` computes them; the manifest stores them; the drift monitor,
the reports and `edgead calibrate` read them typed. The JSON keeps the values these classes
derive (a threshold's ``basis``, the verdicts' rates) for readers of the file; reading drops
and recomputes them. Records written before a field existed load with its default (None where
the older record could not say).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgead.bundle.typed import build

DEFAULT_CONFIDENCE = 0.95


@dataclass
class Threshold:
    """A threshold and how it was estimated.

    ``value`` is the threshold in force: the one whose ``confidence`` upper bound of the
    false-reject rate is at or below ``target_frr``. ``estimated_frr`` is the point estimate of
    the rate at it, ``frr_bound`` its upper bound at ``confidence``; ``point_value`` the
    threshold the point estimate alone would have set (lower: what an estimate without its
    uncertainty promises)."""

    value: float
    method: str  # "gumbel" (a tail model) or "order statistic" (no model), or "constant"
    n_images: int
    target_frr: float
    estimated_frr: float
    frr_interval: tuple[float, float]  # 90% interval of the false-reject rate at ``value``
    # None: a record written before thresholds were confidence bounds
    confidence: float | None = DEFAULT_CONFIDENCE
    frr_bound: float | None = None
    point_value: float | None = None
    images_needed: int | None = None  # for a bound without a tail model

    @property
    def model_free(self) -> bool:
        return self.images_needed is not None and self.n_images >= self.images_needed

    def basis(self) -> str:
        """One line: what the bound rests on."""
        if self.method == "constant":
            return "every held-out score is the same: no rate can be estimated"
        if self.model_free:
            return (
                f"{self.n_images} images, enough for a bound with no model of the score tail "
                f"({self.images_needed} needed)"
            )
        return (
            f"{self.n_images} images bound the rate only through a Gumbel model of the score "
            f"tail ({self.images_needed} would bound it without one)"
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["frr_interval"] = list(self.frr_interval)
        d["basis"] = self.basis()
        return d

    @classmethod
    def from_dict(cls, data: Any, where: str = "threshold") -> Threshold:
        if isinstance(data, dict) and "confidence" not in data:
            data = {**data, "confidence": None}
        return build(cls, data, where, frozenset({"basis"}))


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

    @classmethod
    def from_dict(cls, data: Any, where: str = "verdicts") -> Verdicts:
        derived = frozenset({"false_reject_rate", "detection_rate", "note"})
        return build(cls, data, where, derived)

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


F1_NOTE = "diagnostic only: chosen on the labelled test set, never the default"


@dataclass
class CalibrationRecord:
    """How the thresholds were set: on which good images, at what target false-reject rate,
    with what confidence, and (on labelled test data) what they cost."""

    source: str  # the held-out good images (or the folders `edgead calibrate` was given)
    target_frr: float
    image: Threshold
    pixel: Threshold  # the same estimate on the maxima of the good images' anomaly maps
    image_min: float
    image_max: float
    pixel_min: float
    pixel_max: float
    confidence: float | None = None  # None: a record written before thresholds were bounds
    skipped: list[str] = field(default_factory=list)  # unreadable images, with the reason
    # the drift monitor's reference: what good parts scored when the threshold was set
    scores: list[float] = field(default_factory=list)
    test: Verdicts | None = None  # at the threshold, on the labelled test set
    f1_optimal: Verdicts | None = None  # the F1-optimal threshold there: a diagnostic only
    # `edgead calibrate`: how the bundle ran, fitted images left out, and per folder (run)
    # the images flagged at the new threshold and at one set without that folder
    backend: str | None = None
    left_out_fitted: int | None = None
    runs: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict:
        """As the manifest writes it: fields that are None left out, the parts with what they
        derive (a threshold's basis, the verdicts' rates, the F1 threshold's note)."""
        d = {k: v for k, v in asdict(self).items() if v is not None}
        d["image"], d["pixel"] = self.image.to_dict(), self.pixel.to_dict()
        if self.test is not None:
            d["test"] = self.test.to_dict()
        if self.f1_optimal is not None:
            d["f1_optimal"] = {"note": F1_NOTE, **self.f1_optimal.to_dict()}
        return d

    @classmethod
    def from_dict(cls, data: Any, where: str = "calibration") -> CalibrationRecord:
        if not isinstance(data, dict):
            raise TypeError(f"{where}: expected an object, got {type(data).__name__}")
        data = dict(data)
        parts: dict[str, Any] = {}
        for name in ("image", "pixel"):
            if name in data:
                parts[name] = Threshold.from_dict(data.pop(name), f"{where}.{name}")
        for name in ("test", "f1_optimal"):
            if data.get(name) is not None:
                parts[name] = Verdicts.from_dict(data.pop(name), f"{where}.{name}")
        return build(cls, {**data, **parts}, where)


def calibration_of(value: Any, where: str = "normalization.calibration") -> Any:
    """The manifest's calibration as a record: None for none ({} in the file)."""
    if value is None or isinstance(value, CalibrationRecord):
        return value
    if isinstance(value, dict) and not value:
        return None
    return CalibrationRecord.from_dict(value, where)
