"""PatchCore -> bundle: the embedder as ONNX, the memory bank as a faiss index, the manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgead.bundle.io import write_bundle
from edgead.bundle.manifest import (
    GraphSpec,
    Manifest,
    Metrics,
    Normalization,
    ParityTolerance,
    PostprocessSpec,
    ScorerSpec,
)
from edgead.bundle.references import write_reference_scores
from edgead.export.common import library_versions, write_golden
from edgead.export.faiss_index import build_index, write_index
from edgead.export.onnx import check_onnx, export_onnx
from edgead.models.saved import SavedModel


def export(
    saved: SavedModel,
    out: str | Path,
    overwrite: bool = False,
    index: str = "flat",
    nprobe: int = 8,
) -> Path:
    model = saved.model.eval()
    cfg = model.config
    spec = saved.input
    golden = torch.from_numpy(saved.golden_inputs)
    with torch.no_grad():
        ref = model(golden)
    _, h, w, d = ref["embedding"].shape
    with write_bundle(out, overwrite) as writer:
        onnx_path = writer.path("backbone.onnx")
        export_onnx(model.embedder, golden[:1], onnx_path, output_names=("embedding",))
        check = check_onnx(onnx_path, model.embedder, saved.golden_inputs)
        writer.add(
            "backbone.onnx",
            role="backbone",
            fmt="onnx",
            precision="fp32",
            opset=17,
            check_max_rel=check["max_rel"],
        )
        faiss_index, index_meta = build_index(model.memory_bank.numpy(), index, nprobe, cfg.seed)
        write_index(faiss_index, writer.path("memory_bank.faiss"))
        writer.add("memory_bank.faiss", role="index", fmt="faiss", precision="fp32", **index_meta)
        write_golden(
            writer,
            {k: v.numpy().astype(np.float32) for k, v in ref.items()}
            | {"input": saved.golden_inputs},
        )
        evaluation = saved.evaluation
        if evaluation is not None and evaluation.records:
            write_reference_scores(writer, evaluation.records)
        scorer_params = {
            "output": "embedding",
            "reweight": cfg.reweight,
            "neighbors": cfg.reweight_neighbors,
            "metric": "l2",
        }
        if not index_meta["exact"]:
            scorer_params["nprobe"] = nprobe
        manifest = Manifest(
            detector="patchcore",
            params=cfg.to_dict(),
            input=spec,
            backbone=saved.backbone,
            graph=GraphSpec(
                "backbone.onnx", "input", ["embedding"], {"embedding": ["batch", h, w, d]}
            ),
            scorer=ScorerSpec("knn", scorer_params),
            postprocess=PostprocessSpec(spec.height, spec.width, cfg.blur_sigma),
            normalization=evaluation.normalization if evaluation else Normalization(),
            metrics=evaluation.metrics if evaluation else Metrics(),
            parity=ParityTolerance()
            if index_meta["exact"]
            else ParityTolerance(
                # approximate search: scores move; ranking (ROCAUC) must still hold
                image_rocauc_points=1.0,
                pixel_rocauc_points=1.0,
                score_rel=0.1,
                golden_rel=1e-3,
            ),
            libraries=library_versions(),
        )
        writer.write_manifest(manifest)
    return Path(out)
