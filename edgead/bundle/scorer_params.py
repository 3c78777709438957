"""The scorer's parameters, one frozen dataclass per scorer kind (``manifest.scorer.params``).

Export writes one of these; the runtime scorer of the same kind reads it back typed. Reading
checks every key and type and names the one that is wrong. A scorer kind registered by a
plugin (edgead.runtime.scorers.register_scorer) keeps its params as a plain dict.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Union

from edgead.bundle.typed import build


@dataclass(frozen=True)
class KnnParams:
    """PatchCore: the L2 distance of each patch to its nearest memory-bank patch (faiss)."""

    output: str = "embedding"
    reweight: bool = False  # the PatchCore paper's re-weighting of the image score (Eq. 7)
    neighbors: int = 9  # the neighbourhood the re-weighting looks at
    metric: str = "l2"
    # which CPU search export measured fastest at the recall it needs: faiss or gemm
    host_search: str = "faiss"
    nprobe: int | None = None  # IVF-PQ: the cells searched
    ef_search: int | None = None  # HNSW: the candidate list, as measured at export
    # what the search measurement chose and on which images
    search_choice: dict[str, Any] | None = None


@dataclass(frozen=True)
class PatchScoresParams:
    """Patch scores computed inside the graph (PatchCore with the exact search in the graph)."""

    output: str = "patch_scores"
    search: str = "in-graph exact"
    memory_bank: tuple[int, ...] | None = None  # (patches, dimension)


@dataclass(frozen=True)
class GaussianParams:
    """PaDiM: the Mahalanobis distance per grid position with a stored whitening factor."""

    output: str
    positions: int
    dim: int
    memory_bytes: int  # the statistics' size in memory, checked before loading them
    form: str = ""


@dataclass(frozen=True)
class SpadeParams:
    """SPADE: image kNN on pooled features, then pixel kNN in the nearest images' galleries."""

    outputs: tuple[str, ...]
    pooled: str
    k: int
    gallery_k: int
    layers: tuple[str, ...] = ()
    pooled_layer: str = ""


@dataclass(frozen=True)
class PuadParams:
    """PUAD's Mahalanobis term, added to the normalized EfficientAD score."""

    output: str
    dim: int
    weight: float
    ead_mean: float
    ead_std: float
    mahalanobis_mean: float
    mahalanobis_std: float
    feature: str = ""
    form: str = ""


@dataclass(frozen=True)
class EfficientAdParams:
    """EfficientAD (and PUAD): the graph gives the anomaly map and the image score."""

    score: str = "ead_score"
    map: str = "anomaly_map"
    puad: PuadParams | None = None


ScorerParams = Union[  # noqa: UP007 (a runtime object: the union of every kind's params)
    KnnParams, PatchScoresParams, GaussianParams, SpadeParams, EfficientAdParams
]

PARAMS: dict[str, type] = {
    "knn": KnnParams,
    "patch_scores": PatchScoresParams,
    "gaussian": GaussianParams,
    "spade": SpadeParams,
    "efficientad": EfficientAdParams,
}


def params_to_dict(params: Any) -> dict[str, Any]:
    """The params as the manifest writes them (tuples as lists, None fields left out)."""
    if not dataclasses.is_dataclass(params):
        return dict(params)
    out = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if value is None:
            continue
        if dataclasses.is_dataclass(value):
            value = params_to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def params_from_dict(kind: str, data: Any, where: str = "scorer.params") -> Any:
    """The typed params of ``kind`` from the manifest's dict; a TypeError names the key."""
    cls = PARAMS.get(kind)
    if cls is None:  # a kind this edgead does not know: the scorer lookup says so
        return dict(data) if isinstance(data, dict) else data
    return build(cls, data, where)
