"""tools/gpu_pack.py: the copy of a category carried to the GPU machine keeps its layout, its
labels and its masks (images re-encoded as JPEG, close to the originals)."""

from __future__ import annotations

import importlib.util

import numpy as np

from edgead.data.datasets import open_dataset
from edgead.data.images import read_image
from edgead.data.synthetic import generate
from tests.conftest import REPO


def load_tool():
    spec = importlib.util.spec_from_file_location("gpu_pack", REPO / "tools" / "gpu_pack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_packed_category_reads_like_the_original(tmp_path):
    src = generate(tmp_path / "src", n_train=4, n_test_good=2, n_test_defect=2, size=96, seed=3)
    size = load_tool().pack_category(src, tmp_path / "dst", quality=95)
    a, b = open_dataset(src), open_dataset(tmp_path / "dst")
    assert size > 0 and len(b.train_paths()) == len(a.train_paths())
    pairs = list(zip(a.test_samples(), b.test_samples(), strict=True))
    assert pairs and all(x.label == y.label and x.defect == y.defect for x, y in pairs)
    assert any(x.mask_path for x, _ in pairs)
    for x, y in pairs:
        assert y.path.suffix == ".jpg"
        diff = np.abs(read_image(x.path).astype(int) - read_image(y.path).astype(int))
        assert diff.mean() < 3  # JPEG quality 95
        if x.mask_path is not None:
            assert x.mask_path.read_bytes() == y.mask_path.read_bytes()  # masks unchanged
