"""The bundle manifest: dataclasses that serialize to JSON (never pickle).

The manifest is the contract between the PyTorch side and the runtime: how to preprocess an
image, which graph to run, how to score its output, how to normalize and threshold the score,
what the original model measured, and how close the bundle must stay to it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from edgead.bundle.records import CalibrationRecord, calibration_of
from edgead.bundle.roles import LEGACY_ROLES
from edgead.bundle.scorer_params import ScorerParams, params_from_dict, params_to_dict

# 1.1: normalization.calibration, revision, history; 1.2: digest (the manifest's own checksum);
# 1.3: INT8 parity tolerances, runtime (the measured default backend and precision);
# 1.4: the exported graph's roles are graph, graph_fp16, graph_int8 (were backbone, ...)
SCHEMA_VERSION = "1.4"
MANIFEST_NAME = "manifest.json"


@dataclass
class InputSpec:
    """How a decoded RGB uint8 image becomes the graph's input (as timm's pretrained config).

    The image is resized to (height, width) ignoring aspect ratio, scaled to [0, 1],
    normalized with mean/std per channel, and laid out as NCHW float32.
    """

    height: int
    width: int
    channel_order: str = "RGB"
    interpolation: str = "area"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    layout: str = "NCHW"
    dtype: str = "float32"


@dataclass
class Artifact:
    """One file of the bundle, with what it is for and how to check it."""

    path: str
    role: str
    format: str
    sha256: str
    size: int
    precision: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class GraphSpec:
    """The network graph the runtime runs: names and shapes of its I/O tensors."""

    artifact: str
    input_name: str
    output_names: list[str]
    output_shapes: dict[str, list[int | str]]


@dataclass
class ScorerSpec:
    """How graph outputs become patch scores; ``kind`` picks the runtime scorer and the type of
    ``params`` (edgead.bundle.scorer_params: one frozen dataclass per kind, checked on reading)."""

    kind: str
    params: ScorerParams | dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.params, dict):
            self.params = params_from_dict(self.kind, self.params)

    @property
    def host_search(self) -> str:
        """The CPU search export measured fastest for this bundle (faiss or gemm)."""
        return getattr(self.params, "host_search", "faiss")


@dataclass
class PostprocessSpec:
    """Patch scores -> anomaly map: upsample to the input size, then Gaussian blur."""

    map_height: int
    map_width: int
    blur_sigma: float = 4.0
    upsample: str = "bilinear"
    # "scorer": the scorer's image score (PatchCore: max patch score, maybe re-weighted);
    # "map_max": the maximum of the final anomaly map (PaDiM, SPADE)
    image_score: str = "scorer"


@dataclass
class Normalization:
    """Raw score statistics and thresholds; where each came from is said in ``source``."""

    image_threshold: float | None = None
    pixel_threshold: float | None = None
    image_min: float | None = None
    image_max: float | None = None
    pixel_min: float | None = None
    pixel_max: float | None = None
    source: str = ""
    # how the thresholds were set (edgead.metrics.calibration): held-out good images, target
    # and estimated false-reject rate with its interval, and on labelled test data the
    # false-reject and detection rates, with the F1-optimal threshold as a diagnostic only
    calibration: CalibrationRecord | None = None

    def __post_init__(self) -> None:
        self.calibration = calibration_of(self.calibration)


@dataclass
class Metrics:
    """What the original PyTorch model measured on its evaluation set (ROCAUC in [0, 1])."""

    dataset: str = ""
    n_images: int = 0
    n_anomalous: int = 0
    image_rocauc: float | None = None
    pixel_rocauc: float | None = None
    aupro: float | None = None
    image_f1: float | None = None
    # the PyTorch model's latency on the export machine: batch 1, median, preprocessed input
    # to anomaly map (the runtime's graph + score + postprocess stages)
    torch_ms_per_image: float | None = None
    torch_device: str | None = None


@dataclass
class ParityTolerance:
    """How far the bundle may be from the original. ROCAUC tolerances are in points (percent)."""

    image_rocauc_points: float = 0.1
    pixel_rocauc_points: float = 0.1
    # per-image score difference, as a fraction of the reference scores' range (max - min)
    score_rel: float = 1e-3
    # golden-output difference, as a fraction of the reference output's max magnitude
    golden_rel: float = 1e-3
    # the FP16 graph against the FP32 original
    fp16_rocauc_points: float = 0.5
    fp16_score_rel: float = 0.02
    fp16_golden_rel: float = 0.05
    # the INT8 graph is gated on what a verdict depends on, not on closeness of outputs
    # (quantization moves each output by far more than FP16 does): ROCAUC, the ranks of the
    # image scores (Spearman against the original's), and the detection and false-reject rates
    # at the bundle's threshold (points, one-sided: the INT8 graph may not be worse by more)
    int8_rocauc_points: float = 0.5
    int8_rank: float = 0.99
    int8_rate_points: float = 2.0

    def for_precision(self, precision: str) -> ParityTolerance:
        """The tolerances that apply to a run at ``precision`` (fp32, fp16 or int8)."""
        if precision == "fp32":
            return self
        if precision == "int8":
            return dataclasses.replace(
                self,
                image_rocauc_points=max(self.image_rocauc_points, self.int8_rocauc_points),
                pixel_rocauc_points=max(self.pixel_rocauc_points, self.int8_rocauc_points),
            )
        return ParityTolerance(
            image_rocauc_points=max(self.image_rocauc_points, self.fp16_rocauc_points),
            pixel_rocauc_points=max(self.pixel_rocauc_points, self.fp16_rocauc_points),
            score_rel=max(self.score_rel, self.fp16_score_rel),
            golden_rel=max(self.golden_rel, self.fp16_golden_rel),
        )


@dataclass
class Manifest:
    detector: str
    params: dict[str, Any]
    input: InputSpec
    backbone: dict[str, Any]
    graph: GraphSpec
    scorer: ScorerSpec
    postprocess: PostprocessSpec
    normalization: Normalization
    metrics: Metrics
    parity: ParityTolerance
    artifacts: list[Artifact] = field(default_factory=list)
    schema_version: str = SCHEMA_VERSION
    created: str = ""
    libraries: dict[str, str] = field(default_factory=dict)
    # how the model was fitted: training images, seconds, model size, skipped files
    fit: dict[str, Any] = field(default_factory=dict)
    # 1 as exported; each later change (``edgead calibrate``) adds one and a history entry
    revision: int = 1
    history: list[dict[str, Any]] = field(default_factory=list)
    # sha256 of this manifest's canonical JSON, whole and per field (edgead.bundle.integrity):
    # set by to_json, checked by every open
    digest: dict[str, Any] = field(default_factory=dict)
    # the backend and precision `--backend auto --precision auto` run: the fastest that held
    # parity where the bundle was exported or quantized, with what was measured there
    # (edgead.export.runtime_choice); empty: onnxruntime FP32
    runtime: dict[str, Any] = field(default_factory=dict)

    def artifact(self, role: str) -> Artifact:
        for artifact in self.artifacts:
            if artifact.role == role:
                return artifact
        raise KeyError(role)

    def has_artifact(self, role: str) -> bool:
        return any(a.role == role for a in self.artifacts)

    def to_json(self) -> str:
        """The manifest as written: JSON with its digest over everything else."""
        from edgead.bundle.integrity import manifest_digest

        data = json.loads(json.dumps(asdict(self)))  # tuples as lists, as they read back
        data["scorer"]["params"] = params_to_dict(self.scorer.params)
        cal = self.normalization.calibration
        data["normalization"]["calibration"] = cal.to_dict() if cal is not None else {}
        data["digest"] = manifest_digest(data)
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        return _build(cls, data)


def _build(cls: type, data: Any) -> Any:
    """Build a dataclass tree from parsed JSON, checking field names (no silent extras)."""
    if not dataclasses.is_dataclass(cls):
        return data
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(hints)
    if unknown:
        raise TypeError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    kwargs = {}
    nested = {
        "input": InputSpec,
        "graph": GraphSpec,
        "scorer": ScorerSpec,
        "postprocess": PostprocessSpec,
        "normalization": Normalization,
        "metrics": Metrics,
        "parity": ParityTolerance,
    }
    for name, value in data.items():
        if cls is Manifest and name in nested:
            value = _build(nested[name], value)
        elif cls is Manifest and name == "artifacts":
            value = [_build(Artifact, a) for a in value]
            for artifact in value:
                artifact.role = LEGACY_ROLES.get(artifact.role, artifact.role)
        elif cls is Manifest and name == "runtime" and "backbone_p50_ms" in value:
            value = {("graph_p50_ms" if k == "backbone_p50_ms" else k): v for k, v in value.items()}
        elif cls is InputSpec and name in ("mean", "std"):
            value = tuple(float(v) for v in value)
        kwargs[name] = value
    return cls(**kwargs)
