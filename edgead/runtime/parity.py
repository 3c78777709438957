"""Accuracy parity: does the bundle, run by the lean runtime, score like the original model?

Two checks, after Polygraphy's comparator (a saved reference run, per-output tolerances):
- golden: the bundle's own golden inputs through backend and scorer, against the PyTorch
  outputs stored at export (needs no dataset);
- dataset: the whole evaluation set through the runtime; image/pixel ROCAUC and AUPRO against
  the manifest's originals, and every image's score against the PyTorch model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgead.bundle import roles
from edgead.bundle.io import Bundle, open_bundle
from edgead.bundle.manifest import ParityTolerance
from edgead.bundle.references import read_reference_scores
from edgead.data.datasets import open_dataset
from edgead.errors import DataMismatchError, ParityError
from edgead.metrics.scored import ScoredTestSet
from edgead.runtime.pipeline import Failure, Pipeline
from edgead.runtime.settings import RuntimeSettings
from edgead.runtime.timing import LatencyStats


@dataclass
class ParityRow:
    check: str
    original: float | None
    bundle: float | None
    diff: float | None
    tolerance: float | None
    unit: str
    ok: bool | None  # None: not comparable (no reference)


@dataclass
class ParityReport:
    bundle: str
    backend: str
    rows: list[ParityRow] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # unreadable images
    # per test image: relpath, label, defect, runtime score (for plots and reports)
    samples: list[dict] = field(default_factory=list)
    latency: LatencyStats = field(default_factory=LatencyStats)
    # at the verdict's threshold (the bundle's calibrated one, or --threshold): false rejects
    # and detections on the labelled test set (edgead.metrics.calibration.Verdicts.to_dict())
    verdicts: dict | None = None
    warnings: list[str] = field(default_factory=list)  # per-image notes (channel mismatch)

    @property
    def passed(self) -> bool:
        return all(r.ok is not False for r in self.rows) and any(r.ok for r in self.rows)

    def table(self) -> str:
        from tabulate import tabulate

        def fmt(v: float | None, unit: str) -> str:
            if v is None:
                return "-"
            return f"{v:.2f}" if unit == "points" else f"{v:.3g}"

        rows = [
            [
                r.check,
                fmt(r.original, r.unit),
                fmt(r.bundle, r.unit),
                fmt(r.diff, r.unit),
                fmt(r.tolerance, r.unit),
                r.unit,
                {True: "ok", False: "FAIL", None: "n/a"}[r.ok],
            ]
            for r in self.rows
        ]
        return tabulate(
            rows,
            headers=["check", "original", "bundle", "|diff|", "tolerance", "unit", "result"],
            tablefmt="github",
        )


def _row(
    check: str,
    orig: float | None,
    got: float | None,
    tol: float,
    unit: str,
    diff: float | None = None,
    one_sided: bool = False,
) -> ParityRow:
    if orig is None or got is None:
        return ParityRow(check, orig, got, None, tol, unit, None)
    if diff is None:
        diff = max(0.0, orig - got) if one_sided else abs(got - orig)
    return ParityRow(check, orig, got, diff, tol, unit, bool(diff <= tol))


def golden_rows(pipeline: Pipeline) -> list[ParityRow]:
    bundle = pipeline.bundle
    tol = bundle.manifest.parity.for_precision(pipeline.precision)
    # INT8 moves each output by far more than the FP32/FP16 tolerances; its closeness is
    # reported here, and it is gated on the evaluation set (``int8_rows``)
    int8 = pipeline.precision == "int8"
    with np.load(bundle.path(roles.GOLDEN)) as g:
        golden = {k: g[k] for k in g.files}
    graph = bundle.manifest.graph
    outputs = pipeline.backend.infer({graph.input_name: golden["input"]})
    rows = []
    for name in graph.output_names:
        if name in golden:
            ref = golden[name]
            rel = float(np.abs(outputs[name] - ref).max() / max(np.abs(ref).max(), 1e-12))
            rows.append(
                ParityRow(
                    f"golden {name}",
                    None,
                    None,
                    rel,
                    None if int8 else tol.golden_rel,
                    "relative",
                    None if int8 else rel <= tol.golden_rel,
                )
            )
    scores, _ = pipeline.finish(pipeline.scorer.run(outputs))
    ref = golden["image_score"]
    # the unit of the per-image check where the bundle knows it: the range of the scores it
    # was evaluated on. Relative to two golden scores alone, scores near zero (PUAD's sums of
    # z-scores) turned a 0.034 difference into "3.6%" on an H100 while the per-image check
    # over the whole test set read 1% of range
    norm = bundle.manifest.normalization
    evaluated = (
        norm.image_max - norm.image_min
        if norm.image_max is not None and norm.image_min is not None
        else 0.0
    )
    span = max(float(np.ptp(ref)), float(np.abs(ref).max()), evaluated, 1e-12)
    rel = float(np.abs(scores - ref).max() / span)
    rows.append(
        ParityRow(
            "golden image score",
            float(ref.max()),
            float(scores.max()),
            rel,
            None if int8 else tol.score_rel,
            "relative",
            None if int8 else rel <= tol.score_rel,
        )
    )
    return rows


def dataset_rows(
    pipeline: Pipeline, data: Path, report: ParityReport, batch_size: int = 1, quiet: bool = False
) -> list[ParityRow]:
    from tqdm.auto import tqdm

    bundle = pipeline.bundle
    m = bundle.manifest
    tol = m.parity.for_precision(pipeline.precision)
    dataset = open_dataset(data)
    samples = dataset.test_samples()
    if not samples:
        raise ParityError(f"{data}: no test images (expected {data}/test/<defect>/*.png)")
    check_same_data(bundle, dataset, samples, data)
    scores: dict[str, float] = {}
    maps: dict[str, np.ndarray] = {}
    for result in tqdm(
        pipeline.predict_files([s.path for s in samples], batch_size),
        total=len(samples),
        desc="parity",
        disable=quiet or None,
        leave=False,
    ):
        if isinstance(result, Failure):
            report.failures.append(f"{result.source}: {result.error}")
            continue
        scores[result.source] = result.image_score
        maps[result.source] = result.anomaly_map
        report.warnings += [f"{result.source}: {w}" for w in result.warnings]
        report.latency.add(result.timings_ms)
    scored = ScoredTestSet.collect(dataset, samples, scores, maps)
    kept = scored.samples
    report.samples = scored.records(with_path=True)
    threshold = pipeline.normalization.image_threshold
    if threshold is not None:
        report.verdicts = scored.verdicts(threshold).to_dict()
    got = scored.summary(m.postprocess.map_height, m.postprocess.map_width)
    orig = m.metrics
    # INT8: one-sided, a quantized graph may not lose more than the tolerance (a gain on a
    # small test set is no failure; the rank check below bounds how far the scores moved)
    lost = pipeline.precision == "int8"
    rows = [
        _row(name, _pct(a), _pct(b), t, "points", one_sided=lost)
        for name, a, b, t in (
            ("image ROCAUC", orig.image_rocauc, got.image_rocauc, tol.image_rocauc_points),
            ("pixel ROCAUC", orig.pixel_rocauc, got.pixel_rocauc, tol.pixel_rocauc_points),
            ("AUPRO", orig.aupro, got.aupro, tol.pixel_rocauc_points),
        )
    ]
    if bundle.has(roles.REFERENCE_SCORES):
        ref = read_reference_scores(bundle.path(roles.REFERENCE_SCORES))
        pairs = [
            (ref[s.relpath(dataset.root)], scores[str(s.path)])
            for s in kept
            if s.relpath(dataset.root) in ref
        ]
        if pairs:
            a = np.asarray(pairs, np.float64)
            span = max(float(np.ptp(a[:, 0])), 1e-12)
            rel = float(np.abs(a[:, 1] - a[:, 0]).max() / span)
            int8 = pipeline.precision == "int8"
            rows.append(
                ParityRow(
                    f"per-image score ({len(pairs)}/{len(kept)} matched)",
                    None,
                    None,
                    rel,
                    None if int8 else tol.score_rel,
                    "of range",
                    None if int8 else rel <= tol.score_rel,
                )
            )
            if int8:
                matched = [s for s in kept if s.relpath(dataset.root) in ref]
                rows += int8_rows(tol, [s.label for s in matched], a[:, 0], a[:, 1], threshold)
    return rows


def int8_rows(
    tol: ParityTolerance,
    labels: list[int],
    original: np.ndarray,
    got: np.ndarray,
    threshold: float | None,
) -> list[ParityRow]:
    """What an INT8 graph is gated on besides ROCAUC: the order of the image scores, and the
    verdicts at the bundle's threshold (one-sided: worse by at most the tolerance)."""
    from scipy.stats import spearmanr

    rho = float(spearmanr(original, got).statistic)
    rows = [
        ParityRow(
            "image score ranks (Spearman)",
            1.0,
            rho,
            1.0 - rho,
            1.0 - tol.int8_rank,
            "1 - rho",
            rho >= tol.int8_rank,
        )
    ]
    if threshold is None:
        return rows
    labels_ = np.asarray(labels)
    for name, label, worse in (
        ("detection rate at threshold", 1, -1.0),
        ("false-reject rate at threshold (test good)", 0, 1.0),
    ):
        pick = labels_ == label
        if not pick.any():
            continue
        before = 100.0 * float((original[pick] >= threshold).mean())
        after = 100.0 * float((got[pick] >= threshold).mean())
        lost = max(0.0, worse * (after - before))
        rows.append(
            ParityRow(
                name,
                before,
                after,
                lost,
                tol.int8_rate_points,
                "points",
                lost <= tol.int8_rate_points,
            )
        )
    return rows


