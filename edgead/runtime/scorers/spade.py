"""Two-stage kNN scoring (SPADE): image-level kNN on pooled features, then pixel-level nearest
neighbours inside the K nearest training images' feature pyramids."""

from __future__ import annotations

import cv2
import faiss
import numpy as np

from edgead.bundle.io import Bundle
from edgead.errors import BundleError
from edgead.runtime.scorers.base import Scorer, ScorerOutput, read_index, register_scorer


@register_scorer("spade")
class SpadeScorer(Scorer):
    def __init__(
        self,
        index: faiss.Index,
        galleries: list[np.ndarray],
        outputs: list[str],
        pooled: str,
        k: int,
        gallery_k: int,
    ):
        self.index = index
        self.galleries = galleries
        self.outputs = outputs
        self.pooled = pooled
        self.k = min(k, index.ntotal)
        self.gallery_k = min(gallery_k, self.k)

    @classmethod
    def load(cls, bundle: Bundle) -> SpadeScorer:
        p = bundle.manifest.scorer.params
        shapes = bundle.manifest.graph.output_shapes
        index = read_index(bundle, shapes[p["pooled"]][-1])
        galleries = []
        for i, name in enumerate(p["outputs"]):
            path = bundle.path(f"gallery_{i}")
            try:  # memory-mapped: pages load on demand, only the K neighbours' are touched
                gallery = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise BundleError(f"{path}: unreadable gallery ({exc})") from exc
            if (
                gallery.ndim != 4
                or list(gallery.shape[1:]) != list(shapes[name][1:])
                or gallery.shape[0] != index.ntotal
            ):
                raise BundleError(
                    f"{path}: gallery shape {gallery.shape} does not fit the graph output "
                    f"{name} {shapes[name]} and {index.ntotal} training images"
                )
            galleries.append(gallery)
        return cls(index, galleries, p["outputs"], p["pooled"], int(p["k"]), int(p["gallery_k"]))

    def run(self, outputs: dict[str, np.ndarray]) -> ScorerOutput:
        pooled = np.ascontiguousarray(outputs[self.pooled], dtype=np.float32)
        sq, idx = self.index.search(pooled, self.k)
        image = np.sqrt(np.maximum(sq, 0)).mean(1).astype(np.float32)
        grid = outputs[self.outputs[0]].shape[1:3]
        patches = []
        for b in range(len(pooled)):
            neighbours = np.sort(idx[b, : self.gallery_k])
            per_layer = []
            for name, gallery in zip(self.outputs, self.galleries, strict=True):
                fmap = outputs[name][b]
                h, w, c = fmap.shape
                gal = np.ascontiguousarray(gallery[neighbours].reshape(-1, c), dtype=np.float32)
                d2, _ = faiss.knn(np.ascontiguousarray(fmap.reshape(-1, c)), gal, 1)
                d = np.sqrt(np.maximum(d2[:, 0], 0)).reshape(h, w).astype(np.float32)
                if (h, w) != grid:
                    d = cv2.resize(d, (grid[1], grid[0]), interpolation=cv2.INTER_LINEAR)
                per_layer.append(d)
            patches.append(np.mean(per_layer, axis=0))
        return ScorerOutput(np.stack(patches).astype(np.float32), image)
