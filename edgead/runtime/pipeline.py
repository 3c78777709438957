"""The runtime pipeline: image -> preprocess -> graph -> scorer -> anomaly map, timed per stage."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgead.bundle.io import Bundle, open_bundle
from edgead.bundle.manifest import Artifact, Normalization, PostprocessSpec
from edgead.bundle.roles import FALLBACK_ROLES, GRAPH_ROLES
from edgead.data.images import read_with_channels
from edgead.errors import BundleError, ImageDecodeError
from edgead.runtime.backends.base import Backend, create_backend
from edgead.runtime.choice import int8_machine_note, resolve_auto
from edgead.runtime.postprocess import anomaly_map, normalize_score, verdict
from edgead.runtime.preprocess import affine, host_map, preprocess_batch, resize_batch
from edgead.runtime.regions import Region, VerdictRules, find_regions
from edgead.runtime.scorers.base import ScorerOutput, load_scorer
from edgead.runtime.search import resolve_search
from edgead.runtime.settings import DEFAULT_RULES, RuntimeSettings
from edgead.runtime.timing import StageTimer

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    image_score: float
    normalized_score: float | None
    label: str | None  # "good" / "anomalous", None without a threshold
    anomaly_map: np.ndarray  # (H, W) float32 at the model's input size
    timings_ms: dict[str, float] = field(default_factory=dict)
    source: str = ""
    image: np.ndarray | None = None  # the decoded input (predict_files), for overlays
    warnings: list[str] = field(default_factory=list)  # e.g. a gray image into a colour model
    # defect regions above the pixel threshold, in original image pixels (largest peak first)
    regions: list[Region] = field(default_factory=list)


@dataclass
class Failure:
    source: str
    error: str


def graph_artifact(bundle: Bundle, backend: str, precision: str) -> Artifact:
    """The artifact a backend runs at ``precision``, or an error that says how to make it."""
    roles = GRAPH_ROLES.get(backend, GRAPH_ROLES["onnxruntime"])
    role = roles.get(precision)
    if role is None:
        raise BundleError(f"unknown precision {precision!r}: fp32, fp16 or int8")
    if not bundle.has(role) and bundle.has(FALLBACK_ROLES.get(role, "")):
        role = FALLBACK_ROLES[role]
    if not bundle.has(role):
        fix = {
            "tensorrt": f"`edgead build-engine {bundle.root} --precision {precision}`",
            "torch": "`edgead export <detector> ... --torch-graph`",
        }.get(backend, "`edgead export <detector> ... --fp16`")
        if precision == "int8":
            fix = f"`edgead quantize {bundle.root} --data DATA` (calibrated and gated on DATA)"
            if backend == "tensorrt":
                fix += (
                    f", then `edgead build-engine {bundle.root} --precision int8 --data DATA` "
                    "on the GPU that runs it (gated there)"
                )
        raise BundleError(
            f"{bundle.root}: no {precision} {backend} graph in this bundle; add it with {fix}"
        )
    artifact = bundle.manifest.artifact(role)
    gate = artifact.meta.get("gate")
    if gate is not None and not gate.get(backend, {}).get("passed"):
        passed = sorted(b for b, g in gate.items() if g.get("passed")) or ["none"]
        raise BundleError(
            f"{bundle.root}: the {precision} graph passed its parity gate on "
            f"{', '.join(passed)} only, not on {backend}; gate it there with `edgead quantize "
            f"{bundle.root} --data DATA --backend {backend}`"
        )
    if precision == "int8":
        note = int8_machine_note(artifact.meta.get("gated_on"))
        if note:
            log.warning(
                "%s: %s; check it here with `edgead parity %s DATA --backend %s --precision "
                "int8` before trusting its verdicts",
                bundle.root,
                note,
                bundle.root,
                backend,
            )
    return artifact


def finish(spec: PostprocessSpec, scored: ScorerOutput) -> tuple[np.ndarray, list[np.ndarray]]:
    """Scorer output -> (image scores, anomaly maps at the input size)."""
    maps = host_map(lambda p: anomaly_map(p, spec), scored.patch_scores)
    if spec.image_score == "map_max":
        return np.array([m.max() for m in maps], np.float32), maps
    return scored.image_scores, maps


def judged(
    scores: np.ndarray,
    maps: list[np.ndarray],
    norm: Normalization,
    sources: list[str] | None = None,
    sizes: list[tuple[int, int]] | None = None,
    rules: VerdictRules = DEFAULT_RULES,
) -> list[Prediction]:
    """Image scores and maps -> Predictions with their regions (``sizes``: the original
    images' (height, width)), normalized and judged against ``norm`` and ``rules``."""
    out = []
    for i, amap in enumerate(maps):
        score = float(scores[i])
        regions = find_regions(
            amap, norm.pixel_threshold, sizes[i] if sizes else None, rules.min_region_area
        )
        out.append(
            Prediction(
                score,
                normalize_score(score, norm),
                verdict(score, norm, regions, rules),
                amap,
                source=sources[i] if sources else "",
                regions=regions,
            )
        )
    return out


class Pipeline:
    """Load a bundle once; predict on RGB uint8 images or image files."""

    def __init__(
        self,
        bundle: Bundle | str | Path,
        settings: RuntimeSettings | None = None,
        **changes: Any,
    ):
        """``settings`` say where and how it runs (edgead.runtime.settings); keyword
        ``changes`` replace single fields: ``Pipeline(path, backend="openvino")``."""
        settings = RuntimeSettings.of(settings, **changes)
        self.settings = settings
        threshold = settings.threshold
        self.bundle = (
            bundle
            if isinstance(bundle, Bundle)
            else open_bundle(bundle, public_key=settings.public_key)
        )
        m = self.bundle.manifest
        self.spec = m.input
        # the verdict's threshold: the bundle's calibrated one unless overridden (--threshold)
        self.normalization = (
            dataclasses.replace(m.normalization, image_threshold=float(threshold))
            if threshold is not None
            else m.normalization
        )
        self.train_channels = m.fit.get("image_channels")  # 1 or 3; None for older bundles
        backend, precision = resolve_auto(m, settings.backend, settings.precision)
        self.precision = precision
        artifact = graph_artifact(self.bundle, backend, precision)
        self.backend: Backend = create_backend(
            backend,
            self.bundle.root / artifact.path,
            settings.device,
            {**artifact.meta, "precision": artifact.precision},
            precision,
            settings.threads,
        )
        self.backend.activate()
        try:
            host = m.scorer.host_search  # measured at export
            self.search = resolve_search(settings.search, self.backend.on_gpu, host)
            self.scorer = load_scorer(self.bundle, self.search)
        except BaseException:
            self.backend.deactivate()
            raise
        self.input_name = m.graph.input_name

    @property
    def rules(self) -> VerdictRules:
        return self.settings.rules

    @property
    def gray(self) -> str:
        return self.settings.gray

    def describe(self) -> str:
        """Backend, and where the scorer searches when it searches (bench and parity reports)."""
        where = f", search {self.search}" if self.scorer.searches else ""
        return self.backend.describe() + where

    def close(self) -> None:
        self.backend.deactivate()

    def reopen(self, bundle: str | Path | None = None) -> Pipeline:
        """A new pipeline on ``bundle`` (default: this bundle's folder, read again: a new
        revision written there) with the same backend, precision, search, threshold and
        rules. This one stays open: the caller swaps and closes."""
        return Pipeline(bundle if bundle is not None else self.bundle.root, self.settings)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def predict(
        self,
        images: list[np.ndarray],
        timer: StageTimer | None = None,
        sources: list[str] | None = None,
    ) -> list[Prediction]:
        """Score a batch of RGB uint8 images; stage times are split evenly over the batch."""
        timer = timer or StageTimer(self.backend.synchronize)
        if self.backend.takes_uint8:  # resized on the host, normalized on the device
            with timer("preprocess"):
                spec = self.spec
                batch = self.backend.uint8_buffer(len(images), spec.height, spec.width)
                resize_batch(images, spec, batch)
            with timer("graph"):
                outputs = self.backend.infer_uint8(batch, *affine(spec))
        else:
            with timer("preprocess"):
                batch = preprocess_batch(images, self.spec)
            with timer("graph"):
                outputs = self.backend.infer({self.input_name: batch})
        with timer("score"):
            scored = self.scorer.run(outputs)
        with timer("postprocess"):
            scores, maps = self.finish(scored)
            sizes = [im.shape[:2] for im in images]
            results = judged(scores, maps, self.normalization, sources, sizes, self.rules)
        share = {k: v / len(images) for k, v in timer.ms.items()}
        for r in results:
            r.timings_ms = dict(share)
        return results

    def finish(self, scored: ScorerOutput) -> tuple[np.ndarray, list[np.ndarray]]:
        """Scorer output -> (image scores, anomaly maps at the input size)."""
        return finish(self.bundle.manifest.postprocess, scored)

    def predict_files(
        self, paths: Iterable[str | Path], batch_size: int = 1
    ) -> Iterator[Prediction | Failure]:
        """Decode and score files; unreadable ones come back as Failure and the rest go on."""
        pending: list[tuple[str, np.ndarray]] = []
        timer = StageTimer(self.backend.synchronize)

        def flush() -> Iterator[Prediction]:
            nonlocal timer
            results = self.predict([im for _, im in pending], timer, [s for s, _ in pending])
            for result, (_, image) in zip(results, pending, strict=True):
                result.image = image
            yield from results
            pending.clear()
            timer = StageTimer(self.backend.synchronize)

        notes: dict[str, list[str]] = {}

        def flush_with_notes() -> Iterator[Prediction]:
            for result in flush():
                result.warnings = notes.pop(result.source, [])
                yield result

        for path in paths:
            try:
                with timer("decode"):
                    image, channels = read_with_channels(path)
            except ImageDecodeError as exc:
                yield Failure(str(path), exc.reason)
                continue
            try:
                image, note = self.admit(image, channels, str(path))
            except ImageDecodeError as exc:
                yield Failure(str(path), exc.reason)
                continue
            if note:
                notes[str(path)] = [note]
            pending.append((str(path), image))
            if len(pending) == batch_size:
                yield from flush_with_notes()
        if pending:
            yield from flush_with_notes()

    def admit(self, image: np.ndarray, channels: int, source: str) -> tuple[np.ndarray, str]:
        """The image as the model is to see it, under the ``gray`` policy, and a note when its
        colour channels differ from the training images' (ImageDecodeError when refused).

        ``auto`` (default): a grayscale image into a colour model is refused (its score would
        be judged against colour parts: never silently), a colour image into a grayscale model
        is converted (the model sees what it was fitted on); ``reject`` refuses both,
        ``convert`` converts both, ``accept`` scores either as decoded, with a note."""
        if self.train_channels is None or channels == self.train_channels:
            return image, ""
        kinds = {1: "grayscale", 3: "colour"}
        what = (
            f"{kinds.get(channels, channels)} image into a model fitted on "
            f"{kinds.get(self.train_channels, self.train_channels)} images"
        )
        policy = self.gray
        if policy == "auto":
            policy = "reject" if channels == 1 else "convert"
        if policy == "reject":
            raise ImageDecodeError(
                source, f"{what}: refused (--gray convert or accept scores it anyway)"
            )
        if policy == "convert" and self.train_channels == 1:
            gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), f"{what}: converted to grayscale"
        if policy == "convert":  # decoding already repeats the gray channel
            return image, f"{what}: converted to colour (gray in all three channels)"
        return image, f"{what}: scored as it is, scores may mislead"
