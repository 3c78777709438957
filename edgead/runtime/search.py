"""Nearest-neighbour search for the kNN scorers (PatchCore, SPADE), on the CPU or on a GPU.

``--search`` picks where the search runs:

- ``faiss``: the bundle's faiss index on the CPU, as written at export (exact flat, HNSW or
  IVF-PQ).
- ``gemm``: exact search on the CPU as blocked matrix products with numpy's BLAS.
- ``faiss-gpu``: the same index cloned onto the GPU; needs a faiss built with GPU support.
- ``torch-cuda`` / ``torch-cpu``: exact search as matrix products with torch, for machines
  without faiss-gpu. On CUDA the products run in FP16 and the distances in FP32 (below).
- ``auto`` (default): on a GPU backend, faiss-gpu when it sees a GPU, else torch-cuda when
  torch sees one; otherwise what export measured fastest on the CPU and recorded in the
  manifest (``gemm`` or the index through faiss).

Why the matrix-product search is written here rather than taken from a library: faiss-gpu is
the library for it and is used when installed, but it is not on PyPI for every CUDA and Jetson
platform; torch's ``cdist`` has no FP16-products / FP32-distances split and materializes the
whole distance matrix. The exact search here is |q|^2 - 2 q.b + |b|^2 for ranking only: bank
and queries are centred on the bank mean and scaled to unit largest bank norm (so the FP16
products neither overflow nor lose the distance to cancellation against large norms), the
``candidates`` nearest by that FP16 ranking are kept, and their distances are recomputed in
FP32 as sums of squared differences, which do not cancel. The k nearest are exact unless a
true neighbour ranks below ``candidates`` in FP16, which needs near-ties (and then the
distance differs by FP16 rounding only). torch is imported only when a torch search is
asked for: the runtime stays importable without it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from edgead.errors import BackendError, BundleError

SEARCHES = ("auto", "faiss", "gemm", "faiss-gpu", "torch-cuda", "torch-cpu")


class NearestSearch(ABC):
    """k nearest bank vectors by L2: squared distances (float32) and bank indices (int64)."""

    name = ""
    ntotal: int
    exact = True  # False: approximate (HNSW, IVF-PQ); see ``exact_for``

    def exact_for(self) -> NearestSearch | None:
        """An exact search over the same bank, for re-checking a few queries (None: the index
        keeps no exact vectors, as IVF-PQ)."""
        return self

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    @abstractmethod
    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The bank vectors at ``ids`` (float32, on the host)."""


class FaissSearch(NearestSearch):
    """A faiss index, on the CPU or cloned onto the GPU (``gpu=True``)."""

    def __init__(self, index: Any, gpu: bool = False):
        import faiss

        self.cpu_index = index
        self.ntotal = index.ntotal
        self.name = "faiss-gpu" if gpu else "faiss"
        self.exact = isinstance(index, faiss.IndexFlat)
        self._exact: NearestSearch | None = None
        if gpu:
            self._resources = faiss.StandardGpuResources()
            self.index = faiss.index_cpu_to_gpu(self._resources, 0, index)
        else:
            self.index = index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sq, idx = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return sq, idx.astype(np.int64, copy=False)

    def exact_for(self) -> NearestSearch | None:
        import faiss

        if self.exact:
            return self
        if self._exact is None and isinstance(self.cpu_index, faiss.IndexHNSW):
            # the HNSW graph's own flat storage: no copy, and the same OpenMP pool as the
            # graph search (numpy's BLAS right after it fought faiss's threads: 5.6 ms for 8
            # queries instead of 1.1 ms on 2 cores)
            self._exact = FaissSearch(faiss.downcast_index(self.cpu_index.storage))
        return self._exact  # None for IVF-PQ: it keeps codes, not vectors

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        flat = np.ascontiguousarray(np.ravel(ids), dtype=np.int64)
        return self.cpu_index.reconstruct_batch(flat).reshape(*np.shape(ids), self.cpu_index.d)


