"""The default runtime (``--backend auto --precision auto``) and the checks an INT8 graph is
gated on: rank correlation and one-sided rates at the threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgead.bundle.io import read_manifest
from edgead.bundle.manifest import ParityTolerance
from edgead.runtime import choice
from edgead.runtime.parity import _row, int8_rows

OLD_BUNDLE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "bundle_v1_0_patchcore"


@pytest.fixture()
def manifest():
    return read_manifest(OLD_BUNDLE)


def test_auto_runs_the_recorded_choice_where_its_backend_is_installed(manifest, monkeypatch):
    manifest.runtime = {"backend": "openvino", "precision": "int8"}
    monkeypatch.setattr(choice, "installed", lambda name: True)
    assert choice.resolve_auto(manifest, "auto", "auto") == ("openvino", "int8")
    # a backend given by the user: its FP32 unless a precision is given too
    assert choice.resolve_auto(manifest, "onnxruntime", "auto") == ("onnxruntime", "fp32")
    assert choice.resolve_auto(manifest, "auto", "fp16") == ("openvino", "fp16")
    monkeypatch.setattr(choice, "installed", lambda name: name != "openvino")
    assert choice.resolve_auto(manifest, "auto", "auto") == ("onnxruntime", "fp32")


def test_a_bundle_without_a_recorded_choice_runs_onnxruntime_fp32(manifest):
    assert manifest.runtime == {}
    assert choice.resolve_auto(manifest, "auto", "auto") == ("onnxruntime", "fp32")


def test_int8_tolerances_apply_to_int8_only():
    tol = ParityTolerance()
    assert tol.for_precision("int8").image_rocauc_points == tol.int8_rocauc_points == 0.5
    assert tol.for_precision("fp32").image_rocauc_points == 0.1


def test_rocauc_is_one_sided_for_int8():
    assert _row("image ROCAUC", 80.0, 81.7, 0.5, "points", one_sided=True).ok
    assert not _row("image ROCAUC", 80.0, 79.4, 0.5, "points", one_sided=True).ok
    assert not _row("image ROCAUC", 80.0, 81.7, 0.5, "points").ok  # FP32/FP16: both ways


def test_int8_rows_gate_ranks_and_rates_at_the_threshold():
    rng = np.random.default_rng(0)
    labels = [0] * 50 + [1] * 50
    original = np.concatenate([rng.normal(0, 1, 50), rng.normal(3, 1, 50)])
    tol = ParityTolerance()
    same = {r.check: r for r in int8_rows(tol, labels, original, original + 1e-6, 2.0)}
    assert all(r.ok for r in same.values()), same
    assert set(same) == {
        "image score ranks (Spearman)",
        "detection rate at threshold",
        "false-reject rate at threshold (test good)",
    }
    # every score up by one: ranks are kept, but good parts cross the threshold
    shifted = {r.check: r for r in int8_rows(tol, labels, original, original + 1.0, 2.0)}
    assert shifted["image score ranks (Spearman)"].ok
    assert not shifted["false-reject rate at threshold (test good)"].ok
    assert shifted["detection rate at threshold"].ok  # more detections is no loss
    shuffled = {
        r.check: r for r in int8_rows(tol, labels, original, rng.permutation(original), None)
    }
    assert not shuffled["image score ranks (Spearman)"].ok
    assert list(shuffled) == ["image score ranks (Spearman)"]  # no threshold: no rate rows
