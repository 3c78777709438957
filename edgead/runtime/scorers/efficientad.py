"""EfficientAD and PUAD scoring: the graph already gives the map and the EfficientAD score;
PUAD adds the Mahalanobis distance of the pooled feature, in float64."""

from __future__ import annotations

import numpy as np

from edgead.bundle import roles
from edgead.bundle.io import Bundle
from edgead.bundle.scorer_params import EfficientAdParams
from edgead.errors import BundleError
from edgead.runtime.scorers.base import Scorer, ScorerOutput, params_of, register_scorer
from edgead.threads import blas


@register_scorer("efficientad")
class EfficientAdScorer(Scorer):
    def __init__(
        self, params: EfficientAdParams, mean: np.ndarray | None, whitening: np.ndarray | None
    ):
        self.params = params
        self.mean = mean
        self.whitening = whitening

    @classmethod
    def load(cls, bundle: Bundle, search: str = "faiss") -> EfficientAdScorer:
        params = params_of(bundle, EfficientAdParams)
        puad = params.puad
        if puad is None:
            return cls(params, None, None)
        path = bundle.path(roles.STATISTICS)
        try:
            with np.load(path) as stats:
                mean, whitening = stats["mean"], stats["whitening"]
        except (OSError, KeyError, ValueError) as exc:
            raise BundleError(f"{path}: unreadable PUAD statistics ({exc})") from exc
        d = puad.dim
        if mean.shape != (d,) or whitening.shape != (d, d):
            raise BundleError(
                f"{path}: PUAD statistics of shapes {mean.shape}, {whitening.shape}; "
                f"the graph's pooled feature has {d} dimensions"
            )
        return cls(params, mean.astype(np.float64), whitening.astype(np.float64))

    def mahalanobis(self, pooled: np.ndarray) -> np.ndarray:
        delta = pooled.astype(np.float64) - self.mean
        # one small product: on one BLAS thread. Left to OpenBLAS's default, its idle threads
        # spin after the call and slowed the next graph run by ~40 ms on a 2-core CPU
        # (onnxruntime graph p50 117 ms instead of 75 ms, `edgead bench`, PUAD-S 128 px).
        with blas().limit(limits=1, user_api="blas"):
            return np.linalg.norm(delta @ self.whitening.T, axis=1)

    def run(self, outputs: dict[str, np.ndarray]) -> ScorerOutput:
        p = self.params
        amap = np.asarray(outputs[p.map], np.float32)
        score = np.asarray(outputs[p.score], np.float64)
        puad = p.puad
        if puad is not None:
            d = self.mahalanobis(outputs[puad.output])
            score = (score - puad.ead_mean) / puad.ead_std + puad.weight * (
                d - puad.mahalanobis_mean
            ) / puad.mahalanobis_std
        return ScorerOutput(amap, score.astype(np.float32))
