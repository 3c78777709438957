"""The OpenVINO backend (the bundle's ONNX graphs, precision pinned) and INT8 graphs: calibrated
on fitted good images only, written only through the parity gate, run only where gated."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip(
    "openvino", reason="the openvino backend needs `pip install 'edgead[openvino]'`"
)
pytest.importorskip("nncf", reason="INT8 quantization needs `pip install 'edgead[openvino]'`")

from edgead.bundle import roles
from edgead.bundle.io import open_bundle
from edgead.detectors.registry import detector_names
from edgead.errors import BackendError, BundleError, EdgeadError
from edgead.export.quantize import Int8Settings, add_int8_graph, calibration_paths
from edgead.runtime import Pipeline
from edgead.runtime.parity import run_parity
from tests.conftest import rewrite_manifest, shuffle_conv_weights


@pytest.mark.parametrize("name", detector_names())
def test_openvino_fp32_passes_the_fp32_parity_of_every_detector(fitted, name, synthetic_data):
    report = run_parity(fitted.bundle(name), synthetic_data, backend="openvino")
    assert report.passed, report.table()
    assert report.backend.startswith("openvino[CPU f32]"), report.backend


def test_openvino_scores_like_onnxruntime_and_refuses_unknown_devices(fitted, synthetic_data):
    from edgead.data.images import read_image

    bundle = fitted.bundle("patchcore")
    images = [read_image(p) for p in sorted((synthetic_data / "test").glob("*/*.png"))[:4]]
    with (
        Pipeline(bundle, backend="openvino", precision="fp32") as v,
        Pipeline(bundle, backend="onnxruntime", precision="fp32") as o,
    ):
        a, b = v.predict(images), o.predict(images)
    np.testing.assert_allclose([p.image_score for p in a], [p.image_score for p in b], rtol=1e-4)
    with pytest.raises(BackendError, match="no device 'NPU' here; available: CPU"):
        Pipeline(bundle, backend="openvino", device="npu")


def test_openvino_outputs_outlive_the_next_call_and_inputs_are_left_as_given(fitted):
    """The backend reads its input in place and reuses its request: what one call returned
    must not change when the next call runs, and the caller's array must not be written."""
    from edgead.runtime.backends.base import create_backend

    graph = open_bundle(fitted.bundle("patchcore")).path(roles.ONNX)
    backend = create_backend("openvino", graph)
    with backend:
        name, meta = next(iter(backend.input_metadata().items()))
        shape = tuple(2 if d is None else d for d in meta.shape)
        rng = np.random.default_rng(0)
        a = rng.standard_normal(shape).astype(np.float32)
        b = rng.standard_normal(shape).astype(np.float32)
        a_before = a.copy()
        first = backend.infer({name: a})
        kept = {k: v.copy() for k, v in first.items()}
        second = backend.infer({name: b})
        np.testing.assert_array_equal(a, a_before)
        for k in first:
            np.testing.assert_array_equal(first[k], kept[k])
            assert not np.array_equal(first[k], second[k])


def test_int8_graph_is_added_with_its_calibration_and_gate(quantized, synthetic_data):
    root, meta = quantized
    bundle = open_bundle(root)  # checksums: the artifact was registered, not just copied
    artifact = bundle.manifest.artifact(roles.ONNX_INT8)
    assert artifact.meta == meta  # what quantize reports is what the manifest records
    assert artifact.precision == "int8" and artifact.meta["quantizer"] == "nncf"
    assert artifact.meta["calibration"]["images"] == 8
    gate = artifact.meta["gate"]["onnxruntime"]
    assert gate["passed"]
    checks = {r["check"] for r in gate["rows"]}
    assert {"image ROCAUC", "image score ranks (Spearman)"} <= checks, checks
    # the graph holds quantize/dequantize pairs: it is an INT8 graph, not a copy
    import onnx

    graph = onnx.load(str(bundle.path(roles.ONNX_INT8))).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # the post-processing after the last convolution stays FP32: recorded, and no quantizer
    # feeds its pooling
    kept = set(artifact.meta["kept_fp32"])
    assert any("AveragePool" in name or "pool" in name.lower() for name in kept), kept
    produced_by = {out: n for n in graph.node for out in n.output}
    for n in graph.node:
        if n.op_type == "AveragePool":
            assert produced_by[n.input[0]].op_type != "DequantizeLinear", n.name
    report = run_parity(root, synthetic_data, precision="int8")
    assert report.passed, report.table()


def test_int8_runs_only_on_the_backends_it_was_gated_on(quantized):
    root, _ = quantized
    with pytest.raises(BundleError, match="passed its parity gate on onnxruntime only"):
        Pipeline(root, backend="openvino", precision="int8")


def test_int8_parity_without_data_cannot_pass(quantized):
    """Output closeness is reported for INT8 but gates nothing: without the evaluation set
    there is nothing an INT8 graph is held to, so parity does not pass."""
    root, _ = quantized
    report = run_parity(root, None, precision="int8")
    assert not report.passed
    assert all(r.ok is None for r in report.rows), report.table()


