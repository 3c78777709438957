"""Two-stage kNN scoring (SPADE): image-level kNN on pooled features, then pixel-level nearest
neighbours inside the K nearest training images' feature pyramids."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edgead.bundle import roles
from edgead.bundle.io import Bundle
from edgead.bundle.scorer_params import SpadeParams
from edgead.errors import BundleError
from edgead.runtime.scorers.base import (
    Scorer,
    ScorerOutput,
    params_of,
    read_index,
    register_scorer,
)
from edgead.runtime.search import NearestSearch, SubsetKnn, make_search


@register_scorer("spade")
class SpadeScorer(Scorer):
    searches = True

    def __init__(
        self,
        index: NearestSearch,
        galleries: list[Any],
        outputs: list[str],
        pooled: str,
        k: int,
        gallery_k: int,
        subset: SubsetKnn,
    ):
        self.index = index
        self.galleries = galleries  # as subset.hold() keeps them
        self.subset = subset
        self.outputs = outputs
        self.pooled = pooled
        self.k = min(k, index.ntotal)
        self.gallery_k = min(gallery_k, self.k)

    @classmethod
    def load(cls, bundle: Bundle, search: str = "faiss") -> SpadeScorer:
        p = params_of(bundle, SpadeParams)
        shapes = bundle.manifest.graph.output_shapes
        index = read_index(bundle, shapes[p.pooled][-1])
        galleries = []
        for i, name in enumerate(p.outputs):
            path = bundle.path(roles.gallery(i))
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
        subset = SubsetKnn(search)
        return cls(
            make_search(search, index),
            [subset.hold(g) for g in galleries],
            list(p.outputs),
            p.pooled,
            p.k,
            p.gallery_k,
            subset,
        )

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
                h, w, _ = fmap.shape
                d2 = self.subset.knn(fmap, gallery, neighbours)
                d = np.sqrt(np.maximum(d2, 0)).reshape(h, w).astype(np.float32)
                if (h, w) != grid:
                    d = cv2.resize(d, (grid[1], grid[0]), interpolation=cv2.INTER_LINEAR)
                per_layer.append(d)
            patches.append(np.mean(per_layer, axis=0))
        return ScorerOutput(np.stack(patches).astype(np.float32), image)
