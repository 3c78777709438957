"""Per-stage runtime benchmarks (batch 1) and the search variants of PatchCore."""

from __future__ import annotations

import numpy as np
import pytest

from edgead.data.images import read_image
from edgead.runtime import Pipeline
from edgead.runtime.postprocess import anomaly_map
from edgead.runtime.preprocess import preprocess


@pytest.fixture(scope="module")
def pipelines(bundles):
    pipes = {kind: Pipeline(path) for kind, path in bundles.items()}
    yield pipes
    for p in pipes.values():
        p.close()


def test_decode(benchmark, bench_data):
    path = next((bench_data / "test" / "spot").glob("*.png"))
    benchmark(read_image, path)


def test_preprocess(benchmark, pipelines, image):
    benchmark(preprocess, image, pipelines["flat"].spec)


def test_preprocess_batch(benchmark, pipelines, image):
    """64 images into one batch (threaded from 4 images on)."""
    from edgead.runtime.preprocess import preprocess_batch

    batch = benchmark(preprocess_batch, [image] * 64, pipelines["flat"].spec)
    assert batch.shape[0] == 64


def test_backbone_onnxruntime(benchmark, pipelines, image):
    pipe = pipelines["flat"]
    feed = {pipe.input_name: preprocess(image, pipe.spec)[None]}
    benchmark(pipe.backend.infer, feed)


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_search(benchmark, pipelines, image, kind):
    pipe = pipelines[kind]
    outputs = pipe.backend.infer({pipe.input_name: preprocess(image, pipe.spec)[None]})
    result = benchmark(pipe.scorer.run, outputs)
    assert result.patch_scores.shape[0] == 1
    benchmark.extra_info["memory_bank"] = pipe.scorer.index.ntotal


def test_postprocess(benchmark, pipelines):
    patch = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    benchmark(anomaly_map, patch, pipelines["flat"].bundle.manifest.postprocess)


@pytest.mark.parametrize("kind", ["flat", "ivfpq", "graph"])
def test_end_to_end(benchmark, pipelines, image, kind):
    """Image to map; "graph" has the exact search inside the ONNX graph."""
    benchmark(pipelines[kind].predict, [image])
