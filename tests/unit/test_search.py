"""Nearest-neighbour search placements (edgead.runtime.search): the torch matrix-product search
is exact against faiss, also with the FP16 ranking products the GPU uses; bad placements are
refused with what to do instead."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from edgead.errors import BackendError
from edgead.runtime.search import FaissSearch, SubsetKnn, make_search, resolve_search

torch = pytest.importorskip("torch")

from edgead.runtime.search import TorchSearch  # noqa: E402


def features(n: int, d: int, seed: int, offset: float = 0.0) -> np.ndarray:
    """Feature-like vectors: non-negative (post-ReLU) with a shared offset, float32."""
    rng = np.random.default_rng(seed)
    x = np.abs(rng.normal(size=(n, d))) + offset
    return x.astype(np.float32)


def flat(bank: np.ndarray) -> faiss.IndexFlatL2:
    index = faiss.IndexFlatL2(bank.shape[1])
    index.add(bank)
    return index


@pytest.mark.parametrize("products", ["fp32", "fp16"])
@pytest.mark.parametrize("k", [1, 3])
def test_torch_search_matches_faiss_exactly(products, k):
    bank, queries = features(3000, 152, 0), features(900, 152, 1)
    want_d, want_i = flat(bank).search(queries, k)
    # a small budget forces many query chunks
    got_d, got_i = TorchSearch(bank, "cpu", budget_bytes=1 << 20, products=products).search(
        queries, k
    )
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-5, atol=1e-4)


def test_fp16_ranking_survives_a_large_shared_offset():
    # Features with a large common component: |q|^2 - 2 q.b + |b|^2 in FP16 cancels to noise
    # (shown below); centring, scaling and the FP32 re-ranking of candidates keep it exact.
    bank, queries = features(2000, 64, 2, offset=40.0), features(500, 64, 3, offset=40.0)
    want_d, want_i = flat(bank).search(queries, 1)
    got_d, got_i = TorchSearch(bank, "cpu", products="fp16").search(queries, 1)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-5)

    q, b = torch.from_numpy(queries).half(), torch.from_numpy(bank).half()
    naive = (q.square().sum(1, keepdim=True) - 2 * q @ b.T + b.square().sum(1)).float()
    assert (naive.argmin(1).numpy() != want_i[:, 0]).mean() > 0.5  # what it guards against


def test_reconstruct_returns_bank_vectors():
    bank = features(50, 16, 4, offset=3.0)
    for search in (TorchSearch(bank, "cpu"), FaissSearch(flat(bank))):
        np.testing.assert_allclose(
            search.reconstruct(np.array([[3, 7], [0, 49]])), bank[[[3, 7], [0, 49]]], atol=1e-5
        )


def test_subset_knn_agrees_between_faiss_and_torch():
    gallery = features(6 * 20, 24, 5).reshape(6, 4, 5, 24)  # 6 images, 4x5 patches
    queries = features(20, 24, 6).reshape(4, 5, 24)
    rows = np.array([1, 4, 5])
    results = []
    for kind in ("faiss", "torch-cpu"):
        knn = SubsetKnn(kind)
        results.append(knn.knn(queries, knn.hold(gallery), rows))
    want = flat(gallery[rows].reshape(-1, 24)).search(queries.reshape(-1, 24), 1)[0][:, 0]
    for got in results:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_auto_stays_on_the_cpu_for_a_cpu_backend():
    assert resolve_search("auto", on_gpu=False) == "faiss"
    assert resolve_search("torch-cpu", on_gpu=False) == "torch-cpu"


@pytest.mark.skipif(faiss.get_num_gpus() > 0, reason="this faiss has GPUs")
def test_faiss_gpu_without_gpu_says_what_to_use():
    with pytest.raises(BackendError, match=r"no GPU support.*torch-cuda"):
        resolve_search("faiss-gpu", on_gpu=True)


def test_unknown_search_is_refused():
    with pytest.raises(BackendError, match="unknown --search 'gpu'"):
        resolve_search("gpu", on_gpu=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here")
def test_torch_cuda_without_cuda_is_refused():
    with pytest.raises(BackendError, match="sees no CUDA GPU"):
        make_search("torch-cuda", flat(features(10, 8, 7)))


def test_matrix_product_search_refuses_an_approximate_index():
    bank = features(400, 16, 8)
    quantizer = faiss.IndexFlatL2(16)
    ivf = faiss.IndexIVFFlat(quantizer, 16, 4)
    ivf.train(bank)
    ivf.add(bank)
    with pytest.raises(BackendError, match=r"need a flat or HNSW index.*IndexIVFFlat"):
        make_search("torch-cpu", ivf)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the FP16 GPU search needs CUDA")
def test_torch_cuda_search_matches_faiss():
    bank, queries = features(20000, 152, 9, offset=5.0), features(784 * 4, 152, 10, offset=5.0)
    want_d, want_i = flat(bank).search(queries, 1)
    got_d, got_i = TorchSearch(bank, "cuda").search(queries, 1)
    assert (got_i == want_i).mean() > 0.999
    np.testing.assert_allclose(got_d, want_d, rtol=1e-4, atol=1e-3)
