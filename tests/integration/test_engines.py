"""Every exported graph of every detector builds into a TensorRT engine.

In CI this uses TensorRT-RTX, whose builder runs without a GPU; with NVIDIA TensorRT installed
the same code builds with it. Running engines needs a GPU: those tests skip without one.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from edgead.bundle import open_bundle
from edgead.cli import main
from edgead.detectors.registry import detector_names
from edgead.errors import BackendError, BundleError
from edgead.runtime import Pipeline
from edgead.runtime.backends.trt_support import current_gpu
from tests.conftest import TRT_FLAVOUR, needs_trt_builder, rewrite_manifest

NAMES = detector_names()

needs_gpu = pytest.mark.skipif(
    not current_gpu() or TRT_FLAVOUR is None,
    reason="running an engine needs a CUDA GPU and TensorRT",
)


@pytest.fixture(scope="module")
def engine_bundles(fitted, tmp_path_factory):
    """Each detector's bundle with FP16 and FP32 engines built by the CLI."""
    if TRT_FLAVOUR is None:
        pytest.skip("no TensorRT or TensorRT-RTX installed")
    root = tmp_path_factory.mktemp("engines")
    out = {}
    for name in NAMES:
        bundle = shutil.copytree(fitted.bundle(name), root / name)
        result = CliRunner().invoke(main, ["-q", "build-engine", str(bundle), "--max-batch", "8"])
        assert result.exit_code == 0, result.output
        out[name] = bundle
    return out


@needs_trt_builder
@pytest.mark.parametrize("name", NAMES)
def test_every_graph_builds(engine_bundles, name):
    b = open_bundle(engine_bundles[name])  # verifies every checksum, engines included
    for precision in ("fp16", "fp32"):
        engine = b.manifest.artifact(f"engine_{precision}")
        assert engine.precision == precision and engine.size > 100_000
        assert engine.meta["tensorrt"] == TRT_FLAVOUR and engine.meta["max_batch"] == 8
        assert engine.meta["inputs"] == [b.manifest.graph.input_name]
    # a strongly typed FP16 build holds FP16 weights: well under the FP32 engine's size (where
    # the weights are most of it; the toy detector's 8 filters are not)
    fp16, fp32 = (b.manifest.artifact(f"engine_{p}").size for p in ("fp16", "fp32"))
    assert fp16 < 0.75 * fp32 or fp32 < 1_000_000


@needs_trt_builder
def test_tampered_engine_is_refused(engine_bundles, tmp_path):
    copy = shutil.copytree(engine_bundles["patchcore"], tmp_path / "b")
    engine = copy / "engines" / "graph_fp16.engine"
    engine.write_bytes(engine.read_bytes()[:-10])
    with pytest.raises(BundleError, match="truncated or replaced"):
        open_bundle(copy)


@needs_trt_builder
def test_engine_from_another_tensorrt_is_refused_with_the_fix(engine_bundles, tmp_path):
    copy = shutil.copytree(engine_bundles["padim"], tmp_path / "b")
    manifest = json.loads((copy / "manifest.json").read_text())
    for a in manifest["artifacts"]:
        if a["role"] == "engine_fp16":
            a["meta"]["tensorrt_version"] = "9.0.0"
    rewrite_manifest(copy / "manifest.json", manifest)
    with pytest.raises(BackendError, match=r"built with TensorRT 9\.0\.0.*edgead build-engine"):
        Pipeline(copy, backend="tensorrt", precision="fp16")


def test_missing_engine_says_how_to_build_it(fitted):
    with pytest.raises(BundleError, match="edgead build-engine"):
        Pipeline(fitted.bundle("patchcore"), backend="tensorrt")


@needs_trt_builder
@pytest.mark.skipif(bool(current_gpu()), reason="checks the refusal on a machine without a GPU")
def test_tensorrt_backend_refuses_without_gpu(engine_bundles):
    with pytest.raises(BackendError, match="no CUDA GPU here"):
        Pipeline(engine_bundles["patchcore"], backend="tensorrt", precision="fp16")


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_engine_parity_on_gpu(engine_bundles, name, synthetic_data):
    from edgead.runtime.parity import run_parity

    for precision in ("fp32", "fp16"):
        report = run_parity(
            engine_bundles[name],
            synthetic_data,
            backend="tensorrt",
            quiet=True,
            precision=precision,
        )
        assert report.passed, report.table()


@needs_gpu
@pytest.mark.gpu
def test_cuda_graph_replay_gives_the_plain_launch_outputs(engine_bundles, synthetic_data):
    from edgead.data.images import read_image

    images = [read_image(p) for p in sorted((synthetic_data / "test").glob("*/*.png"))[:2]]
    with Pipeline(engine_bundles["patchcore"], backend="tensorrt", precision="fp16") as pipe:
        plain = pipe.predict(images)  # first call at this shape: runs plainly
        assert pipe.backend.graph is None
        pipe.predict(images)  # repeated shape: captured after this run
        assert pipe.backend.graph is not None
        replayed = pipe.predict(images)
        single = pipe.predict(images[:1])  # new shape: plain again, graph dropped
        assert pipe.backend.graph is None
    np.testing.assert_array_equal([p.image_score for p in replayed], [p.image_score for p in plain])
    assert single[0].image_score == pytest.approx(plain[0].image_score, rel=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_fp16_graph_scores_like_fp32(fitted, name, synthetic_data):
    """FP16 on onnxruntime (CPU): golden outputs and every image's score within FP16 tolerance.

    The synthetic test set has only 18 images, where one swapped pair moves ROCAUC by 1.4
    points; the FP16 ROCAUC tolerance (0.5 points) is checked on the real data (README).
    """
    from edgead.runtime.parity import run_parity

    report = run_parity(fitted.bundle(name), synthetic_data, quiet=True, precision="fp16")
    rows = {r.check.split(" (")[0]: r for r in report.rows}
    assert "fp16" in report.backend
    for check, row in rows.items():
        if check.startswith("golden") or check == "per-image score":
            assert row.ok, report.table()
    assert rows["per-image score"].diff > 0  # it really ran the FP16 graph
