"""Scorers turn graph outputs into patch scores and image scores; registered by manifest kind."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from edgead.bundle import roles
from edgead.bundle.io import Bundle
from edgead.errors import BundleError

P = TypeVar("P")


@dataclass
class ScorerOutput:
    patch_scores: np.ndarray  # (B, h, w) float32
    image_scores: np.ndarray  # (B,) float32


class Scorer(ABC):
    kind: str = ""
    searches: bool = False  # a nearest-neighbour search runs here (--search places it)

    @classmethod
    @abstractmethod
    def load(cls, bundle: Bundle, search: str = "faiss") -> Scorer:
        """``search``: where nearest-neighbour scorers search (edgead.runtime.search)."""

    @abstractmethod
    def run(self, outputs: dict[str, np.ndarray]) -> ScorerOutput: ...


def read_index(bundle: Bundle, dim: int, role: str = roles.INDEX) -> Any:
    """The bundle's faiss index, checked against the feature dimension it will be searched with."""
    import faiss

    path = bundle.path(role)
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise BundleError(f"{path}: faiss cannot read the index ({exc})") from exc
    if index.d != dim:
        raise BundleError(f"{path}: index dimension {index.d} != graph output dimension {dim}")
    return index


def params_of(bundle: Bundle, cls: type[P]) -> P:
    """The manifest's scorer params as ``cls`` (what the scorer of that kind reads)."""
    params = bundle.manifest.scorer.params
    if not isinstance(params, cls):
        raise BundleError(
            f"{bundle.root}: scorer {bundle.manifest.scorer.kind!r} has params of type "
            f"{type(params).__name__}, expected {cls.__name__}; re-export the bundle"
        )
    return params


SCORERS: dict[str, Callable[[Bundle, str], Scorer]] = {}


def register_scorer(kind: str) -> Callable[[type[Scorer]], type[Scorer]]:
    def deco(cls: type[Scorer]) -> type[Scorer]:
        cls.kind = kind
        SCORERS[kind] = cls.load
        return cls

    return deco


def load_scorer(bundle: Bundle, search: str = "faiss") -> Scorer:
    from edgead.runtime import scorers as _  # noqa: F401  (registers the built-ins)

    kind = bundle.manifest.scorer.kind
    if kind not in SCORERS:
        raise BundleError(
            f"{bundle.root}: scorer {kind!r} is not known to this edgead "
            f"(known: {', '.join(sorted(SCORERS))}); upgrade edgead or re-export the bundle"
        )
    return SCORERS[kind](bundle, search)
