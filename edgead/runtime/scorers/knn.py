"""Nearest-neighbour patch scoring against a faiss memory bank (PatchCore)."""

from __future__ import annotations

import faiss
import numpy as np

from edgead.bundle.io import Bundle
from edgead.runtime.scorers.base import Scorer, ScorerOutput, read_index, register_scorer
from edgead.runtime.search import NearestSearch, make_search


@register_scorer("knn")
class KnnScorer(Scorer):
    """Patch score = L2 distance to the nearest memory-bank patch; image score = max.

    With ``reweight`` the max is re-weighted as in the PatchCore paper (Eq. 7): by one minus
    the softmax weight of the nearest patch among its memory-bank neighbourhood.
    """

    searches = True

    def __init__(self, index: NearestSearch, output: str, reweight: bool, neighbors: int):
        self.index = index
        self.output = output
        self.reweight = reweight
        self.neighbors = min(neighbors, index.ntotal)

    @classmethod
    def load(cls, bundle: Bundle, search: str = "faiss") -> KnnScorer:
        p = bundle.manifest.scorer.params
        index = read_index(bundle, bundle.manifest.graph.output_shapes[p["output"]][-1])
        if "nprobe" in p:
            faiss.extract_index_ivf(index).nprobe = int(p["nprobe"])
        return cls(
            make_search(search, index),
            p["output"],
            bool(p.get("reweight", False)),
            int(p.get("neighbors", 9)),
        )

    def run(self, outputs: dict[str, np.ndarray]) -> ScorerOutput:
        emb = outputs[self.output]  # (B, h, w, D), channels last
        b, h, w, d = emb.shape
        flat = np.ascontiguousarray(emb.reshape(-1, d), dtype=np.float32)
        sq, idx = self.index.search(flat, 1)
        dist = np.sqrt(np.maximum(sq[:, 0], 0.0)).reshape(b, h * w)
        best = dist.argmax(axis=1)
        image = dist[np.arange(b), best]
        if self.reweight:
            image = image * self._weights(flat.reshape(b, h * w, d), best, idx[:, 0].reshape(b, -1))
        return ScorerOutput(dist.reshape(b, h, w).astype(np.float32), image.astype(np.float32))

    def _weights(self, emb: np.ndarray, best: np.ndarray, nn_idx: np.ndarray) -> np.ndarray:
        rows = np.arange(len(best))
        anchors = self.index.reconstruct(nn_idx[rows, best])
        _, support = self.index.search(anchors, self.neighbors)
        weights = np.empty(len(best), np.float64)
        for r in rows:
            bank = self.index.reconstruct(support[r])
            d = np.linalg.norm(bank - emb[r, best[r]], axis=1).astype(np.float64)
            e = np.exp(d - d.max())
            weights[r] = 1.0 - e[0] / e.sum()
        return weights
