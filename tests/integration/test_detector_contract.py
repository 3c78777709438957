"""Contract tests over every registered detector: a new detector is tested by registering it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from edgead.bundle import open_bundle
from edgead.bundle.io import sha256_file
from edgead.cli import main
from edgead.detectors.registry import detector_names
from edgead.errors import BundleError
from edgead.runtime import Pipeline
from edgead.runtime.parity import run_parity
from tests.conftest import SMALL_CONFIGS, rewrite_manifest

NAMES = detector_names()


def test_every_registered_detector_is_here():
    builtin = {"patchcore", "padim", "spade", "efficientad", "puad"}
    assert builtin <= set(NAMES) and "toy" in NAMES  # tests/toy_detector.py
    assert set(SMALL_CONFIGS) == set(QUALITY) == builtin


# What each detector reaches on the synthetic set at its SMALL_CONFIGS budget. EfficientAD's
# 40 training steps leave its maps untrained (it needs tens of thousands of steps): its
# detection is measured on real data with longer runs (README), its machinery here. PUAD's
# global Gaussian ranks the synthetic defects above chance at image level at this budget, on
# 18 test images: measured 0.53 / 0.60 / 0.56 (seeds 0-2) with the newest training images
# held out, 0.69 / 0.74 / 0.64 with a random holdout: noise of 2 held-out images and 40 steps.
QUALITY = {
    "patchcore": {"image_rocauc": 0.7, "pixel_rocauc": 0.9, "aupro": 0.5},
    "padim": {"image_rocauc": 0.7, "pixel_rocauc": 0.9, "aupro": 0.5},
    "spade": {"image_rocauc": 0.7, "pixel_rocauc": 0.9, "aupro": 0.5},
    "efficientad": {},
    "puad": {"image_rocauc": 0.5},
}


@pytest.mark.parametrize("name", NAMES)
def test_fit_detects_synthetic_defects(fitted, name):
    m = fitted.model(name).evaluation.metrics
    assert m.image_rocauc is not None and m.pixel_rocauc is not None and m.aupro is not None
    for metric, bound in QUALITY.get(name, {}).items():
        assert getattr(m, metric) > bound, (metric, m)


@pytest.mark.parametrize("name", NAMES)
def test_bundle_passes_parity(fitted, name, synthetic_data):
    report = run_parity(fitted.bundle(name), synthetic_data, quiet=True)
    assert report.passed, report.table()
    rows = {r.check.split(" (")[0]: r for r in report.rows}
    for check in ("image ROCAUC", "pixel ROCAUC", "AUPRO", "per-image score"):
        assert rows[check].ok, report.table()
    manifest = open_bundle(fitted.bundle(name)).manifest
    assert manifest.detector == name
    assert set(manifest.graph.output_names) <= set(
        np.load(fitted.bundle(name) / "golden.npz").files
    )


@pytest.mark.parametrize("name", NAMES)
def test_runtime_matches_pytorch_per_image(fitted, name, synthetic_data):
    import torch

    from edgead.data.images import read_image
    from edgead.runtime.preprocess import preprocess

    paths = sorted((synthetic_data / "test" / "missing").glob("*.png"))[:2]
    images = [read_image(p) for p in paths]
    # FP32 against the FP32 model (`auto` may run an FP16 graph the export measured faster)
    with Pipeline(fitted.bundle(name), backend="onnxruntime", precision="fp32") as pipe:
        preds = pipe.predict(images)
        batch = torch.from_numpy(np.stack([preprocess(i, pipe.spec) for i in images]))
    ref = fitted.model(name).model(batch)
    np.testing.assert_allclose(
        [p.image_score for p in preds], ref["image_score"].numpy(), rtol=1e-4
    )
    np.testing.assert_allclose(
        np.stack([p.anomaly_map for p in preds]), ref["anomaly_map"].numpy(), rtol=1e-3, atol=1e-3
    )


@pytest.mark.parametrize("name", NAMES)
def test_saved_model_round_trip_and_cli_export(fitted, name, tmp_path, synthetic_data):
    from edgead.components import saved as saved_models

    saved_models.save(tmp_path / "model", fitted.model(name))
    result = CliRunner().invoke(
        main,
        [
            "-q",
            "export",
            name,
            "--model",
            str(tmp_path / "model"),
            "--out",
            str(tmp_path / "bundle"),
        ],
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["-q", "parity", str(tmp_path / "bundle")])
    assert result.exit_code == 0, result.output
    other = next(n for n in NAMES if n != name)
    result = CliRunner().invoke(
        main,
        [
            "-q",
            "export",
            other,
            "--model",
            str(tmp_path / "model"),
            "--out",
            str(tmp_path / "wrong"),
        ],
    )
    assert result.exit_code == 1 and f"a {name} model, not {other}" in result.output


@pytest.mark.parametrize("name", NAMES)
def test_tampered_artifact_is_refused(fitted, name, tmp_path):
    copy = shutil.copytree(fitted.bundle(name), tmp_path / "b")
    manifest = open_bundle(copy).manifest
    victim = next(a for a in manifest.artifacts if a.role not in ("graph", "golden"))
    path = copy / victim.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum does not match") as err:
        Pipeline(copy)
    assert victim.path in str(err.value)


def _replace_artifact(bundle, role, write):
    """Swap an artifact's content and fix its checksum, as a buggy exporter would."""
    manifest_path = bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = next(a for a in manifest["artifacts"] if a["role"] == role)
    target = bundle / entry["path"]
    write(target)
    entry["sha256"], entry["size"] = sha256_file(target), target.stat().st_size
    rewrite_manifest(manifest_path, manifest)


