import shutil

import numpy as np
import pytest

from edgead.data.datasets import MVTecCategory, folder_samples, open_dataset
from edgead.data.images import read_image, read_mask
from edgead.data.synthetic import DEFECTS, generate
from edgead.errors import DatasetError


@pytest.fixture
def tiny(tmp_path):
    return generate(tmp_path / "cat", n_train=3, n_test_good=2, n_test_defect=2, size=64, seed=3)


def test_mvtec_layout_labels_and_masks(tiny):
    ds = open_dataset(tiny)
    assert len(ds.train_paths()) == 3 and ds.validation_paths() == []
    samples = ds.test_samples()
    assert len(samples) == 2 + 2 * len(DEFECTS)
    good = [s for s in samples if s.label == 0]
    bad = [s for s in samples if s.label == 1]
    assert {s.defect for s in good} == {"good"} and all(s.mask_path is None for s in good)
    assert {s.defect for s in bad} == set(DEFECTS)
    for s in bad:
        assert s.mask_path.is_file() and read_mask(s.mask_path).any()
    assert samples[0].relpath(tiny).startswith("test/")


def test_without_ground_truth_means_image_labels_only(tiny):
    shutil.rmtree(tiny / "ground_truth")
    ds = open_dataset(tiny)
    assert not ds.has_masks
    assert all(s.mask_path is None for s in ds.test_samples())


def test_missing_mask_is_named(tiny):
    (tiny / "ground_truth" / "spot" / "000_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"000_mask\.png"):
        MVTecCategory(tiny).test_samples()


def test_not_mvtec_folder(tmp_path):
    with pytest.raises(DatasetError, match="not an MVTec-layout folder"):
        open_dataset(tmp_path)
    with pytest.raises(DatasetError, match="no such folder"):
        open_dataset(tmp_path / "missing")


def test_plain_folder_samples(tiny):
    samples = folder_samples(tiny / "test")
    assert len(samples) == 2 + 2 * len(DEFECTS) and all(s.label == -1 for s in samples)


def test_synthetic_set_is_deterministic(tmp_path):
    a = generate(tmp_path / "a", n_train=1, n_test_good=1, n_test_defect=1, size=48, seed=5)
    b = generate(tmp_path / "b", n_train=1, n_test_good=1, n_test_defect=1, size=48, seed=5)
    for rel in ("train/good/000.png", "test/missing/000.png", "ground_truth/scratch/000_mask.png"):
        np.testing.assert_array_equal(read_image(a / rel), read_image(b / rel))
