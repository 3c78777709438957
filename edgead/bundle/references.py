"""The PyTorch model's per-image scores on its evaluation set, stored in the bundle as CSV."""

from __future__ import annotations

import csv
from pathlib import Path

from edgead.bundle.io import BundleWriter
from edgead.bundle.roles import REFERENCE_SCORES


def write_reference_scores(writer: BundleWriter, records: list[dict]) -> None:
    path: Path = writer.path("reference_scores.csv")
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=["relpath", "label", "defect", "score"])
        out.writeheader()
        for r in records:
            out.writerow({**r, "score": repr(float(r["score"]))})
    writer.add("reference_scores.csv", role=REFERENCE_SCORES, fmt="csv", n=len(records))


def read_reference_scores(path: Path) -> dict[str, float]:
    with open(path, newline="") as f:
        return {row["relpath"]: float(row["score"]) for row in csv.DictReader(f)}


def read_reference_labels(path: Path) -> tuple[list[int], list[float]]:
    """Labels and reference scores of the evaluation set, in file order."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [int(r["label"]) for r in rows], [float(r["score"]) for r in rows]