def test_padim_missing_or_misshapen_statistics(fitted, tmp_path):
    copy = shutil.copytree(fitted.bundle("padim"), tmp_path / "b")
    (copy / "statistics.npz").unlink()
    with pytest.raises(BundleError, match="missing statistics file"):
        Pipeline(copy)
    copy = shutil.copytree(fitted.bundle("padim"), tmp_path / "c")

    def wrong_shape(path):
        with np.load(path) as s:
            arrays = dict(s)
        arrays["mean"] = arrays["mean"][:, :-1]
        np.savez(path, **arrays)

    _replace_artifact(copy, "statistics", wrong_shape)
    with pytest.raises(BundleError, match="statistics have shapes"):
        Pipeline(copy)


def test_padim_refuses_statistics_bigger_than_memory(fitted, monkeypatch):
    from edgead.runtime.scorers import gaussian

    monkeypatch.setattr(gaussian, "available_bytes", lambda: 1000)
    with pytest.raises(BundleError, match=r"need .* of memory and only 1000 B is available"):
        Pipeline(fitted.bundle("padim"))


def test_padim_fit_refuses_before_running_out_of_memory(synthetic_data, monkeypatch):
    from edgead.detectors.padim import model as padim
    from edgead.errors import EdgeadError

    monkeypatch.setattr(padim, "available_bytes", lambda: 10_000_000)
    config = padim.PadimConfig(image_size=(128, 128), n_features=120)
    with pytest.raises(EdgeadError, match=r"needs .* to fit, 9\.5 MiB is available"):
        padim.fit(config, sorted((synthetic_data / "train" / "good").glob("*.png")), quiet=True)


def test_spade_gallery_must_fit_the_graph(fitted, tmp_path):
    copy = shutil.copytree(fitted.bundle("spade"), tmp_path / "b")
    _replace_artifact(copy, "gallery_1", lambda p: np.save(p, np.load(p)[:, :-1]))
    with pytest.raises(BundleError, match="gallery shape"):
        Pipeline(copy)


def test_export_refuses_a_bundle_that_fails_its_own_golden_check(fitted, tmp_path, monkeypatch):
    """The staged bundle goes through the runtime before it lands: here FP16 is held to an
    FP32-tight tolerance, which its image scores miss, so nothing is written."""
    from edgead.bundle.manifest import ParityTolerance
    from edgead.errors import EdgeadError
    from edgead.workflows import export_model

    strict = ParityTolerance(score_rel=1e-7, golden_rel=1e-7)
    original = ParityTolerance.for_precision
    monkeypatch.setattr(
        ParityTolerance,
        "for_precision",
        lambda self, p: strict if p == "fp16" else original(self, p),
    )
    out = tmp_path / "bundle"
    with pytest.raises(EdgeadError, match=r"fp16 bundle fails its golden check .*--no-fp16"):
        export_model(fitted.model("padim"), out)
    assert not out.exists() and not list(tmp_path.iterdir())  # no bundle, no staging left
    assert export_model(fitted.model("padim"), out, fp16=False) == out  # FP32-only is fine


def test_padim_reports_epsilon_against_the_feature_scale(fitted):
    import re

    text = fitted.model("padim").fit_report["details"]["covariance regularization"]
    found = re.fullmatch(
        r"epsilon (\S+) = (\S+) x the mean feature variance (\S+) \(--epsilon-relative\)", text
    )
    assert found, text
    epsilon, ratio, variance = (float(v) for v in found.groups())
    # the default scales with the features: 0.1 x their mean variance
    assert ratio == pytest.approx(0.1) and epsilon == pytest.approx(0.1 * variance, rel=0.01)
