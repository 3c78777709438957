"""Every detector on the real MVTec-layout subsets (EfficientNet-Lite0): fit, export, parity.

PatchCore runs with the paper's PatchCore-1% setting (coreset ratio 0.01) to keep CI within
its time budget; the README and closing notes give the default 10% as well.
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
# loco_juice_bottle holds logical anomalies only. PaDiM's pixel maps on mvtec3d_tire are at
# chance with the paper's epsilon 0.01 on EfficientNet-Lite0 features (measured 49.2: 0.01 is
# 0.1% of their mean variance; README, PaDiM, has the epsilon sweep): no pixel bound is
# asserted for that pair, parity still is.
MIN_IMAGE_ROCAUC = {"mvtec_bottle": 0.95, "mvtec3d_tire": 0.6, "loco_juice_bottle": 0.8}
MIN_PIXEL_ROCAUC = {"mvtec3d_tire": 0.8, "loco_juice_bottle": 0.75}
NO_PIXEL_BOUND = {("padim", "mvtec3d_tire")}
CASES = [("patchcore", c) for c in CATEGORIES] + [
    (d, c) for d in ("padim", "spade") for c in CATEGORIES
]
OPTIONS = {"patchcore": ["--coreset-ratio", "0.01"]}
# FP16 parity (#5) everywhere but SPADE's juice and bottle runs, the slowest in CI (~1 min per
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
        assert metrics["pixel_rocauc"] >= MIN_PIXEL_ROCAUC[category], metrics

    # FP32 graph: reproduces the original; FP16 graph: ROCAUC within 0.5 points of it (#5)
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
        assert parity["latency_ms"]["backbone"]["p50"] > 0


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
