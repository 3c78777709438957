"""The last INT8 level: NNCF's accuracy control keeps in FP32 the layers that cost the scores'
fidelity on held-out good images, where the fixed levels fail the gate everywhere."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("nncf", reason="INT8 quantization needs `pip install 'edgead[openvino]'`")

from edgead.bundle import roles
from edgead.bundle.io import open_bundle
from edgead.data.datasets import open_dataset
from edgead.data.images import file_digest, read_image
from edgead.export.int8_control import Fidelity, fp32_weighted, held_out_good
from edgead.export.quantize import WEIGHTED, Int8Settings, add_int8_graph, fold_shapes
from edgead.runtime.preprocess import preprocess
from tests.conftest import rewrite_manifest, shuffle_conv_weights


@pytest.fixture
def fixed_levels_fail(monkeypatch):
    """Every fixed level's graph gets its convolution weights shuffled: it fails any gate.
    Accuracy control quantizes the graph itself and is left as it is."""
    import edgead.export.quantize as quantize

    real = quantize.quantize_graph

    def wrecked(model, batches, input_name, quantizer, keep):
        return real(shuffle_conv_weights(model), batches, input_name, quantizer, keep)

    monkeypatch.setattr(quantize, "quantize_graph", wrecked)


def test_accuracy_control_is_the_last_level_and_records_its_fidelity(
    fitted, synthetic_data, tmp_path, fixed_levels_fail
):
    import edgead.export.quantize as quantize

    root = shutil.copytree(fitted.bundle("patchcore"), tmp_path / "patchcore")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["parity"] |= {"int8_rocauc_points": 3.0, "int8_rank": 0.95}
    rewrite_manifest(root / "manifest.json", manifest)
    meta = add_int8_graph(root, synthetic_data, Int8Settings(images=4, backends=("onnxruntime",)))

    assert meta["kept_fp32_level"] == (
        "the layers NNCF's accuracy control reverted (fidelity >= 0.97)"
    )
    assert [t["kept_fp32_level"] for t in meta["tried"]] == [
        "the post-processing tail",
        "the post-processing tail and the depthwise convolutions",
    ]
    assert all("onnxruntime: " in t["failed"] for t in meta["tried"])
    assert meta["gate"]["onnxruntime"]["passed"]
    assert meta["fidelity"] >= 0.97
    held = held_out_good(open_bundle(root), synthetic_data)
    assert meta["fidelity_images"] == len(held) > 0
    # the tail stays FP32 at this level too, and what was kept is named
    tail = set(quantize.fp32_tail(fold_shapes(root / "graph.onnx")))
    assert tail <= set(meta["kept_fp32"])
    assert open_bundle(root).manifest.artifact(roles.ONNX_INT8).meta == meta


def test_without_accuracy_control_the_fixed_levels_are_all(
    fitted, synthetic_data, tmp_path, fixed_levels_fail
):
    from edgead.errors import EdgeadError

    root = shutil.copytree(fitted.bundle("patchcore"), tmp_path / "patchcore")
    before = (root / "manifest.json").read_text()
    settings = Int8Settings(images=4, backends=("onnxruntime",), fidelity_drops=())
    with pytest.raises(EdgeadError, match="the post-processing tail and the depthwise"):
        add_int8_graph(root, synthetic_data, settings)
    assert (root / "manifest.json").read_text() == before


def test_held_out_good_images_are_good_images_the_model_was_not_fitted_on(fitted, synthetic_data):
    bundle = open_bundle(fitted.bundle("patchcore"))
    fitted_images = set(bundle.path(roles.FIT_IMAGES).read_text().split())
    held = held_out_good(bundle, synthetic_data)
    assert held
    assert not {file_digest(p) for p in held} & fitted_images
    train = set(open_dataset(synthetic_data).train_paths())
    validation = set(open_dataset(synthetic_data).validation_paths())
    assert set(held) <= train | validation


def test_fidelity_is_one_for_the_fp32_graph_and_falls_with_its_error(fitted, synthetic_data):
    from onnx import numpy_helper

    bundle = open_bundle(fitted.bundle("patchcore"))
    model = fold_shapes(bundle.path(roles.ONNX))
    spec = bundle.manifest.input
    batches = [preprocess(read_image(p), spec)[None] for p in held_out_good(bundle, synthetic_data)]
    fidelity = Fidelity(bundle, model, batches, threads=1)
    same, per_image = fidelity(model, enumerate(batches))
    assert same == pytest.approx(1.0) and len(per_image) == len(batches)

    noisy = fold_shapes(bundle.path(roles.ONNX))
    rng = np.random.default_rng(1)
    for init in noisy.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.ndim == 4:
            w = w * (1 + 0.2 * rng.standard_normal(w.shape)).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    worse, _ = fidelity(noisy, enumerate(batches))
    assert worse < 0.99


def test_fp32_weighted_names_the_layers_whose_weights_are_not_quantized(fitted, quantized):
    bundle = open_bundle(fitted.bundle("patchcore"))
    fp32 = fold_shapes(bundle.path(roles.ONNX))
    weighted = [n.name for n in fp32.graph.node if n.op_type in WEIGHTED]
    assert weighted and fp32_weighted(fp32) == weighted
    import onnx

    root, meta = quantized
    int8 = onnx.load(str(root / "graph_int8.onnx"))
    assert fp32_weighted(int8) == [n for n in meta["kept_fp32"] if n in weighted]
