"""``edgead calibrate``: new thresholds for a bundle from the line's own good images, without
refitting (torch-free). The images may come as several folders, one per run (a day, a shift, a
batch of material): the threshold is set on all of them, and each run is also judged by a
threshold set *without* it, which says what the next, unseen run will likely see. The bundle
is rewritten as a new revision: its files copied (hard links where the file system allows)
into a staging folder, the manifest's normalization replaced, checksums verified, and the
folder renamed into place in one step."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgead.bundle import roles
from edgead.bundle.integrity import SIGNATURE_NAME
from edgead.bundle.io import Bundle, atomic_directory, open_bundle
from edgead.bundle.manifest import MANIFEST_NAME, SCHEMA_VERSION
from edgead.bundle.references import read_reference_labels
from edgead.data.datasets import folder_samples
from edgead.data.images import file_digest
from edgead.errors import EdgeadError
from edgead.metrics.calibration import (
    DEFAULT_CONFIDENCE,
    CalibrationRecord,
    calibration_record,
    normalization_from,
    threshold_at_frr,
)
from edgead.runtime.pipeline import Failure, Pipeline
from edgead.runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)


@dataclass
class GoodScores:
    """Image scores, map maxima and minima of a folder of good images; unreadable ones listed."""

    folder: Path
    scores: list[float] = field(default_factory=list)
    map_max: list[float] = field(default_factory=list)
    map_min: list[float] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    fitted: int = 0  # images left out: the model was fitted on them


def fitted_images(bundle: Bundle) -> set[str]:
    """Content hashes of the images the bundle's model was fitted on (empty for bundles
    written before they were kept)."""
    if not bundle.has(roles.FIT_IMAGES):
        return set()
    return set(bundle.path(roles.FIT_IMAGES).read_text().split())


def score_good_images(
    pipeline: Pipeline, folder: Path, fitted: set[str] = frozenset()
) -> GoodScores:
    """Score every image of ``folder`` the model was not fitted on (those would score like
    memorized images: a threshold on them rejects good parts of the line); unreadable ones
    are listed, not fatal."""
    paths = [s.path for s in folder_samples(folder)]
    if not paths:
        raise EdgeadError(f"{folder}: no images found to calibrate on")
    out = GoodScores(Path(folder))
    if fitted:
        unseen = [p for p in paths if file_digest(p) not in fitted]
        out.fitted = len(paths) - len(unseen)
        if out.fitted == len(paths):
            raise EdgeadError(
                f"{folder}: all {len(paths)} images are ones the model was fitted on; they "
                "score like memorized images, and a threshold set on them rejects good parts "
                "of the line. Calibrate on good images the model has not seen (held out, or "
                "new from the line)"
            )
        if out.fitted:
            log.warning(
                "%s: %d of %d images were left out: the model was fitted on them",
                folder,
                out.fitted,
                len(paths),
            )
        paths = unseen
    for r in pipeline.predict_files(paths):
        if isinstance(r, Failure):
            out.skipped.append(f"{r.source}: {r.error}")
            continue
        out.scores.append(r.image_score)
        out.map_max.append(float(r.anomaly_map.max()))
        out.map_min.append(float(r.anomaly_map.min()))
    return out


def run_report(
    runs: Sequence[GoodScores], threshold: float, target_frr: float, confidence: float
) -> list[dict]:
    """Per folder: images, how many the new threshold flags, and, with two or more folders,
    how many a threshold set on the *other* folders flags (a run calibration did not see)."""
    rows = []
    for i, run in enumerate(runs):
        s = np.asarray(run.scores)
        row = {
            "folder": str(run.folder),
            "images": int(s.size),
            "median_score": float(np.median(s)) if s.size else None,
            "flagged": int((s >= threshold).sum()),
        }
        others = [x for j, r in enumerate(runs) if j != i for x in r.scores]
        if len(runs) > 1 and len(others) >= 2 and s.size:
            unseen = threshold_at_frr(others, target_frr, confidence, warn=False).value
            row["threshold_without_it"] = unseen
            row["flagged_without_it"] = int((s >= unseen).sum())
        rows.append(row)
    return rows


def warn_on_unseen_runs(rows: list[dict], target_frr: float, alpha: float = 0.01) -> None:
    """A warning for each run that a threshold set without it flags clearly above the target
    (one-sided binomial test): runs differ more than the held-out images show."""
    from scipy.stats import binomtest

    for row in rows:
        k = row.get("flagged_without_it")
        if k is None or not row["images"]:
            continue
        if binomtest(k, row["images"], target_frr, alternative="greater").pvalue < alpha:
            log.warning(
                "%s: a threshold set on the other folders flags %d of its %d good images "
                "(%.1f%%, target %.1f%%): runs differ more than one calibration promises; "
                "calibrate on more runs, and watch the drift alarm on the line",
                row["folder"],
                k,
                row["images"],
                100 * k / row["images"],
                100 * target_frr,
            )


def _copy_tree(src: Path, dst: Path) -> None:
    for path in src.iterdir():
        if path.name == MANIFEST_NAME:
            continue
        if path.name == SIGNATURE_NAME:  # it signed the old manifest: sign the new one again
            log.warning("%s was signed; the new revision is not: sign it with `edgead sign`", src)
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
    good: str | Path | Sequence[str | Path],
    target_frr: float,
    out: str | Path | None = None,
    settings: RuntimeSettings | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    **changes: Any,
) -> tuple[Path, CalibrationRecord]:
    """Recalibrate on one folder of good images or several (one per run); returns the bundle
    written (``out``, or the bundle itself) and the calibration record."""
    bundle = open_bundle(bundle_path)
    folders = [Path(good)] if isinstance(good, str | Path) else [Path(g) for g in good]
    if not folders:
        raise EdgeadError("no folder of good images given to calibrate on")
    fitted = fitted_images(bundle)
    settings = RuntimeSettings.of(settings, **changes).replace(threshold=None)
    with Pipeline(bundle, settings) as pipeline:
        runs = [score_good_images(pipeline, f, fitted) for f in folders]
        described = f"{pipeline.describe()} {pipeline.precision}"
    pooled = GoodScores(folders[0])
    for run in runs:
        pooled.scores += run.scores
        pooled.map_max += run.map_max
        pooled.map_min += run.map_min
        pooled.skipped += run.skipped
    if len(pooled.scores) < 2:
        where = ", ".join(str(f) for f in folders)
        raise EdgeadError(
            f"{where}: {len(pooled.scores)} readable image(s); calibration needs 2 or more"
        )
    names = " + ".join(f"{len(r.scores)} images of {r.folder.name}/" for r in runs)
    record = calibration_record(
        pooled.scores,
        pooled.map_max,
        pooled.map_min,
        target_frr,
        names,
        pooled.skipped,
        confidence,
    )
    record.backend = described
    record.left_out_fitted = sum(r.fitted for r in runs)
    record.runs = run_report(runs, record.image.value, target_frr, confidence)
    warn_on_unseen_runs(record.runs, target_frr)
    m = bundle.manifest
    labels, ref_scores = ([], [])
    if bundle.has(roles.REFERENCE_SCORES):  # what the new threshold costs on the evaluation set
        labels, ref_scores = read_reference_labels(bundle.path(roles.REFERENCE_SCORES))
    normalization = normalization_from(record, labels, ref_scores, m.normalization)
    entry = {
        "revision": m.revision + 1,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "change": "calibrate",
        "source": record.source,
        "target_frr": target_frr,
        "confidence": confidence,
        "image_threshold": [m.normalization.image_threshold, normalization.image_threshold],
    }
    manifest = dataclasses.replace(
        m,
        normalization=normalization,
        revision=m.revision + 1,
        history=[*m.history, entry],
        schema_version=SCHEMA_VERSION,  # written by this version: with a digest
    )
    target = Path(out) if out is not None else bundle.root
    with atomic_directory(target, overwrite=True) as staging:
        _copy_tree(bundle.root, staging)
        (staging / MANIFEST_NAME).write_text(manifest.to_json())
        open_bundle(staging)  # every checksum against the new manifest before it lands
    return target, record
