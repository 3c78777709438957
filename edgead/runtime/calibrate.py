"""``edgead calibrate``: new thresholds for a bundle from the line's own good images, without
refitting (torch-free). The bundle is rewritten as a new revision: its files copied (hard links
where the file system allows) into a staging folder, the manifest's normalization replaced,
checksums verified, and the folder renamed into place in one step."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
from pathlib import Path

from edgead.bundle import roles
from edgead.bundle.io import atomic_directory, open_bundle
from edgead.bundle.manifest import MANIFEST_NAME
from edgead.bundle.references import read_reference_labels
from edgead.data.datasets import folder_samples
from edgead.errors import EdgeadError
from edgead.metrics.calibration import calibration_record, normalization_from
from edgead.runtime.pipeline import Failure, Pipeline


def score_good_images(pipeline: Pipeline, folder: Path) -> tuple[list, list, list, list]:
    """Image scores, map maxima and minima of the images in ``folder``; unreadable ones listed."""
    paths = [s.path for s in folder_samples(folder)]
    if not paths:
        raise EdgeadError(f"{folder}: no images found to calibrate on")
    scores, map_max, map_min, skipped = [], [], [], []
    for r in pipeline.predict_files(paths):
        if isinstance(r, Failure):
            skipped.append(f"{r.source}: {r.error}")
            continue
        scores.append(r.image_score)
        map_max.append(float(r.anomaly_map.max()))
        map_min.append(float(r.anomaly_map.min()))
    if len(scores) < 2:
        raise EdgeadError(f"{folder}: {len(scores)} readable image(s); calibration needs 2 or more")
    return scores, map_max, map_min, skipped


def _copy_tree(src: Path, dst: Path) -> None:
    for path in src.iterdir():
        if path.name == MANIFEST_NAME:
            continue
        target = dst / path.name
        if path.is_dir():
            shutil.copytree(path, target)
            continue
        try:
            os.link(path, target)  # the artifacts do not change: share them
        except OSError:
            shutil.copy2(path, target)


def calibrate_bundle(
    bundle_path: str | Path,
    good: str | Path,
    target_frr: float,
    out: str | Path | None = None,
    backend: str = "onnxruntime",
    device: str | None = None,
    precision: str = "fp32",
    search: str = "auto",
    threads: int | None = None,
) -> tuple[Path, dict]:
    """Recalibrate; returns the bundle written (``out``, or the bundle itself) and the record."""
    bundle = open_bundle(bundle_path)
    good = Path(good)
    with Pipeline(bundle, backend, device, precision, search, threads=threads) as pipeline:
        scores, map_max, map_min, skipped = score_good_images(pipeline, good)
        described = f"{pipeline.describe()} {precision}"
    record = calibration_record(
        scores, map_max, map_min, target_frr, f"{len(scores)} images of {good.name}/", skipped
    )
    record["backend"] = described
    m = bundle.manifest
    labels, ref_scores = ([], [])
    if bundle.has(roles.REFERENCE_SCORES):  # what the new threshold costs on the evaluation set
        labels, ref_scores = read_reference_labels(bundle.path(roles.REFERENCE_SCORES))
    normalization = normalization_from(record, labels, ref_scores, m.normalization)
    entry = {
        "revision": m.revision + 1,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "change": "calibrate",
        "source": record["source"],
        "target_frr": target_frr,
        "image_threshold": [m.normalization.image_threshold, normalization.image_threshold],
    }
    manifest = dataclasses.replace(
        m, normalization=normalization, revision=m.revision + 1, history=[*m.history, entry]
    )
    target = Path(out) if out is not None else bundle.root
    with atomic_directory(target, overwrite=True) as staging:
        _copy_tree(bundle.root, staging)
        (staging / MANIFEST_NAME).write_text(manifest.to_json())
        open_bundle(staging)  # every checksum against the new manifest before it lands
    return target, record
