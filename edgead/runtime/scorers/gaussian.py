"""Per-position Gaussian scoring (PaDiM): Mahalanobis distance with a stored whitening factor."""

from __future__ import annotations

import numpy as np

from edgead.bundle import roles
from edgead.bundle.io import Bundle
from edgead.bundle.scorer_params import GaussianParams
from edgead.errors import BundleError
from edgead.runtime.memory import available_bytes, human
from edgead.runtime.scorers.base import Scorer, ScorerOutput, params_of, register_scorer


@register_scorer("gaussian")
class GaussianScorer(Scorer):
    """distance = ||W (x - mean)|| per grid position, W lower triangular (W^T W = cov^-1)."""

    def __init__(self, mean: np.ndarray, whitening: np.ndarray, output: str):
        self.mean = mean
        self.whitening = whitening
        self.output = output

    @classmethod
    def load(cls, bundle: Bundle, search: str = "faiss") -> GaussianScorer:
        p = params_of(bundle, GaussianParams)
        path = bundle.path(roles.STATISTICS)
        need = p.memory_bytes
        free = available_bytes()
        if free is not None and need > 0.9 * free:
            raise BundleError(
                f"{path}: the Gaussian statistics need {human(need)} of memory and only "
                f"{human(free)} is available; re-export with fewer --n-features or a smaller "
                "--image-size"
            )
        try:
            with np.load(path) as stats:
                mean, whitening = stats["mean"], stats["whitening"]
        except (OSError, KeyError, ValueError) as exc:
            raise BundleError(f"{path}: unreadable statistics ({exc})") from exc
        _, h, w, d = bundle.manifest.graph.output_shapes[p.output]
        if mean.shape != (h * w, d) or whitening.shape != (h * w, d, d):
            raise BundleError(
                f"{path}: statistics have shapes mean {mean.shape}, whitening {whitening.shape}; "
                f"the graph's {h}x{w} grid of dim {d} needs {(h * w, d)} and {(h * w, d, d)}"
            )
        return cls(mean.astype(np.float32), whitening.astype(np.float32), p.output)

    def run(self, outputs: dict[str, np.ndarray]) -> ScorerOutput:
        emb = outputs[self.output]
        b, h, w, d = emb.shape
        delta = emb.reshape(b, h * w, d) - self.mean  # (B, P, d)
        # per position p: z = W_p delta_p, as one stacked matrix product over positions
        z = np.matmul(self.whitening, delta.transpose(1, 2, 0))  # (P, d, B)
        dist = np.sqrt(np.einsum("pdb,pdb->bp", z, z))
        patch = dist.reshape(b, h, w).astype(np.float32)
        return ScorerOutput(patch, patch.reshape(b, -1).max(1))
