"""Fit and export, end to end (PyTorch side). The CLI and the demo call these."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgead.components.backbones import inference_ready
from edgead.components.evaluate import apply_calibration, calibrate, evaluate
from edgead.components.saved import SavedModel
from edgead.data.datasets import MVTecCategory, folder_samples, open_dataset
from edgead.data.holdout import DEFAULT_HOLDOUT_BY, split_holdout_paths
from edgead.data.images import file_digest, read_image
from edgead.detectors.registry import get_detector
from edgead.errors import DatasetError, ImageDecodeError
from edgead.metrics.calibration import (
    DEFAULT_CONFIDENCE,
    DEFAULT_TARGET_FRR,
    check_confidence,
    check_target,
)
from edgead.runtime.preprocess import preprocess

log = logging.getLogger(__name__)


def golden_inputs(dataset: MVTecCategory | None, train: list[Path], spec) -> np.ndarray:
    """Up to two preprocessed images: the first good and first defective test image."""
    picks: list[Path] = []
    if dataset is not None:
        samples = dataset.test_samples()
        for label in (0, 1):
            picks += [s.path for s in samples if s.label == label][:1]
    picks = picks or train[:2]
    arrays = []
    for p in picks:
        try:
            arrays.append(preprocess(read_image(p), spec))
        except ImageDecodeError as exc:
            log.warning("golden input skipped: %s", exc)
    if not arrays:
        raise DatasetError("no readable image to make golden inputs from")
    return np.stack(arrays)


def check_data(data: Path) -> None:
    """Refuse a folder that looks like a test set without training images, before any work."""
    if not data.is_dir():
        raise DatasetError(f"{data}: no such folder")
    if not MVTecCategory.is_mvtec(data) and (data / "test").is_dir():
        raise DatasetError(
            f"{data}: has test/ but no train/good/. Expected the MVTec layout "
            f"({data}/train/good/*.png, optional validation/good/ and test/<defect>/), or a plain "
            "folder of good images only: edgead will not fit on test images"
        )


def image_channels(paths: list[Path], sample: int = 8) -> int:
    """Colour channels of the training images as stored (1 gray, 3 colour), from a sample: the
    runtime warns on an image that differs (a grayscale frame into a colour model)."""
    from edgead.data.images import read_with_channels

    seen = []
    for path in paths[:sample]:
        try:
            seen.append(read_with_channels(path)[1])
        except ImageDecodeError:
            continue
    return max(seen, default=3)


def fit_detector(
    name: str,
    data: str | Path,
    config: Any,
    device: str = "cpu",
    quiet: bool = False,
    target_frr: float = DEFAULT_TARGET_FRR,
    holdout: float = 0.1,
    holdout_by: str = DEFAULT_HOLDOUT_BY,
    confidence: float = DEFAULT_CONFIDENCE,
    use_validation: bool = True,
) -> SavedModel:
    """Fit on train/good (or a plain folder of good images) less the held-out good images,
    set the thresholds on those at ``target_frr`` (bounded at ``confidence``), and evaluate on
    test/ if present. ``holdout_by`` chooses the held-out images (``edgead.data.holdout``);
    validation/good, where the data has it, is used instead unless ``use_validation`` is off
    (benchmarks compare the choices on train/good)."""
    entry = get_detector(name)
    data = Path(data)
    check_data(data)
    check_target(target_frr)
    check_confidence(confidence)
    dataset: MVTecCategory | None = None
    seed = getattr(config, "seed", 0)
    if MVTecCategory.is_mvtec(data):
        dataset = open_dataset(data)
        train, held, source = dataset.split_holdout(holdout, seed, holdout_by, use_validation)
    else:
        paths = [s.path for s in folder_samples(data)]
        if not paths:
            raise DatasetError(f"{data}: no images found (and not an MVTec-layout folder)")
        train, held, source = split_holdout_paths(
            paths, holdout, holdout_by, seed, data, f"{data.name}/"
        )
    extra = {}
    if entry.uses_validation:  # EfficientAD: map normalization on the held-out images
        extra["validation"] = held or None
    model, report = entry.fit(config, train, device=device, quiet=quiet, **extra)
    spec = entry.input_spec(config)
    # the same arithmetic, faster (BatchNorm folded): what evaluation and calibration run;
    # the model saved and exported stays as fitted
    fast = inference_ready(copy.deepcopy(model))

    def infer(batch):
        return entry.infer(fast, batch)

    report["image_channels"] = image_channels(train)
    report["fit_images"] = sorted({file_digest(p) for p in train if p.is_file()})
    calibration = calibrate(infer, held, spec, target_frr, source, quiet, confidence=confidence)
    evaluation = None
    if dataset is not None and dataset.test_samples():
        # batches of 8: the backbone runs ~1.7x faster per image than one by one on a CPU
        evaluation = evaluate(infer, dataset, spec, batch_size=8, quiet=quiet, device=device)
    evaluation = apply_calibration(evaluation, calibration)
    report["holdout"] = source
    return SavedModel(
        name,
        config.to_dict(),
        spec,
        report["backbone"],
        report,
        model,
        evaluation,
        golden_inputs(dataset, train, spec),
        holdout=[str(p) for p in held],
    )


def export_model(
    saved: SavedModel, out: str | Path, overwrite: bool = False, **options: Any
) -> Path:
    return get_detector(saved.detector).export(saved, out, overwrite=overwrite, **options)


def load_model(path: str | Path) -> SavedModel:
    """A model saved by ``edgead fit``, rebuilt by its detector."""
    from edgead.components.saved import load

    def rebuild(name: str, config: dict, state: dict) -> tuple[Any, Any]:
        detector = get_detector(name)
        cfg = detector.config_from_dict(config)
        return detector.rebuild(cfg, state), cfg

    return load(path, rebuild)