def check_same_data(bundle: Bundle, dataset, samples: list, data: Path) -> None:
    """Refuse, with a reason, data whose test images are not those the bundle's reference scores
    were taken on: comparing other images would report a parity failure that is none."""
    if not bundle.has(roles.REFERENCE_SCORES):
        return
    ref = read_reference_scores(bundle.path(roles.REFERENCE_SCORES))
    here = {s.relpath(dataset.root) for s in samples}
    common = here & set(ref)
    # a few names apart: images unreadable at evaluation, or since (they are reported anyway)
    if len(common) >= 0.9 * len(ref) and len(common) >= 0.9 * len(here):
        return
    evaluated = bundle.manifest.metrics.dataset or "its evaluation set"
    raise DataMismatchError(
        f"{data}: not the data this bundle was evaluated on ({evaluated}, {len(ref)} test "
        f"images); {len(common)} of the {len(here)} test images here match by name, "
        f"{len(set(ref) - here)} of the bundle's are missing. Parity compares the same images: "
        "run it on the evaluation data, or score other images with `edgead run`"
    )


def _pct(v: float | None) -> float | None:
    return None if v is None else 100.0 * v


def run_parity(
    bundle: str | Path | Bundle,
    data: str | Path | None = None,
    settings: RuntimeSettings | None = None,
    quiet: bool = False,
    **changes: Any,
) -> ParityReport:
    """The bundle against what its original measured, run as ``settings`` say (keyword
    ``changes`` replace single fields); on ``data``'s test set when given."""
    settings = RuntimeSettings.of(settings, **changes)
    bundle = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    batch_size = settings.batch
    with Pipeline(bundle, settings) as pipeline:
        report = ParityReport(str(bundle.root), f"{pipeline.describe()} {pipeline.precision}")
        report.rows += golden_rows(pipeline)
        if data is not None:
            report.rows += dataset_rows(pipeline, Path(data), report, batch_size, quiet)
    return report
