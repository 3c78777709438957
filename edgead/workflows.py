"""Fit and export, end to end (PyTorch side). The CLI and the demo call these."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgead.data.datasets import MVTecCategory, folder_samples, open_dataset
from edgead.data.images import read_image
from edgead.errors import DatasetError, ImageDecodeError
from edgead.models.evaluate import evaluate
from edgead.models.registry import get_detector
from edgead.models.saved import SavedModel
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


def fit_detector(
    name: str, data: str | Path, config: Any, device: str = "cpu", quiet: bool = False
) -> SavedModel:
    """Fit on train/good (or a plain folder of good images) and evaluate on test/ if present."""
    entry = get_detector(name)
    data = Path(data)
    dataset: MVTecCategory | None = None
    if MVTecCategory.is_mvtec(data):
        dataset = open_dataset(data)
        train = dataset.train_paths()
    else:
        train = [s.path for s in folder_samples(data)]
        if not train:
            raise DatasetError(f"{data}: no images found (and not an MVTec-layout folder)")
    extra = {}
    if entry.uses_validation:
        extra["validation"] = dataset.validation_paths() if dataset is not None else None
    model, report = entry.fit(config, train, device=device, quiet=quiet, **extra)
    spec = entry.input_spec(config)
    evaluation = None
    if dataset is not None and dataset.test_samples():
        evaluation = evaluate(
            lambda b: entry.infer(model, b), dataset, spec, quiet=quiet, device=device
        )
    return SavedModel(
        name,
        config.to_dict(),
        spec,
        report["backbone"],
        report,
        model,
        evaluation,
        golden_inputs(dataset, train, spec),
    )


def export_model(
    saved: SavedModel, out: str | Path, overwrite: bool = False, **options: Any
) -> Path:
    return get_detector(saved.detector).export(saved, out, overwrite=overwrite, **options)