def test_calibration_uses_only_images_the_model_was_fitted_on(fitted, synthetic_data):
    from edgead.data.images import file_digest

    bundle = open_bundle(fitted.bundle("patchcore"))
    fitted_digests = set(bundle.path(roles.FIT_IMAGES).read_text().split())
    train = list((synthetic_data / "train" / "good").glob("*.png"))
    held_out = [p for p in train if file_digest(p) not in fitted_digests]
    assert held_out, "the synthetic fit holds images out"
    chosen = calibration_paths(bundle, synthetic_data, 1000, 0)
    assert chosen and not set(chosen) & set(held_out)
    assert calibration_paths(bundle, synthetic_data, 5, 3) == calibration_paths(
        bundle, synthetic_data, 5, 3
    )


def test_a_graph_that_fails_the_gate_is_not_written(fitted, synthetic_data, tmp_path, monkeypatch):
    """A quantizer that wrecks the graph at every level (accuracy control's included): export
    names the failed checks with their figures, and the bundle is byte for byte what it was."""
    import copy

    import edgead.export.quantize as quantize

    def wrecked(model, *_):
        return shuffle_conv_weights(model)

    root = tmp_path / "patchcore"
    shutil.copytree(fitted.bundle("patchcore"), root)
    before = (root / "manifest.json").read_text()
    monkeypatch.setattr(quantize, "quantize_graph", wrecked)
    monkeypatch.setattr(
        quantize,
        "quantize_controlled",
        lambda bundle, model, *_: (wrecked(copy.deepcopy(model)), 0.5, []),
    )
    with pytest.raises(
        EdgeadError,
        match=r"fails parity on onnxruntime and is not written: .*"
        r"image score ranks \(Spearman\): 1 -> .*accuracy control reverted \(fidelity >= 0.97\)",
    ):
        add_int8_graph(root, synthetic_data, Int8Settings(images=4, backends=("onnxruntime",)))
    assert (root / "manifest.json").read_text() == before
    assert not (root / "graph_int8.onnx").exists()
    assert (
        json.loads(before)["artifacts"]
        == json.loads((root / "manifest.json").read_text())["artifacts"]
    )


def test_quantize_checks_its_settings_before_the_work(fitted, synthetic_data, tmp_path):
    with pytest.raises(EdgeadError, match="quantizer 'tflite'"):
        add_int8_graph(fitted.bundle("patchcore"), synthetic_data, Int8Settings(quantizer="tflite"))
    with pytest.raises(EdgeadError, match="--calibration-images 0"):
        add_int8_graph(fitted.bundle("patchcore"), synthetic_data, Int8Settings(images=0))


def test_bench_puts_backends_and_precisions_side_by_side(quantized, synthetic_data, tmp_path):
    from click.testing import CliRunner

    from edgead.cli import main

    root, _ = quantized
    args = ["bench", str(root), "--backend", "onnxruntime,openvino", "--precision", "fp32,int8"]
    args += ["--data", str(synthetic_data), "--iterations", "4", "--warmup", "1"]
    result = CliRunner().invoke(main, [*args, "--format", "json", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "bench.json").read_text())
    configs = {f"{c['backend']} {c['precision']}": c for c in report["configurations"]}
    assert list(configs) == [
        "onnxruntime fp32",
        "onnxruntime int8",
        "openvino fp32",
        "openvino int8",
    ]
    # gated on onnxruntime only: listed with the reason, the others measured on the same images
    assert "passed its parity gate on onnxruntime only" in configs["openvino int8"]["unavailable"]
    for label in ("onnxruntime fp32", "onnxruntime int8", "openvino fp32"):
        c = configs[label]
        assert c["unavailable"] is None and len(c["latency_samples_ms"]["graph"]) == 4
        assert c["accuracy"]["image_rocauc"] is not None
    assert configs["openvino fp32"]["runs_as"].startswith("openvino[CPU f32]")
    assert report["context"]["isa"] is not None
    result = CliRunner().invoke(main, [*args, "--format", "md"])
    assert result.exit_code == 0, result.output
    assert "| openvino int8" in result.output and "not run: " in result.output
    bad = CliRunner().invoke(main, ["bench", str(root), "--backend", "onnxruntime,tflite"])
    assert bad.exit_code == 2 and "one or more of auto, onnxruntime" in bad.output


def test_quantize_command_says_what_passed_and_the_default_it_measured(quantized, synthetic_data):
    from click.testing import CliRunner

    from edgead.bundle.io import read_manifest
    from edgead.cli import main

    root, _ = quantized
    args = ["quantize", str(root), "--data", str(synthetic_data), "--backend", "onnxruntime"]
    result = CliRunner().invoke(main, [*args, "--calibration-images", "8"])
    assert result.exit_code == 0, result.output
    assert "int8 on onnxruntime: passed (image ROCAUC" in result.output
    assert "default runtime now " in result.output
    runtime = read_manifest(root).runtime
    assert "onnxruntime int8" in runtime["graph_p50_ms"]
    assert "openvino fp32" in runtime["graph_p50_ms"]  # golden check passed there
    assert "parity gate on onnxruntime only" in runtime["not_candidates"]["openvino int8"]
    refused = CliRunner().invoke(main, [*args, "--calibration-images", "0"])
    assert refused.exit_code == 1 and "--calibration-images 0: at least 1" in refused.output


