"""EfficientAD / PUAD -> bundle: one graph from image to (EfficientAD score, anomaly map) with
the teacher normalization and the quantile map normalization folded in; for PUAD the pooled
feature is a third output of the same pass and the Gaussian goes into ``puad.npz``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgead.bundle import roles
from edgead.bundle.io import BundleWriter
from edgead.bundle.manifest import ScorerSpec
from edgead.bundle.scorer_params import EfficientAdParams, PuadParams
from edgead.components.saved import SavedModel
from edgead.detectors.efficientad.model import EfficientAdGraph, output_names
from edgead.export.common import export_bundle


def export(
    saved: SavedModel,
    out: str | Path,
    overwrite: bool = False,
    fp16: bool = True,
    torch_graph: bool = False,
) -> Path:
    model = saved.model.eval()
    config = model.config

    def write_artifacts(writer: BundleWriter) -> ScorerSpec:
        puad = None
        if config.puad:
            stats = model.puad_stats.numpy()
            np.savez(
                writer.path("puad.npz"),
                mean=model.puad_mean.numpy(),
                whitening=model.puad_whitening.numpy(),
            )
            writer.add(
                "puad.npz", role=roles.STATISTICS, fmt="npz", precision="fp64", dim=model.pooled_dim
            )
            puad = PuadParams(
                output="pooled",
                feature=config.puad_feature,
                dim=model.pooled_dim,
                weight=float(config.puad_weight),
                ead_mean=float(stats[0]),
                ead_std=float(stats[1]),
                mahalanobis_mean=float(stats[2]),
                mahalanobis_std=float(stats[3]),
                form="score = (ead - ead_mean) / ead_std + weight * (d - mean) / std, "
                "d = ||W (pooled - mean)||, W = inverse Cholesky factor of the Ledoit-Wolf "
                "covariance (float64)",
            )
        return ScorerSpec("efficientad", EfficientAdParams("ead_score", "anomaly_map", puad))

    return export_bundle(
        saved,
        out,
        overwrite,
        EfficientAdGraph(model),
        output_names(config),
        write_artifacts,
        image_score="scorer",
        fp16=fp16,
        torch_graph=torch_graph,
        fp16_module=EfficientAdGraph(model, half=True) if fp16 else None,
    )