class GemmSearch(NearestSearch):
    """Exact L2 search as blocked matrix products on the host (numpy's BLAS).

    Written here because faiss-cpu's flat search carries its own OpenBLAS, which on some CPUs
    runs at a fraction of the speed of numpy's for the same product (5x on one 2-core machine);
    the ranking is |b|^2 - 2 q.b in FP32 on bank vectors centred on their mean (small norms:
    no cancellation worth the name at FP32), and the k nearest get their distances recomputed
    as sums of squared differences.
    """

    name = "gemm"

    def __init__(self, bank: np.ndarray, budget_bytes: int = 32 << 20):
        bank = np.ascontiguousarray(bank, dtype=np.float32)
        if bank.ndim != 2 or len(bank) == 0:
            raise BundleError(f"nearest-neighbour bank of shape {bank.shape}: expected (N, D)")
        self.ntotal, self.dim = bank.shape
        self.mean = bank.mean(0, dtype=np.float64).astype(np.float32)
        self.bank = bank - self.mean
        self.bank_t = np.ascontiguousarray(self.bank.T)
        self.bank_sq = (self.bank * self.bank).sum(1)
        self.block = max(1, budget_bytes // (4 * self.ntotal))  # rows of the ranking product

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32) - self.mean
        k = min(k, self.ntotal)
        ids = np.empty((len(queries), k), np.int64)
        for s in range(0, len(queries), self.block):
            q = queries[s : s + self.block]
            rank = q @ self.bank_t
            rank *= -2.0
            rank += self.bank_sq
            if k == 1:
                ids[s : s + len(q), 0] = rank.argmin(1)
            else:
                part = np.argpartition(rank, k - 1, axis=1)[:, :k]
                order = np.take_along_axis(rank, part, 1).argsort(1)
                ids[s : s + len(q)] = np.take_along_axis(part, order, 1)
        diff = queries[:, None, :] - self.bank[ids]
        return np.einsum("qkd,qkd->qk", diff, diff).astype(np.float32), ids

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        return self.bank[np.asarray(ids, np.int64)] + self.mean


def bank_vectors(index: Any) -> np.ndarray:
    """The vectors of a flat or HNSW-flat faiss index (what the exact searches need)."""
    import faiss

    if isinstance(index, faiss.IndexHNSW):
        index = faiss.downcast_index(index.storage)
    if not isinstance(index, faiss.IndexFlat):
        raise BackendError(
            f"the exact matrix-product searches need a flat or HNSW index; this bundle's is "
            f"{type(index).__name__} (use --search faiss or faiss-gpu)"
        )
    return index.reconstruct_n(0, index.ntotal)


