"""Fixtures for the pytest-benchmark suites: one PatchCore fit on the synthetic set, exported
with an exact and an IVF-PQ memory bank.

    python -m pytest benchmarks --benchmark-columns=median,iqr,ops
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def bench_data(tmp_path_factory) -> Path:
    from edgead.data.synthetic import generate

    return generate(
        tmp_path_factory.mktemp("bench") / "parts",
        n_train=40,
        n_test_good=4,
        n_test_defect=2,
        size=224,
        seed=2,
    )


@pytest.fixture(scope="session")
def bundles(bench_data, tmp_path_factory) -> dict[str, Path]:
    from edgead.detectors.patchcore.model import PatchCoreConfig
    from edgead.workflows import export_model, fit_detector

    saved = fit_detector("patchcore", bench_data, PatchCoreConfig(coreset_ratio=0.25), quiet=True)
    root = tmp_path_factory.mktemp("bench-bundles")
    bundles = {kind: export_model(saved, root / kind, index=kind) for kind in ("flat", "ivfpq")}
    bundles["graph"] = export_model(saved, root / "graph", search="graph")
    return bundles


@pytest.fixture(scope="session")
def image(bench_data) -> np.ndarray:
    from edgead.data.images import read_image

    return read_image(next((bench_data / "test" / "spot").glob("*.png")))
