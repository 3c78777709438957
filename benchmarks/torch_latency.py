"""Latency of the original PyTorch model next to the bundle's, measured the same way.

    python benchmarks/torch_latency.py report/bundles/*

For each bundle, rebuilds the PyTorch detector from the bundle's recorded config with the same
backbone weights and the same shapes of memory bank / statistics / galleries (values are
placeholders: compute time does not depend on them) and times it at batch 1 on the bundle's
golden inputs: preprocessed input to anomaly map, the span of the runtime's graph + score +
postprocess stages. Prints a Markdown table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

from edgead.bundle import open_bundle, roles
from edgead.detectors.registry import get_detector


def placeholder_model(bundle) -> torch.nn.Module:
    """The detector with the real backbone and the bundle's shapes for its fitted tensors."""
    from edgead.detectors.padim import model as padim
    from edgead.detectors.patchcore import model as patchcore
    from edgead.detectors.spade import model as spade

    m = bundle.manifest
    p = m.scorer.params
    module = {"patchcore": patchcore, "padim": padim, "spade": spade}[m.detector]
    config = get_detector(m.detector).config_from_dict(m.params)
    embedder, _ = module.build_embedder(config, config.weights)
    if m.detector == "patchcore":
        meta = m.artifact(roles.INDEX).meta
        return patchcore.PatchCoreModel(embedder, torch.randn(meta["ntotal"], meta["dim"]), config)
    if m.detector == "padim":
        positions, d = p.positions, p.dim
        eye = torch.eye(d).expand(positions, d, d).contiguous()
        return padim.PadimModel(embedder, torch.randn(positions, d), eye, config)
    meta = m.artifact(roles.INDEX).meta
    galleries = [
        torch.randn(*m.artifact(roles.gallery(i)).meta["shape"]) for i in range(len(p.outputs))
    ]
    return spade.SpadeModel(embedder, torch.randn(meta["ntotal"], meta["dim"]), galleries, config)


def measure(path: Path, runs: int = 20) -> list:
    bundle = open_bundle(path)
    model = placeholder_model(bundle).eval()
    with np.load(bundle.path(roles.GOLDEN)) as g:
        x = torch.from_numpy(g["input"][:1])
    with torch.no_grad():
        for _ in range(3):
            model(x)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1000)
    m = bundle.manifest
    return [
        m.detector,
        Path(m.metrics.dataset).name,
        f"{np.median(times):.1f}",
        f"{np.percentile(times, 90):.1f}",
        torch.get_num_threads(),
    ]


def main() -> None:
    rows = [measure(Path(p)) for p in sys.argv[1:]]
    print(
        tabulate(
            rows,
            headers=["detector", "category", "PyTorch p50 ms", "p90 ms", "torch threads"],
            tablefmt="github",
        )
    )


if __name__ == "__main__":
    main()
