"""Scores computed inside the graph (PatchCore with in-graph search): image score = max."""

from __future__ import annotations

import numpy as np

from edgead.bundle.io import Bundle
from edgead.bundle.scorer_params import PatchScoresParams
from edgead.runtime.scorers.base import Scorer, ScorerOutput, params_of, register_scorer


@register_scorer("patch_scores")
class PatchScoresScorer(Scorer):
    def __init__(self, output: str):
        self.output = output

    @classmethod
    def load(cls, bundle: Bundle, search: str = "faiss") -> PatchScoresScorer:
        return cls(params_of(bundle, PatchScoresParams).output)

    def run(self, outputs: dict[str, np.ndarray]) -> ScorerOutput:
        patch = np.asarray(outputs[self.output], np.float32)
        return ScorerOutput(patch, patch.reshape(len(patch), -1).max(1))
