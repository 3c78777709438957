"""Memory banks as serialized faiss indexes: exact (flat L2) by default, IVF-PQ for big banks."""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np

from edgead.errors import EdgeadError

INDEX_KINDS = ("flat", "hnsw", "ivfpq")


def build_index(
    bank: np.ndarray,
    kind: str = "flat",
    nprobe: int = 8,
    seed: int = 0,
    hnsw_m: int = 32,
    hnsw_ef_construction: int | None = None,
    prebuilt: faiss.Index | None = None,
) -> tuple[faiss.Index, dict]:
    """Index a (N, D) float32 memory bank; returns the index and what the manifest records.
    ``prebuilt``: an HNSW graph already built (and measured) on this bank, stored as it is."""
    bank = np.ascontiguousarray(bank, dtype=np.float32)
    n, d = bank.shape
    if kind == "flat":
        index = faiss.IndexFlatL2(d)
        index.add(bank)
        return index, {"type": "IndexFlatL2", "exact": True, "ntotal": n, "dim": d}
    if kind == "hnsw":
        from edgead.export.search_choice import EF_CONSTRUCTION, build_hnsw

        efc = hnsw_ef_construction or EF_CONSTRUCTION
        index = prebuilt if prebuilt is not None else build_hnsw(bank, hnsw_m, efc)
        meta = {"type": "IndexHNSWFlat", "exact": False, "ntotal": n, "dim": d, "M": hnsw_m}
        return index, {**meta, "ef_construction": efc}
    if kind == "ivfpq":
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
        m = next(m for m in (16, 12, 8, 6, 4, 3, 2, 1) if d % m == 0)
        quantizer = faiss.IndexFlatL2(d)
        index = faiss.IndexIVFPQ(quantizer, d, nlist, m, 8)
        index.cp.seed = seed
        index.pq.cp.seed = seed
        if n < 256:
            raise EdgeadError(f"an IVF-PQ index needs at least 256 vectors, the bank has {n}")
        index.train(bank)
        index.add(bank)
        index.nprobe = nprobe
        index.make_direct_map()  # so re-weighting can reconstruct memory-bank vectors
        return index, {
            "type": "IndexIVFPQ",
            "exact": False,
            "ntotal": n,
            "dim": d,
            "nlist": nlist,
            "m": m,
            "nbits": 8,
            "nprobe": nprobe,
        }
    raise EdgeadError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")


def write_index(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))
