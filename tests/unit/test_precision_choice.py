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


def _with_int8(manifest, isa):
    from edgead.bundle import roles
    from edgead.bundle.manifest import Artifact

    manifest.artifacts.append(
        Artifact(
            "graph_int8.onnx",
            roles.ONNX_INT8,
            "onnx",
            "0" * 64,
            1,
            "int8",
            {"gated_on": {"cpu": "a gate CPU", "isa": isa}},
        )
    )
    manifest.runtime = {"backend": "onnxruntime", "precision": "int8"}
    return manifest


def test_auto_runs_int8_only_on_a_cpu_with_the_instruction_sets_it_was_gated_with(
    manifest, monkeypatch, caplog
):
    _with_int8(manifest, ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"])
    monkeypatch.setattr(choice, "instruction_sets", lambda: ["avx2", "avx512f", "avx512_vnni"])
    assert choice.resolve_auto(manifest, "auto", "auto") == ("onnxruntime", "int8")
    monkeypatch.setattr(choice, "instruction_sets", lambda: ["avx2"])
    with caplog.at_level("WARNING"):
        assert choice.resolve_auto(manifest, "auto", "auto") == ("onnxruntime", "fp32")
    assert "held parity on a gate CPU (avx2, avx512_vnni, avx512f)" in caplog.text
    assert "this CPU has avx2" in caplog.text
    # asked for by name, it runs (the pipeline warns)
    assert choice.resolve_auto(manifest, "auto", "int8") == ("onnxruntime", "int8")


def test_int8_machine_note_ignores_what_int8_does_not_use():
    gated = {"cpu": "x", "isa": ["avx2", "avx512_bf16"]}
    assert choice.int8_machine_note(gated, ["avx2", "amx_bf16"]) is None
    assert choice.int8_machine_note(gated, ["avx2", "avx_vnni"]) is not None
    assert choice.int8_machine_note(None, ["avx2"]) is None  # graphs quantized before the record


def test_int8_by_name_with_auto_backend_runs_where_its_gate_passed(manifest, monkeypatch):
    _with_int8(manifest, [])
    manifest.artifacts[-1].meta["gate"] = {
        "onnxruntime": {"passed": True},
        "openvino": {"passed": False},
    }
    manifest.runtime = {"backend": "openvino", "precision": "fp32"}
    monkeypatch.setattr(choice, "installed", lambda name: True)
    monkeypatch.setattr(choice, "instruction_sets", lambda: [])
    assert choice.resolve_auto(manifest, "auto", "int8") == ("onnxruntime", "int8")
    assert choice.resolve_auto(manifest, "auto", "auto") == ("openvino", "fp32")


def test_the_default_gives_up_precision_only_for_a_clear_gain():
    from edgead.export.runtime_choice import choose

    # 3% faster in FP16 is noise: the FP32 graph of the faster backend stays the default
    assert choose({"onnxruntime fp32": 2.38, "openvino fp32": 1.94, "openvino fp16": 1.89}) == (
        "openvino fp32"
    )
    # a backend within the noise of the plain default does not replace it
    assert choose({"onnxruntime fp32": 2.0, "openvino fp32": 1.9}) == "onnxruntime fp32"
    # a clear gain at a lower precision is taken (INT8 is a candidate only once gated)
    assert choose({"onnxruntime fp32": 6.0, "openvino fp32": 5.8, "openvino int8": 2.2}) == (
        "openvino int8"
    )
    assert choose({"openvino fp16": 3.0}) == "openvino fp16"


def test_results_tables_tell_apart_cpus_with_different_int8_instruction_sets():
    from edgead.runtime.bench import cpu_label

    zen4 = {"cpu": "AMD EPYC", "isa": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]}
    zen5 = {**zen4, "isa": [*zen4["isa"], "avx_vnni"]}
    spr = {"cpu": "Intel Xeon", "isa": ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"]}
    assert cpu_label(zen4) == "AMD EPYC, AVX-512 VNNI"
    assert cpu_label(zen5) == "AMD EPYC, AVX-512 VNNI + AVX-VNNI"
    assert cpu_label(spr) == "Intel Xeon, AMX + AVX-512 VNNI + AVX-VNNI"
    assert cpu_label({"cpu": "AMD EPYC", "isa": ["avx2"]}) == "AMD EPYC, AVX2"
    assert cpu_label({"cpu": "x"}) == "x, instruction sets not recorded"
    # the INT8 graph's gate compares the same sets (edgead.runtime.choice.int8_machine_note)
    assert choice.int8_machine_note({"isa": zen5["isa"]}, here=zen4["isa"]) is not None
