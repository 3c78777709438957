"""SPADE -> bundle: the multi-output feature graph as ONNX, a faiss index of the training
images' pooled features, and their feature pyramids as plain .npy galleries (memory-mapped
by the runtime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgead.bundle import roles
from edgead.bundle.io import BundleWriter
from edgead.bundle.manifest import ScorerSpec
from edgead.bundle.scorer_params import SpadeParams
from edgead.components.saved import SavedModel
from edgead.detectors.spade.model import output_names
from edgead.export.common import export_bundle
from edgead.export.faiss_index import build_index, write_index


def export(
    saved: SavedModel,
    out: str | Path,
    overwrite: bool = False,
    fp16: bool = True,
    torch_graph: bool = False,
) -> Path:
    model = saved.model
    cfg = model.config
    names = output_names(model.n_layers)

    def write_artifacts(writer: BundleWriter) -> ScorerSpec:
        index, meta = build_index(model.train_pooled.numpy(), "flat")
        write_index(index, writer.path("train_pooled.faiss"))
        writer.add("train_pooled.faiss", role=roles.INDEX, fmt="faiss", precision="fp32", **meta)
        for i in range(model.n_layers):
            np.save(writer.path(f"gallery_{i}.npy"), model.gallery(i).numpy())
            writer.add(
                f"gallery_{i}.npy",
                role=roles.gallery(i),
                fmt="npy",
                precision="fp32",
                layer=cfg.layers[i],
                shape=list(model.gallery(i).shape),
            )
        return ScorerSpec(
            "spade",
            SpadeParams(
                outputs=tuple(names[:-1]),
                pooled="pooled",
                k=cfg.k,
                gallery_k=cfg.gallery_k,
                layers=tuple(cfg.layers),
                pooled_layer=cfg.pooled_layer,
            ),
        )

    return export_bundle(
        saved,
        out,
        overwrite,
        model.embedder,
        names,
        write_artifacts,
        fp16=fp16,
        torch_graph=torch_graph,
    )
