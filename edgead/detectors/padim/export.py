"""PaDiM -> bundle: the embedder (with the channel subset) as ONNX, Gaussians as .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgead.bundle import roles
from edgead.bundle.io import BundleWriter
from edgead.bundle.manifest import ScorerSpec
from edgead.bundle.scorer_params import GaussianParams
from edgead.components.saved import SavedModel
from edgead.detectors.padim.model import statistics_bytes
from edgead.export.common import export_bundle


def export(
    saved: SavedModel,
    out: str | Path,
    overwrite: bool = False,
    fp16: bool = True,
    torch_graph: bool = False,
) -> Path:
    model = saved.model
    positions, d = model.mean.shape

    def write_artifacts(writer: BundleWriter) -> ScorerSpec:
        np.savez(
            writer.path("statistics.npz"),
            mean=model.mean.numpy(),
            whitening=model.whitening.numpy(),
            channel_index=model.embedder.channel_index.numpy(),
        )
        writer.add(
            "statistics.npz",
            role=roles.STATISTICS,
            fmt="npz",
            precision="fp32",
            positions=positions,
            dim=d,
        )
        return ScorerSpec(
            "gaussian",
            GaussianParams(
                output="embedding",
                positions=positions,
                dim=d,
                memory_bytes=statistics_bytes(positions, d),
                form="whitening factor W = inverse Cholesky factor; distance = ||W (x - mean)||",
            ),
        )

    return export_bundle(
        saved,
        out,
        overwrite,
        model.embedder,
        ["embedding"],
        write_artifacts,
        image_score="map_max",
        fp16=fp16,
        torch_graph=torch_graph,
    )
