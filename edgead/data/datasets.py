"""Datasets: the MVTec layout and plain image folders. No torch here.

MVTec layout::

    root/train/good/*.png
    root/validation/good/*.png                       (optional)
    root/test/<defect or good>/*.png
    root/ground_truth/<defect>/<stem>_mask.png       (optional: without it, image labels only)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgead.data.holdout import DEFAULT_HOLDOUT_BY, split_holdout_paths
from edgead.data.images import IMAGE_SUFFIXES, list_images
from edgead.errors import DatasetError


@dataclass(frozen=True)
class Sample:
    """One test image: its path, label (0 good, 1 anomalous), defect type and mask path."""

    path: Path
    label: int
    defect: str
    mask_path: Path | None = None

    def relpath(self, root: Path) -> str:
        return self.path.relative_to(root).as_posix()


@dataclass
class MVTecCategory:
    """One category in the MVTec layout."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @staticmethod
    def is_mvtec(root: str | Path) -> bool:
        return (Path(root) / "train" / "good").is_dir()

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def has_masks(self) -> bool:
        return (self.root / "ground_truth").is_dir()

    def train_paths(self) -> list[Path]:
        paths = list_images(self.root / "train" / "good")
        if not paths:
            raise DatasetError(f"{self.root / 'train' / 'good'}: no training images found")
        return paths

    def validation_paths(self) -> list[Path]:
        folder = self.root / "validation" / "good"
        return list_images(folder) if folder.is_dir() else []

    def split_holdout(
        self,
        fraction: float = 0.1,
        seed: int = 0,
        by: str = DEFAULT_HOLDOUT_BY,
        use_validation: bool = True,
    ) -> tuple[list[Path], list[Path], str]:
        """(images to fit on, held-out good images, where the held-out ones came from).

        validation/good when the category has it (the detector never sees it in training);
        else ``fraction`` of train/good chosen ``by`` (``edgead.data.holdout``), left out of
        the fit.
        """
        train = self.train_paths()
        validation = self.validation_paths() if use_validation else []
        if validation:
            return train, validation, f"{len(validation)} images of validation/good"
        return split_holdout_paths(train, fraction, by, seed, self.root / "train" / "good")

    def test_samples(self) -> list[Sample]:
        test_root = self.root / "test"
        if not test_root.is_dir():
            return []
        samples: list[Sample] = []
        for defect_dir in sorted(p for p in test_root.iterdir() if p.is_dir()):
            defect = defect_dir.name
            label = 0 if defect == "good" else 1
            for path in list_images(defect_dir):
                mask = None
                if label == 1 and self.has_masks:
                    mask = self.root / "ground_truth" / defect / f"{path.stem}_mask.png"
                    if not mask.is_file():
                        raise DatasetError(
                            f"{path}: ground_truth exists but the mask {mask} is missing"
                        )
                samples.append(Sample(path, label, defect, mask))
        return samples


def open_dataset(root: str | Path) -> MVTecCategory:
    """Open an MVTec-layout folder, or raise a DatasetError that says what was expected."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    if not MVTecCategory.is_mvtec(root):
        raise DatasetError(
            f"{root}: not an MVTec-layout folder (expected {root}/train/good/ with images); "
            "a plain folder of good images can be given to --data only for fitting"
        )
    return MVTecCategory(root)


def folder_samples(root: str | Path) -> list[Sample]:
    """All images of a plain folder (recursively), unlabelled (label -1)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return [Sample(p, -1, p.parent.name) for p in paths]
