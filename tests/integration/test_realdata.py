"""Every detector on the real MVTec-layout subsets (EfficientNet-Lite0): fit, export, parity.

PatchCore runs with the paper's PatchCore-1% setting (coreset ratio 0.01) to keep CI within
its time budget; the docs give the default 10% as well.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from edgead.cli import main
from tests.conftest import real_category

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

CATEGORIES = ("mvtec3d_tire", "mvtec_bottle", "loco_juice_bottle")
# Lower bounds well under what was measured (README, "Measured"), so that a regression fails.
# loco_juice_bottle holds logical anomalies only. PaDiM on tire: pixel ROCAUC 49.2 with the
# paper's absolute epsilon 0.01, 86.5 with the relative default (README, PaDiM); its bound is
# >= 85.
MIN_IMAGE_ROCAUC = {"mvtec_bottle": 0.95, "mvtec3d_tire": 0.6, "loco_juice_bottle": 0.8}
MIN_PIXEL_ROCAUC = {"mvtec3d_tire": 0.8, "loco_juice_bottle": 0.75}
PIXEL_BOUND = {("padim", "mvtec3d_tire"): 0.85}
NO_PIXEL_BOUND: set = set()
CASES = [("patchcore", c) for c in CATEGORIES] + [
    (d, c) for d in ("padim", "spade") for c in CATEGORIES
]
# defaults everywhere: the 10% coreset takes 4-10 s per category now (README, Speed on the CPU)
OPTIONS: dict[str, list[str]] = {}
# FP16 parity everywhere but SPADE's juice and bottle runs, the slowest in CI (~1 min per
# parity run on 2 cores); SPADE keeps its worst FP16 case, tire (README has all nine).
NO_FP16 = {("spade", "loco_juice_bottle"), ("spade", "mvtec_bottle")}


@pytest.mark.parametrize(("detector", "category"), CASES)
def test_real_category(detector, category, tmp_path):
    data = real_category(category)
    bundle = tmp_path / "bundle"
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "-q",
            "export",
            detector,
            "--data",
            str(data),
            "--out",
            str(bundle),
            *OPTIONS.get(detector, []),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((bundle / "manifest.json").read_text())["metrics"]
    assert metrics["image_rocauc"] >= MIN_IMAGE_ROCAUC[category], metrics
    if category == "mvtec_bottle":  # ships without masks: image labels only
        assert metrics["pixel_rocauc"] is None
    elif (detector, category) not in NO_PIXEL_BOUND:
        bound = PIXEL_BOUND.get((detector, category), MIN_PIXEL_ROCAUC[category])
        assert metrics["pixel_rocauc"] >= bound, metrics

    # the threshold comes from held-out good images at 1%, bounded at 95% confidence; what it
    # costs on the test set: at most 1 good image flagged (measured 0-1 for every pair with
    # the newest held out: README, Thresholds)
    manifest = json.loads((bundle / "manifest.json").read_text())
    cal = manifest["normalization"]["calibration"]
    assert cal["target_frr"] == 0.01 and cal["image"]["n_images"] >= 20, cal
    assert cal["confidence"] == 0.95 and cal["image"]["frr_bound"] <= 0.0101, cal["image"]
    assert cal["test"]["false_rejects"] <= 1, cal["test"]
    assert cal["f1_optimal"]["note"].startswith("diagnostic")

    # FP32 graph: reproduces the original; FP16 graph: ROCAUC within 0.5 points of it
    for precision in ("fp32",) if (detector, category) in NO_FP16 else ("fp32", "fp16"):
        report = tmp_path / f"parity_{precision}.json"
        # batches of 8: the same comparisons, less of CI's time
        args = ["-q", "parity", str(bundle), str(data), "--precision", precision, "--batch", "8"]
        result = runner.invoke(main, [*args, "--json", str(report)])
        assert result.exit_code == 0, (precision, result.output)
        parity = json.loads(report.read_text())
        assert parity["passed"], (precision, parity["rows"])
        rows = {r["check"].split(" (")[0]: r for r in parity["rows"]}
        assert rows["image ROCAUC"]["ok"] and rows["per-image score"]["ok"], precision
        assert parity["latency_ms"]["graph"]["p50"] > 0

    if detector == "patchcore" and category != "mvtec_bottle":  # bottle ships without masks
        assert regions_on_defects(bundle, data) >= 0.8


def regions_on_defects(bundle, data) -> float:
    """Of the defective test images the bundle flags, the share with a region box on the
    ground-truth defect (measured: tire 3 of 3, juice 106 of 108 with PatchCore's defaults)."""
    import cv2

    from edgead.data.datasets import open_dataset
    from edgead.runtime import Pipeline

    bad = [s for s in open_dataset(data).test_samples() if s.label == 1]
    flagged = hit = 0
    with Pipeline(bundle) as pipeline:
        for sample, r in zip(bad, pipeline.predict_files([s.path for s in bad]), strict=True):
            if r.label != "anomalous":
                continue
            flagged += 1
            mask = cv2.imread(str(sample.mask_path), cv2.IMREAD_GRAYSCALE) > 0
            hit += any(mask[g.y : g.y + g.height, g.x : g.x + g.width].any() for g in r.regions)
    assert flagged >= 3, "too few defects flagged to judge the regions"
    return hit / flagged


# PUAD (which carries EfficientAD's map and score) with a CI-sized training run: 128x128, 60
# steps on a teacher distilled for 20. That is far from the paper's 70,000 steps and says
# little about EfficientAD's accuracy (README gives longer runs); what it proves on real data
# is the machinery: fit, export, FP32 and FP16 parity, and PUAD's image-level Gaussian working.
PUAD_CI = ["--image-size", "128", "--steps", "60", "--teacher-steps", "20"]
MIN_PUAD_IMAGE_ROCAUC = 0.7  # measured 0.84


def test_puad_short_run_on_logical_anomalies(tmp_path):
    data = real_category("loco_juice_bottle")
    bundle = tmp_path / "bundle"
    runner = CliRunner()
    result = runner.invoke(
        main, ["-q", "export", "puad", "--data", str(data), "--out", str(bundle), *PUAD_CI]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((bundle / "manifest.json").read_text())
    metrics = manifest["metrics"]
    print("PUAD short run", metrics)
    assert metrics["image_rocauc"] >= MIN_PUAD_IMAGE_ROCAUC, metrics
    assert manifest["fit"]["validation"].startswith("54 images of validation/good")
    for precision in ("fp32", "fp16"):
        report = tmp_path / f"parity_{precision}.json"
        result = runner.invoke(
            main,
            [
                "-q",
                "parity",
                str(bundle),
                str(data),
                "--precision",
                precision,
                "--json",
                str(report),
            ],
        )
        assert result.exit_code == 0, result.output
        parity = json.loads(report.read_text())
        rows = {r["check"].split(" (")[0]: r for r in parity["rows"]}
        assert parity["passed"] and rows["image ROCAUC"]["ok"], (precision, parity["rows"])
