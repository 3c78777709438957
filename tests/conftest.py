"""Shared fixtures: a small synthetic MVTec-style category, a fitted PatchCore and its bundle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path | None:
    """The real MVTec-layout subsets: $EDGEAD_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("EDGEAD_DATA")
    root = Path(env) if env else REPO.parent / "shared" / "data"
    return root if root.is_dir() else None


def real_category(name: str) -> Path:
    root = shared_data()
    if root is None:
        pytest.skip("real data absent: set EDGEAD_DATA or put the MVTec subsets in ../shared/data")
    path = root / name
    if not (path / "train" / "good").is_dir():
        pytest.skip(f"real data category {name} absent from {root}")
    return path


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgead.data.synthetic import generate

    return generate(
        tmp_path_factory.mktemp("synthetic") / "parts",
        n_train=16,
        n_test_good=6,
        n_test_defect=4,
        size=160,
        seed=1,
    )


@pytest.fixture(scope="session")
def small_config():
    pytest.importorskip("torch")
    from edgead.models.patchcore import PatchCoreConfig

    return PatchCoreConfig(image_size=(128, 128), coreset_ratio=0.1, batch_size=8)


@pytest.fixture(scope="session")
def saved_patchcore(synthetic_data: Path, small_config):
    from edgead.workflows import fit_detector

    return fit_detector("patchcore", synthetic_data, small_config, quiet=True)


@pytest.fixture(scope="session")
def patchcore_bundle(saved_patchcore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgead.workflows import export_model

    return export_model(saved_patchcore, tmp_path_factory.mktemp("bundles") / "patchcore")
