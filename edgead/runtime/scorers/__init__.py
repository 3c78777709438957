"""Runtime scorers; each registers itself under the manifest's scorer kind."""

from edgead.runtime.scorers import efficientad, gaussian, knn, patch_scores, spade  # noqa: F401
from edgead.runtime.scorers.base import SCORERS, Scorer, ScorerOutput, load_scorer, register_scorer

__all__ = ["SCORERS", "Scorer", "ScorerOutput", "load_scorer", "register_scorer"]
