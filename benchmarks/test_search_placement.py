"""Memory-bank search by placement (`--search`), host array in to host array out, at PatchCore's
shapes: 28x28 = 784 patches per 224 px image against a 10% coreset bank, EfficientNet-Lite0
(152 dimensions, the loco_juice_bottle bank of 21,560) and wide_resnet50_2 (1,024 dimensions).

    python -m pytest benchmarks/test_search_placement.py --benchmark-columns=median,iqr,ops

GPU placements skip without a GPU (faiss-gpu also without a GPU build of faiss).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgead.runtime.search import faiss_gpus, torch_cuda

SHAPES = {"lite0": (21560, 152), "wrn50": (16384, 1024)}
PATCHES = 784


def available(kind: str) -> str | None:
    """Why ``kind`` cannot run here, or None."""
    if kind == "faiss-gpu" and faiss_gpus() == 0:
        return "faiss has no GPU here"
    if kind == "torch-cuda" and not torch_cuda():
        return "torch sees no CUDA GPU"
    if kind.startswith("torch"):
        try:
            import torch  # noqa: F401
        except ImportError:
            return "torch is not installed"
    return None


@pytest.mark.parametrize("kind", ["faiss", "torch-cpu", "faiss-gpu", "torch-cuda"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("batch", [1, 16])
def test_search_placement(benchmark, kind, shape, batch):
    import faiss

    from edgead.runtime.search import make_search

    reason = available(kind)
    if reason:
        pytest.skip(reason)
    if batch > 1 and shape == "wrn50" and not kind.endswith(("gpu", "cuda")):
        pytest.skip("batch 16 at 1,024 dimensions takes seconds per call on a CPU")
    n, d = SHAPES[shape]
    rng = np.random.default_rng(0)
    bank = np.abs(rng.normal(size=(n, d))).astype(np.float32)
    queries = np.abs(rng.normal(size=(batch * PATCHES, d))).astype(np.float32)
    index = faiss.IndexFlatL2(d)
    index.add(bank)
    search = make_search(kind, index)
    search.search(queries, 1)  # warm-up: uploads, kernels, CUDA context
    _, ids = benchmark(search.search, queries, 1)
    assert ids.shape == (batch * PATCHES, 1)
    benchmark.extra_info.update(bank=n, dim=d, queries=batch * PATCHES)