class TorchSearch(NearestSearch):
    """Exact kNN as matrix products (module docstring); FP16 products on CUDA, FP32 on the CPU.

    ``budget_bytes`` bounds the working memory per chunk of queries; ``products`` ("fp16" or
    "fp32") overrides the precision of the ranking products.
    """

    def __init__(
        self,
        bank: Any,
        device: str = "cuda",
        candidates: int = 4,
        budget_bytes: int = 256 << 20,
        products: str | None = None,
    ):
        try:
            import torch
        except ImportError as exc:
            raise BackendError("--search torch-*: needs torch (pip install torch)") from exc
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"--search torch-cuda: torch {torch.__version__} sees no CUDA GPU")
        self.torch = torch
        self.device = torch.device(device)
        self.name = f"torch-{self.device.type}"
        if bank.ndim != 2 or len(bank) == 0:
            raise BundleError(f"nearest-neighbour bank of shape {bank.shape}: expected (N, D)")
        self.ntotal, self.dim = bank.shape
        self.candidates = candidates
        self.budget = budget_bytes
        # FP16 products on a GPU; FP32 on a CPU, where FP16 matrix products are not faster
        products = products or ("fp16" if self.device.type == "cuda" else "fp32")
        self.product_dtype = {"fp16": torch.float16, "fp32": torch.float32}[products]
        # a numpy array or a tensor already on the device (SPADE's gallery subsets)
        b = torch.as_tensor(bank).to(self.device, torch.float32)
        self.mean = b.mean(0, keepdim=True)
        centred = b - self.mean
        self.scale = 1.0 / max(float(centred.norm(dim=1).max()), 1e-12)
        self.bank = centred  # FP32: the exact distances of the candidates
        self.bank_low = (centred * self.scale).to(self.product_dtype)
        self.bank_sq = (centred * self.scale).square().sum(1)  # FP32

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise BackendError(f"queries of shape {queries.shape}: expected (M, {self.dim})")
        k = min(k, self.ntotal)
        c = min(max(self.candidates, k), self.ntotal)
        # a ranking row (FP16 product, FP32 copies: ~14 bytes per bank vector) + the gathers
        per_query = self.ntotal * 14 + c * self.dim * 4
        rows = max(1, self.budget // per_query)
        dists, ids = [], []
        with torch.inference_mode():
            q_all = torch.from_numpy(queries).to(self.device, non_blocking=True) - self.mean
            for start in range(0, len(q_all), rows):
                q = q_all[start : start + rows]
                low = (q * self.scale).to(self.product_dtype)
                rank = self.bank_sq[None, :] - 2.0 * (low @ self.bank_low.T).float()
                cand = torch.topk(rank, c, dim=1, largest=False, sorted=False).indices
                exact = (q[:, None, :] - self.bank[cand]).square().sum(-1)  # FP32, no cancelling
                d, order = torch.topk(exact, k, dim=1, largest=False, sorted=True)
                dists.append(d)
                ids.append(torch.gather(cand, 1, order))
            d = torch.cat(dists).cpu().numpy()
            i = torch.cat(ids).cpu().numpy()
        return d.astype(np.float32, copy=False), i.astype(np.int64, copy=False)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        index = self.torch.from_numpy(np.asarray(ids, dtype=np.int64)).to(self.device)
        return (self.bank[index] + self.mean[0]).cpu().numpy()


def faiss_gpus() -> int:
    """GPUs faiss can use (0 for a CPU-only faiss build)."""
    import faiss

    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_search(search: str, on_gpu: bool, host: str = "faiss") -> str:
    """The concrete search for ``--search`` on a backend that runs (or not) on a GPU; ``host``
    is the bundle's recorded choice for the CPU (``faiss`` or ``gemm``)."""
    if search not in SEARCHES:
        raise BackendError(f"unknown --search {search!r}: one of {', '.join(SEARCHES)}")
    if search == "auto":
        if on_gpu and faiss_gpus() > 0:
            return "faiss-gpu"
        if on_gpu and torch_cuda():
            return "torch-cuda"
        return host
    if search == "faiss-gpu" and faiss_gpus() == 0:
        raise BackendError(
            "--search faiss-gpu: this faiss has no GPU support or sees no GPU "
            "(install faiss-gpu, or use --search torch-cuda or faiss)"
        )
    return search


def make_search(kind: str, index: Any) -> NearestSearch:
    """A concrete search (``resolve_search``) over a faiss index read from a bundle."""
    if kind in ("faiss", "faiss-gpu"):
        return FaissSearch(index, gpu=kind == "faiss-gpu")
    try:
        bank = bank_vectors(index)
    except BackendError as exc:
        raise BackendError(f"--search {kind}: {exc}") from exc
    if kind == "gemm":
        return GemmSearch(bank)
    return TorchSearch(bank, kind.removeprefix("torch-"))


class SubsetKnn:
    """Nearest neighbours among rows picked per query batch (SPADE: the patches of the K nearest
    training images). ``hold`` keeps an (N, ..., C) array where the search reads it (a device
    copy for torch-cuda), ``knn`` searches ``queries`` against the picked rows' vectors."""

    def __init__(self, kind: str):
        self.kind = kind
        if kind == "faiss-gpu":
            import faiss

            self._resources = faiss.StandardGpuResources()
        if kind.startswith("torch-"):
            import torch

            self.torch = torch
            self.device = torch.device(kind.removeprefix("torch-"))

    def hold(self, array: np.ndarray) -> Any:
        if self.kind.startswith("torch-"):
            # a copy: the galleries are read-only memory maps
            return self.torch.from_numpy(np.array(array, np.float32)).to(self.device)
        return array

    def knn(self, queries: np.ndarray, held: Any, rows: np.ndarray) -> np.ndarray:
        """Squared distance of each query to its nearest vector in ``held[rows]`` (float32)."""
        import faiss

        c = queries.shape[-1]
        queries = np.ascontiguousarray(queries.reshape(-1, c), dtype=np.float32)
        if self.kind.startswith("torch-"):
            picked = held[self.torch.from_numpy(rows).to(self.device)].reshape(-1, c)
            return TorchSearch(picked, self.device.type).search(queries, 1)[0][:, 0]
        bank = np.ascontiguousarray(held[rows].reshape(-1, c), dtype=np.float32)
        if self.kind == "faiss-gpu":
            return faiss.knn_gpu(self._resources, queries, bank, 1)[0][:, 0]
        return nearest_sq(queries, bank)


_BLOCK_POOL: ThreadPoolExecutor | None = None


def _block_pool() -> ThreadPoolExecutor:
    """Threads for ``nearest_sq``'s blocks, as many as the runtime's thread setting (its own
    pool: the host pool's tasks may themselves be waiting on this one)."""
    global _BLOCK_POOL
    if _BLOCK_POOL is None:
        from edgead.threads import configured

        _BLOCK_POOL = ThreadPoolExecutor(configured(), thread_name_prefix="edgead-search")
    return _BLOCK_POOL


def nearest_sq(queries: np.ndarray, bank: np.ndarray, budget_bytes: int = 4 << 20) -> np.ndarray:
    """Exact squared distance of each query to its nearest bank row, on the CPU.

    Ranked by |b|^2 - 2 q.b as blocked numpy matrix products, then the winner's distance
    recomputed as a sum of squared differences (no cancellation). The ranking is ONE product
    per block, of the queries with a 1 appended against the bank scaled by -2 with |b|^2
    appended, so the block of ranks is written once and read once (by argmin); blocks of 4 MB
    stay in cache. On SPADE's 3,136 x 15,680 x 24 stride-4 search that took 25.6 ms, against
    37.0 ms for product, scale and add as three passes over 4 MB blocks and 60.9 ms over 16 MB
    blocks (this machine, quiet).

    The blocks run on a pool of threads, each product on ONE BLAS thread: with BLAS spreading
    every product over both cores, one busy process beside it made the same search take 224 ms
    (each product waits for its descheduled thread); blocks spread over threads took 23 ms
    quiet and 34 ms beside it (ad hoc timing of that shape). Why not ``faiss.knn``: the same
    products through faiss-cpu's own OpenBLAS took 2-3x as long here (226 ms against 125 ms for
    the three-pass form, both beside a busy test run), and it materialises nothing this does
    not.
    """
    from edgead.threads import blas

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    bank = np.ascontiguousarray(bank, dtype=np.float32)
    n, d = bank.shape
    bank_aug = np.empty((d + 1, n), np.float32)
    np.multiply(bank.T, -2.0, out=bank_aug[:d])
    bank_aug[d] = np.einsum("ij,ij->i", bank, bank)
    queries_aug = np.empty((len(queries), d + 1), np.float32)
    queries_aug[:, :d] = queries
    queries_aug[:, d] = 1.0
    rows = max(1, budget_bytes // (4 * max(1, n)))
    best = np.empty(len(queries), np.int64)

    def block(s: int) -> None:
        best[s : s + rows] = (queries_aug[s : s + rows] @ bank_aug).argmin(1)

    starts = range(0, len(queries), rows)
    with blas().limit(limits=1, user_api="blas"):
        if len(starts) > 1:
            list(_block_pool().map(block, starts))
        elif starts:
            block(0)
    diff = queries - bank[best]
    return np.einsum("ij,ij->i", diff, diff).astype(np.float32, copy=False)
