"""PatchCore on the real MVTec-layout subsets (EfficientNet-Lite0): fit, export, parity.

CI uses the paper's PatchCore-1% setting (coreset ratio 0.01) to stay within its time budget;
the closing notes and the README give numbers for the default 10% as well.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from edgead.cli import main
from tests.conftest import real_category

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.mark.parametrize(
    ("category", "min_image_auc"), [("mvtec3d_tire", 0.6), ("mvtec_bottle", 0.95)]
)
def test_patchcore_real_category(category, min_image_auc, tmp_path):
    data = real_category(category)
    bundle = tmp_path / "bundle"
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "-q",
            "export",
            "patchcore",
            "--data",
            str(data),
            "--out",
            str(bundle),
            "--coreset-ratio",
            "0.01",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((bundle / "manifest.json").read_text())
    metrics = manifest["metrics"]
    assert metrics["image_rocauc"] >= min_image_auc, metrics
    if category == "mvtec3d_tire":
        assert metrics["pixel_rocauc"] is not None and metrics["pixel_rocauc"] > 0.8
    else:  # mvtec_bottle ships without masks: image labels only
        assert metrics["pixel_rocauc"] is None

    report = tmp_path / "parity.json"
    result = runner.invoke(main, ["-q", "parity", str(bundle), str(data), "--json", str(report)])
    assert result.exit_code == 0, result.output
    parity = json.loads(report.read_text())
    assert parity["passed"]
    rows = {r["check"].split(" (")[0]: r for r in parity["rows"]}
    assert rows["image ROCAUC"]["ok"] and rows["per-image score"]["ok"]
