"""PatchCore -> bundle: the embedder as ONNX, the memory bank as a faiss index."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgead.bundle import roles
from edgead.bundle.io import BundleWriter
from edgead.bundle.manifest import ParityTolerance, ScorerSpec
from edgead.bundle.scorer_params import KnnParams, PatchScoresParams
from edgead.components.saved import SavedModel
from edgead.errors import EdgeadError
from edgead.export import search_choice
from edgead.export.common import export_bundle
from edgead.export.faiss_index import build_index, write_index
from edgead.export.onnx import HalfPrecision

log = logging.getLogger(__name__)


class GraphSearch(nn.Module):
    """The embedder plus exact nearest-neighbour search against the memory bank, in one graph.

    Distances are assembled as |x|^2 - 2 x.y + |y|^2 in FP32 (also behind an FP16 embedder:
    that sum cancels badly in FP16), clamped at 0, minimised over the bank: (B, h, w) patch
    scores. One matrix product per batch: what a GPU engine does best.
    """

    def __init__(self, embedder: nn.Module, bank: torch.Tensor):
        super().__init__()
        self.embedder = embedder
        self.register_buffer("bank_t", bank.T.contiguous().float())  # (D, M)
        self.register_buffer("bank_sq", (bank.float() ** 2).sum(1))  # (M,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.embedder(x).float()
        b, h, w, d = emb.shape
        flat = emb.reshape(-1, d)
        d2 = (flat * flat).sum(1, keepdim=True) - 2.0 * (flat @ self.bank_t) + self.bank_sq
        return torch.sqrt(torch.clamp(d2.min(dim=1).values, min=0.0)).reshape(b, h, w)


def holdout_queries(saved: SavedModel, limit: int = 16) -> list[np.ndarray]:
    """The patch embeddings of up to ``limit`` held-out good images, one (P, D) array each."""
    from edgead.components.common import batched_inputs

    paths = [Path(p) for p in saved.holdout if Path(p).is_file()][:limit]
    queries = []
    with torch.inference_mode():
        for _, batch, _ in batched_inputs(paths, saved.input, 8, "search candidates", True):
            if len(batch):
                emb = saved.model.embedder(batch)
                queries += [e.reshape(-1, e.shape[-1]).numpy() for e in emb]
    return queries


def choose_index(saved: SavedModel, index: str) -> tuple[str, dict, dict | None, object | None]:
    """(index kind, scorer params of the search, the measurement record, the measured HNSW
    graph or None) for ``--index``."""
    if index != "auto":
        host = "gemm" if index == "gemm" else "faiss"
        return ("flat" if index == "gemm" else index), {"host_search": host}, None, None
    queries = holdout_queries(saved)
    if not queries:
        log.warning(
            "no held-out good images to measure the search candidates on (a model saved "
            "before they were kept?): exact flat search; --index picks another"
        )
        return "flat", {"host_search": "faiss"}, None, None
    norm = saved.evaluation.normalization if saved.evaluation else None
    span = (
        norm.image_max - norm.image_min
        if norm and norm.image_max is not None and norm.image_min is not None
        else 0.0
    )
    best, found, graph = search_choice.measure(
        saved.model.memory_bank.numpy(), queries, span, ParityTolerance().score_rel
    )
    rec = search_choice.record(best, found, len(queries), saved.fit_report.get("holdout", ""))
    log.info(
        "search: %s, %.1f ms per image, recall@1 %.4f on %d held-out images (%s)",
        best.label(),
        best.ms_per_image,
        best.recall_at_1,
        len(queries),
        "; ".join(f"{c.label()} {c.ms_per_image:.1f} ms" for c in found if c is not best),
    )
    params = {"host_search": "gemm" if best.name == "gemm" else "faiss"}
    params.update(
        {k: v for k, v in best.settings.items() if k in ("ef_search", "M", "ef_construction")}
    )
    kind = {"gemm": "flat"}.get(best.name, best.name)
    return kind, params, rec, graph


def export(
    saved: SavedModel,
    out: str | Path,
    overwrite: bool = False,
    index: str = "auto",
    nprobe: int = 8,
    fp16: bool = True,
    search: str = "faiss",
    torch_graph: bool = False,
) -> Path:
    model = saved.model
    if search == "graph":
        return export_graph_search(saved, out, overwrite, fp16, torch_graph)
    if search != "faiss":
        raise EdgeadError(f"unknown search {search!r}: faiss or graph")
    cfg = model.config
    kind, search_params, measured, graph = choose_index(saved, index)
    exact = kind != "ivfpq"
    if measured is not None:
        saved.fit_report["search"] = measured

    def write_artifacts(writer: BundleWriter) -> ScorerSpec:
        faiss_index, meta = build_index(
            model.memory_bank.numpy(),
            kind,
            nprobe,
            cfg.seed,
            search_params.pop("M", 32),
            search_params.pop("ef_construction", None),
            graph,
        )
        write_index(faiss_index, writer.path("memory_bank.faiss"))
        writer.add("memory_bank.faiss", role=roles.INDEX, fmt="faiss", precision="fp32", **meta)
        params = KnnParams(
            output="embedding",
            reweight=cfg.reweight,
            neighbors=cfg.reweight_neighbors,
            host_search=search_params["host_search"],
            ef_search=search_params.get("ef_search"),
            nprobe=nprobe if kind == "ivfpq" else None,
            search_choice=(
                None if measured is None else {k: measured[k] for k in ("chosen", "measured_on")}
            ),
        )
        return ScorerSpec("knn", params)

    # approximate search moves the scores; the ranking (ROCAUC) must still hold
    parity = (
        ParityTolerance()
        if exact
        else ParityTolerance(image_rocauc_points=1.0, pixel_rocauc_points=1.0, score_rel=0.1)
    )
    return export_bundle(
        saved,
        out,
        overwrite,
        model.embedder,
        ["embedding"],
        write_artifacts,
        parity=parity,
        fp16=fp16,
        torch_graph=torch_graph,
    )


def export_graph_search(
    saved: SavedModel, out: str | Path, overwrite: bool, fp16: bool, torch_graph: bool = False
) -> Path:
    """PatchCore with the search inside the graph: no faiss at run time."""
    model = saved.model
    if model.config.reweight:
        raise EdgeadError("--search graph computes plain max patch scores; drop --reweight")
    bank = model.memory_bank
    graph = GraphSearch(model.embedder, bank).eval()

    def write_artifacts(writer: BundleWriter) -> ScorerSpec:
        return ScorerSpec(
            "patch_scores", PatchScoresParams("patch_scores", memory_bank=tuple(bank.shape))
        )

    return export_bundle(
        saved,
        out,
        overwrite,
        graph,
        ["patch_scores"],
        write_artifacts,
        fp16=fp16,
        fp16_module=GraphSearch(HalfPrecision(model.embedder), bank).eval(),
        torch_graph=torch_graph,
    )
