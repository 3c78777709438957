"""Which nearest-neighbour search a PatchCore bundle uses on the CPU: measured, not guessed.

Export scores the held-out good images' patches (images the fit did not see) against the memory
bank with every candidate and keeps the fastest one that loses nothing a user would notice:
recall@1 >= ``MIN_RECALL`` against exact search and every image score within the bundle's
parity tolerance (a fraction of the evaluated score range). The manifest records the choice,
its settings and what was measured; the fit report says so.

Candidates: exact search through faiss's flat index, exact search as numpy matrix products
(``gemm``), and faiss HNSW graphs at rising ``efSearch``, timed together with the scorer's
exact re-check of each image's largest distances (which makes HNSW's image scores exact).
HNSW is the well-kept ANN method that measured best here: 784 queries against tire's
16,464 x 152 bank in 3-5 ms at efSearch 8-16, recall@1 >= 0.999, against 86-94 ms for the flat
search; IVF variants needed nprobe 8 for recall 1.0 and were slower.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np

from edgead.runtime.search import FaissSearch, GemmSearch

log = logging.getLogger(__name__)

MIN_RECALL = 0.999
# (M, efConstruction) of the graphs tried (the bundle stores the one chosen, as measured). A
# better-built graph reaches recall 0.999 at a smaller efSearch: on juice's 21,560 x 152 bank,
# efConstruction 40 needed efSearch 64 (10.4 ms per image at M 32), 200 needs 16 (3.9 ms,
# recall 1.000), for 1.2 s of building
HNSW_GRAPHS = ((16, 200), (32, 200))
# tried only when those need efSearch > 16: a bank with many near-identical patches (bottle's
# black background) strands greedy search in M 16/32 graphs (efSearch 64 for recall 0.999,
# 9.0 ms per image, its misses off by up to 54 distance units), where M 48 at
# efConstruction 300 reaches it at efSearch 10 (3.2 ms, misses off by at most 1.1); on tire and
# juice it was no faster than M 16, so its 1.6-1.8 s of building is spent only where it helps
FALLBACK_GRAPHS = ((48, 300),)
EF_CONSTRUCTION = 200
EF_SEARCH = (8, 10, 12, 16, 24, 32, 64, 128)
QUICK_EF = 16


@dataclass
class Candidate:
    name: str  # "flat", "gemm", "hnsw"
    settings: dict
    ms_per_image: float
    recall_at_1: float
    max_score_diff: float  # largest image-score difference, as a fraction of the score range
    ok: bool = False

    def label(self) -> str:
        extra = ", ".join(f"{k} {v}" for k, v in self.settings.items())
        return f"{self.name}" + (f" ({extra})" if extra else "")


def build_hnsw(bank: np.ndarray, m: int = 32, ef_construction: int = EF_CONSTRUCTION):
    import faiss

    index = faiss.IndexHNSWFlat(bank.shape[1], m)
    index.hnsw.efConstruction = ef_construction
    index.add(np.ascontiguousarray(bank, dtype=np.float32))
    return index


def _timed(search, images: list[np.ndarray]) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    search.search(images[0], 1)  # warm-up
    dists, ids, times = [], [], []
    for q in images:
        t = time.perf_counter()
        d, i = search.search(q, 1)
        times.append(time.perf_counter() - t)
        dists.append(d[:, 0])
        ids.append(i[:, 0])
    return 1000 * float(np.median(times)), dists, ids


def _rechecked(search, images, dists, ids) -> tuple[float, list[np.ndarray]]:
    """The scorer's exact re-check of each image's largest distances (``exact_max``), which an
    approximate search pays on top of its own search: its median time and the distances."""
    from edgead.runtime.scorers.knn import exact_max

    exact = search.exact_for()
    times, out = [], []
    for q, d, i in zip(images, dists, ids, strict=True):
        dist = np.sqrt(np.maximum(d, 0))[None].copy()
        t = time.perf_counter()
        exact_max(dist, i[None].copy(), q[None], exact)
        times.append(time.perf_counter() - t)
        out.append(dist[0] ** 2)
    return 1000 * float(np.median(times)), out


def measure(
    bank: np.ndarray, images: list[np.ndarray], score_range: float, score_tolerance: float
) -> tuple[Candidate, list[Candidate], object | None]:
    """Time every candidate on ``images`` (one (P, D) query array per held-out image) and pick.

    Returns the choice, every candidate measured (for the manifest and the fit report), and
    the chosen HNSW graph itself (None for an exact choice): the bundle stores the graph that
    was measured, not a rebuild (building is multi-threaded, so two builds can differ).
    """
    import faiss

    bank = np.ascontiguousarray(bank, dtype=np.float32)
    flat = faiss.IndexFlatL2(bank.shape[1])
    flat.add(bank)
    ms, ref_d, ref_i = _timed(FaissSearch(flat), images)
    ref_scores = np.array([np.sqrt(np.maximum(d, 0)).max() for d in ref_d])
    span = max(score_range, float(np.ptp(ref_scores)), 1e-12)

    def candidate(name: str, settings: dict, search) -> Candidate:
        ms, d, i = _timed(search, images)
        final = d
        if not search.exact:  # as the scorer runs it: the image's largest distances re-checked
            extra, final = _rechecked(search, images, d, i)
            ms += extra
        # a neighbour at the same distance (a tie) is as good as the reference's
        hits = [
            (ii == ri) | np.isclose(dd, rd, rtol=1e-5, atol=1e-6)
            for ii, ri, dd, rd in zip(i, ref_i, d, ref_d, strict=True)
        ]
        recall = float(np.concatenate(hits).mean())
        scores = np.array([np.sqrt(np.maximum(x, 0)).max() for x in final])
        diff = float(np.abs(scores - ref_scores).max() / span)
        ok = recall >= MIN_RECALL and diff <= score_tolerance
        return Candidate(name, settings, ms, recall, diff, ok)

    found = [Candidate("flat", {}, ms, 1.0, 0.0, True)]
    found.append(candidate("gemm", {}, GemmSearch(bank)))
    graphs: dict[tuple[int, int], object] = {}

    def try_graph(m: int, ef_construction: int) -> None:
        hnsw = graphs[m, ef_construction] = build_hnsw(bank, m, ef_construction)
        for ef in EF_SEARCH:
            hnsw.hnsw.efSearch = ef
            settings = {"M": m, "ef_construction": ef_construction, "ef_search": ef}
            c = candidate("hnsw", settings, FaissSearch(hnsw))
            found.append(c)
            if c.ok:  # a larger efSearch is only slower
                break

    for m, efc in HNSW_GRAPHS:
        try_graph(m, efc)
    if not any(c.ok and c.name == "hnsw" and c.settings["ef_search"] <= QUICK_EF for c in found):
        for m, efc in FALLBACK_GRAPHS:
            try_graph(m, efc)
    best = min((c for c in found if c.ok), key=lambda c: c.ms_per_image)
    graph = None
    if best.name == "hnsw":
        graph = graphs[best.settings["M"], best.settings["ef_construction"]]
        graph.hnsw.efSearch = best.settings["ef_search"]
    return best, found, graph


def record(best: Candidate, found: list[Candidate], images: int, source: str) -> dict:
    """What the manifest's scorer params and the fit report carry of the choice."""
    return {
        "chosen": best.label(),
        "measured_on": f"{images} held-out good images ({source})",
        "min_recall_at_1": MIN_RECALL,
        "candidates": [asdict(c) for c in found],
    }
