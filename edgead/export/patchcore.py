"""PatchCore -> bundle: the embedder as ONNX, the memory bank as a faiss index."""

from __future__ import annotations

from pathlib import Path

from edgead.bundle.io import BundleWriter
from edgead.bundle.manifest import ParityTolerance, ScorerSpec
from edgead.export.common import export_bundle
from edgead.export.faiss_index import build_index, write_index
from edgead.models.saved import SavedModel


def export(
    saved: SavedModel,
    out: str | Path,
    overwrite: bool = False,
    index: str = "flat",
    nprobe: int = 8,
    fp16: bool = True,
) -> Path:
    model = saved.model
    cfg = model.config
    exact = index == "flat"

    def write_artifacts(writer: BundleWriter) -> ScorerSpec:
        faiss_index, meta = build_index(model.memory_bank.numpy(), index, nprobe, cfg.seed)
        write_index(faiss_index, writer.path("memory_bank.faiss"))
        writer.add("memory_bank.faiss", role="index", fmt="faiss", precision="fp32", **meta)
        params = {
            "output": "embedding",
            "reweight": cfg.reweight,
            "neighbors": cfg.reweight_neighbors,
            "metric": "l2",
        }
        if not exact:
            params["nprobe"] = nprobe
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
    )
