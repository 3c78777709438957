"""The INT8 TensorRT engine: built from the bundle's gated INT8 graph in the signed form
TensorRT takes, and written only after it holds the INT8 parity gate on the GPU that runs it.

Without a GPU (CI) the signed graph is built by TensorRT-RTX's builder to prove it compiles,
and the command refuses before any build with the reason; with one, the gate decides."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from edgead.bundle import open_bundle, roles  # noqa: E402
from edgead.cli import main  # noqa: E402
from edgead.export.engine import EngineSettings, _build_signed, signed_int8  # noqa: E402
from edgead.export.quantize import symmetric  # noqa: E402
from edgead.runtime.backends.trt_support import current_gpu  # noqa: E402
from tests.conftest import TRT_FLAVOUR, needs_trt_builder, rewrite_manifest  # noqa: E402


def zero_point_types(model) -> set[str]:
    inits = {t.name: t for t in model.graph.initializer}
    return {
        onnx.TensorProto.DataType.Name(inits[n.input[2]].data_type)
        for n in model.graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear")
    }


def test_the_signed_form_keeps_the_quantized_layers_and_their_ranges(quantized, synthetic_data):
    import onnxruntime as ort

    from edgead.data.images import read_image
    from edgead.runtime.preprocess import preprocess

    root, _ = quantized
    bundle = open_bundle(root)
    graph = onnx.load(str(bundle.path(roles.ONNX_INT8)))
    assert "UINT8" in zero_point_types(graph)  # NNCF: unsigned activations after a ReLU
    signed = signed_int8(onnx.load(str(bundle.path(roles.ONNX_INT8))))
    onnx.checker.check_model(signed, full_check=True)
    assert zero_point_types(signed) == {"INT8"} and symmetric(signed)
    count = sum(n.op_type == "QuantizeLinear" for n in graph.graph.node)
    assert sum(n.op_type == "QuantizeLinear" for n in signed.graph.node) == count
    # the same features but for the lost lowest bit: within a few steps of the unsigned graph
    name = bundle.manifest.graph.input_name
    x = np.concatenate(
        [
            preprocess(read_image(p), bundle.manifest.input)[None]
            for p in sorted((synthetic_data / "test").glob("*/*.png"))[:4]
        ]
    )
    a = ort.InferenceSession(graph.SerializeToString()).run(None, {name: x})[0]
    b = ort.InferenceSession(signed.SerializeToString()).run(None, {name: x})[0]
    assert np.abs(a - b).mean() < 0.1 * np.abs(a).mean()


@needs_trt_builder
def test_the_int8_graph_builds_into_an_engine(quantized, tmp_path):
    root, _ = quantized
    src = open_bundle(root).path(roles.ONNX_INT8)
    meta = _build_signed(src, tmp_path / "graph_int8.engine", EngineSettings(max_batch=4))
    assert meta["tensorrt"] == TRT_FLAVOUR and meta["from"] == "graph_int8.onnx"
    assert (tmp_path / "graph_int8.engine").stat().st_size > 10_000


def untouched(root):
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.skipif(bool(current_gpu()), reason="checks the refusal on a machine without a GPU")
def test_an_int8_engine_is_refused_before_any_build_without_data_or_gpu(
    quantized, synthetic_data, tmp_path
):
    root = shutil.copytree(quantized[0], tmp_path / "b")
    before = untouched(root)
    cmd = ["build-engine", str(root), "--precision", "fp16,int8"]
    result = CliRunner().invoke(main, cmd)
    assert result.exit_code == 1 and "give the evaluation data with --data" in result.output
    result = CliRunner().invoke(main, [*cmd, "--data", str(synthetic_data)])
    assert result.exit_code == 1, result.output
    assert "no CUDA GPU here to gate an INT8 engine on" in result.output
    assert untouched(root) == before  # not even the FP16 engine asked for alongside


def test_an_asymmetric_int8_graph_is_refused_for_tensorrt(quantized, synthetic_data, tmp_path):
    """onnxruntime's quantizer writes uint8 activations with zero points: TensorRT cannot."""
    root = shutil.copytree(quantized[0], tmp_path / "b")
    path = root / "graph_int8.onnx"
    model = onnx.load(str(path))
    for t in model.graph.initializer:
        if t.data_type == onnx.TensorProto.UINT8:
            t.CopyFrom(onnx.numpy_helper.from_array(np.array(128, np.uint8), t.name))
            break
    onnx.save(model, str(path))
    manifest = json.loads((root / "manifest.json").read_text())
    for a in manifest["artifacts"]:
        if a["path"] == "graph_int8.onnx":
            a["sha256"], a["size"] = (
                hashlib.sha256(path.read_bytes()).hexdigest(),
                path.stat().st_size,
            )
    rewrite_manifest(root / "manifest.json", manifest)
    result = CliRunner().invoke(
        main, ["build-engine", str(root), "--precision", "int8", "--data", str(synthetic_data)]
    )
    assert result.exit_code == 1
    assert "zero points other than 0" in result.output and "symmetric INT8 only" in result.output


def test_a_missing_int8_engine_says_how_to_build_and_gate_it(quantized):
    from edgead.errors import BundleError
    from edgead.runtime import Pipeline

    with pytest.raises(BundleError, match=r"build-engine .* --precision int8 --data DATA"):
        Pipeline(quantized[0], backend="tensorrt", precision="int8")


@pytest.mark.gpu
@pytest.mark.skipif(not current_gpu() or TRT_FLAVOUR is None, reason="gating an engine needs a GPU")
def test_an_int8_engine_is_written_only_through_its_gate(quantized, synthetic_data, tmp_path):
    from edgead.runtime.parity import run_parity

    root = shutil.copytree(quantized[0], tmp_path / "b")
    before = untouched(root)
    result = CliRunner().invoke(
        main, ["build-engine", str(root), "--precision", "int8", "--data", str(synthetic_data)]
    )
    if result.exit_code == 0:
        engine = open_bundle(root).manifest.artifact("engine_int8")
        assert engine.meta["gate"]["tensorrt"]["passed"]
        assert engine.meta["gated_on"]["gpu"] == current_gpu()["gpu"]
        report = run_parity(root, synthetic_data, backend="tensorrt", precision="int8", quiet=True)
        assert report.passed, report.table()
    else:
        assert "fails parity on this GPU and is not written" in result.output, result.output
        assert untouched(root) == before