def test_export_int8_needs_data(tmp_path, fitted):
    from click.testing import CliRunner

    from edgead.cli import main
    from edgead.components import saved as saved_models

    saved = tmp_path / "model"
    saved_models.save(saved, fitted.model("patchcore"))
    result = CliRunner().invoke(
        main, ["export", "patchcore", "--model", str(saved), "--out", str(tmp_path / "b"), "--int8"]
    )
    assert result.exit_code == 2 and "--int8 calibrates and gates on --data" in result.output


def test_a_graph_that_fails_on_one_backend_is_kept_for_the_others(
    fitted, synthetic_data, tmp_path, monkeypatch
):
    """Gated on onnxruntime and OpenVINO, failing on OpenVINO only (as OpenVINO's INT8 of a
    graph quantized whole did on a CPU with AVX-512 VNNI): written, runs on onnxruntime,
    refused on OpenVINO with the figures it missed by in the manifest."""
    import edgead.runtime.parity as parity
    from edgead.runtime.choice import instruction_sets

    real = parity.run_parity

    def openvino_fails(bundle, data, *args, **kw):
        report = real(bundle, data, *args, **kw)
        if kw.get("backend") == "openvino":
            report.rows.append(parity._row("image ROCAUC", 90.0, 50.0, 0.5, "points", True))
        return report

    monkeypatch.setattr(parity, "run_parity", openvino_fails)
    root = tmp_path / "patchcore"
    shutil.copytree(fitted.bundle("patchcore"), root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["parity"] |= {"int8_rocauc_points": 3.0, "int8_rank": 0.95}
    rewrite_manifest(root / "manifest.json", manifest)
    meta = add_int8_graph(root, synthetic_data, Int8Settings(images=8))
    assert meta["gate"]["onnxruntime"]["passed"] and not meta["gate"]["openvino"]["passed"]
    assert any("image ROCAUC: " in f for f in meta["gate"]["openvino"]["failed"])
    assert meta["gated_on"]["isa"] == instruction_sets()
    with Pipeline(root, backend="onnxruntime", precision="int8"):
        pass
    with pytest.raises(BundleError, match="passed its parity gate on onnxruntime only"):
        Pipeline(root, backend="openvino", precision="int8")
    from click.testing import CliRunner

    from edgead.cli import main

    args = ["quantize", str(root), "--data", str(synthetic_data), "--calibration-images", "8"]
    said = CliRunner().invoke(main, args)
    assert said.exit_code == 0, said.output
    assert "int8 on onnxruntime: passed" in said.output
    assert "int8 on openvino: FAILED, will not run there (image ROCAUC: " in said.output


def test_int8_on_a_cpu_with_other_instruction_sets_is_said(quantized, monkeypatch, caplog):
    import edgead.runtime.choice as choice

    root, meta = quantized
    here = meta["gated_on"]["isa"]
    other = [f for f in ("avx2", "avx512f", "avx512_vnni") if f not in here] or ["amx_int8"]
    monkeypatch.setattr(choice, "instruction_sets", lambda: other)
    with caplog.at_level("WARNING"), Pipeline(root, backend="onnxruntime", precision="int8"):
        pass
    assert "the INT8 graph held parity on" in caplog.text
    assert f"edgead parity {root} DATA --backend onnxruntime --precision int8" in caplog.text


def test_the_depthwise_convolutions_stay_fp32_when_the_tail_alone_fails(
    fitted, synthetic_data, tmp_path, monkeypatch
):
    """A graph that fails the gate with only the tail in FP32 is quantized again with the
    depthwise convolutions kept too; what failed first is recorded with its figures."""

    import edgead.export.quantize as quantize

    real = quantize.quantize_graph
    levels = []

    def wrecked_unless_depthwise_kept(model, batches, input_name, quantizer, keep):
        depthwise = {
            n.name
            for n in model.graph.node
            if any(a.name == "group" and a.i > 1 for a in n.attribute)
        }
        levels.append(depthwise <= set(keep))
        if not depthwise <= set(keep):
            shuffle_conv_weights(model)
        return real(model, batches, input_name, quantizer, keep)

    root = shutil.copytree(fitted.bundle("patchcore"), tmp_path / "patchcore")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["parity"] |= {"int8_rocauc_points": 3.0, "int8_rank": 0.95}
    rewrite_manifest(root / "manifest.json", manifest)
    monkeypatch.setattr(quantize, "quantize_graph", wrecked_unless_depthwise_kept)
    meta = add_int8_graph(root, synthetic_data, Int8Settings(images=4, backends=("onnxruntime",)))
    assert levels == [False, True]
    assert meta["kept_fp32_level"] == "the post-processing tail and the depthwise convolutions"
    assert meta["gate"]["onnxruntime"]["passed"]
    (first,) = meta["tried"]
    assert first["kept_fp32_level"] == "the post-processing tail"
    assert "onnxruntime: " in first["failed"] and " -> " in first["failed"]
    assert open_bundle(root).manifest.artifact(roles.ONNX_INT8).meta == meta
