"""The architecture's promises: a detector is one registered class (the toy detector of the
test suite gets the verbs and the contract tests from the registry alone), a bundle written
before the layout changed still loads and passes parity, and modules stay small."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from edgead.cli import main
from edgead.runtime.parity import run_parity

REPO = Path(__file__).resolve().parents[2]
OLD_BUNDLE = REPO / "tests" / "fixtures" / "bundle_v1_0_patchcore"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_toy_detector_gets_fit_and_export_verbs(synthetic_data, tmp_path):
    listing = invoke("fit", "--help")
    assert "toy" in listing.output and "distance to the mean feature" in listing.output
    assert "--channels" in invoke("export", "toy", "--help").output  # its own option group
    fit = invoke(
        "-q",
        "fit",
        "toy",
        "--data",
        str(synthetic_data),
        "--out",
        str(tmp_path / "model"),
        "--channels",
        "6",
    )
    assert fit.exit_code == 0, fit.output
    export = invoke(
        "export",
        "toy",
        "--model",
        str(tmp_path / "model"),
        "--out",
        str(tmp_path / "bundle"),
        "-q",  # after the verb too
    )
    assert export.exit_code == 0, export.output
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["detector"] == "toy" and manifest["params"]["channels"] == 6
    assert run_parity(tmp_path / "bundle", synthetic_data, quiet=True).passed


def old_bundle_data(root: Path) -> Path:
    """The synthetic set the fixture bundle was evaluated on (same generator and seed)."""
    from edgead.data.synthetic import generate

    return generate(root / "parts", n_train=12, n_test_good=4, n_test_defect=3, size=96, seed=7)


def test_a_bundle_written_before_the_layout_change_loads_and_passes_parity(tmp_path):
    """tests/fixtures/bundle_v1_0_patchcore: written by edgead at 0ca3b3c (schema 1.0, models/
    and export/ layout, F1 thresholds) with `edgead export patchcore --image-size 64 --layers
    blocks.1,blocks.2 --coreset-ratio 0.1` on this synthetic set."""
    data = old_bundle_data(tmp_path)
    manifest = json.loads((OLD_BUNDLE / "manifest.json").read_text())
    assert manifest["schema_version"] == "1.0" and "calibration" not in manifest["normalization"]
    report = run_parity(OLD_BUNDLE, data, quiet=True)
    assert report.passed, report.table()
    # and it can be recalibrated into a new revision that still passes
    bundle = tmp_path / "bundle"
    shutil.copytree(OLD_BUNDLE, bundle)
    result = invoke("-q", "calibrate", str(bundle), str(data / "train" / "good"))
    assert result.exit_code == 0, result.output
    new = json.loads((bundle / "manifest.json").read_text())
    assert new["revision"] == 2 and new["normalization"]["calibration"]["image"]["n_images"] == 12
    # the graph's role as older manifests named it is read, and written back by today's name
    assert "backbone" in {a["role"] for a in manifest["artifacts"]}
    assert "graph" in {a["role"] for a in new["artifacts"]} and new["schema_version"] == "1.4"
    assert run_parity(bundle, data, quiet=True).passed


def test_no_module_over_400_lines():
    sizes = {
        str(p.relative_to(REPO)): len(p.read_text().splitlines())
        for p in (REPO / "edgead").rglob("*.py")
    }
    assert max(sizes.values()) <= 400, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


def test_the_cli_holds_no_per_detector_knowledge():
    """Verbs and options come from the registry; only the demo names the detector it shows."""
    for path in (REPO / "edgead" / "cli").glob("*.py"):
        if path.name == "demo.py":
            continue
        text = path.read_text().lower()
        for name in ("patchcore", "padim", "spade", "efficientad", "puad"):
            assert name not in text, (path.name, name)
