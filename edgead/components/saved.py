"""A saved fit (``edgead fit ... --out MODEL``): a folder, no pickles.

config.json        detector, its config, input spec, backbone description, fit report
model.safetensors  the whole module's state (backbone, projection, memory bank, ...)
evaluation.json    metrics, normalization, per-image scores on the evaluation set
golden.npz         a few preprocessed inputs for the bundle's golden outputs
holdout.json       the held-out good images of the thresholds (export measures search on them)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file
from torch import nn

from edgead.bundle.io import atomic_directory
from edgead.bundle.manifest import InputSpec
from edgead.components.evaluate import EvalResult
from edgead.errors import EdgeadError

FORMAT = "edgead-model/1"


@dataclass
class SavedModel:
    detector: str
    config: dict
    input: InputSpec
    backbone: dict
    fit_report: dict
    model: nn.Module
    evaluation: EvalResult | None
    golden_inputs: np.ndarray
    # the held-out good images (paths on the fitting machine): export measures the search
    # candidates on them; kept in the saved model, never in the bundle
    holdout: list[str] = field(default_factory=list)


def save(out: str | Path, saved: SavedModel, overwrite: bool = False) -> Path:
    with atomic_directory(out, overwrite) as staging:
        meta = {
            "format": FORMAT,
            "detector": saved.detector,
            "config": saved.config,
            "input": asdict(saved.input),
            "backbone": saved.backbone,
            "fit_report": saved.fit_report,
        }
        (staging / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
        state = {k: v.contiguous() for k, v in saved.model.state_dict().items()}
        save_file(state, str(staging / "model.safetensors"))
        if saved.evaluation is not None:
            (staging / "evaluation.json").write_text(
                json.dumps(saved.evaluation.to_dict(), indent=2) + "\n"
            )
        np.savez(staging / "golden.npz", input=saved.golden_inputs)
        (staging / "holdout.json").write_text(json.dumps(saved.holdout, indent=1) + "\n")
    return Path(out)


def load(path: str | Path, rebuild: Callable[[str, dict, dict], tuple[Any, dict]]) -> SavedModel:
    """Read a saved model. ``rebuild(detector, config_dict, state)`` returns (module, config as
    the detector's config dataclass): the registry's job (``edgead.workflows.load_model``), so
    that this module needs no detector."""
    path = Path(path)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise EdgeadError(f"{config_path}: missing; is {path} a model saved by `edgead fit`?")
    try:
        meta = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise EdgeadError(f"{config_path}: not valid JSON ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise EdgeadError(f"{config_path}: unknown model format {meta.get('format')!r}")
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise EdgeadError(f"{weights}: missing; refit with `edgead fit {meta['detector']}`")
    model, _ = rebuild(meta["detector"], meta["config"], load_file(str(weights)))
    eval_path = path / "evaluation.json"
    evaluation = (
        EvalResult.from_dict(json.loads(eval_path.read_text())) if eval_path.is_file() else None
    )
    spec = meta["input"]
    spec["mean"], spec["std"] = tuple(spec["mean"]), tuple(spec["std"])
    with np.load(path / "golden.npz") as golden:
        inputs = golden["input"]
    holdout_path = path / "holdout.json"
    holdout = json.loads(holdout_path.read_text()) if holdout_path.is_file() else []
    return SavedModel(
        meta["detector"],
        meta["config"],
        InputSpec(**spec),
        meta["backbone"],
        meta["fit_report"],
        model,
        evaluation,
        inputs,
        holdout,
    )
