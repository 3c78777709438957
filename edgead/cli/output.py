"""One way to turn a prediction into a result row (CSV or JSON lines)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import IO, Any

from edgead.errors import EdgeadError
from edgead.runtime.timing import STAGES

FIELDS = [
    "path",
    "score",
    "normalized",
    "label",
    *[f"{s}_ms" for s in STAGES],
    "total_ms",
    "regions",
    "largest_region_area",
    "drift",
    "warning",
    "error",
]


def prediction_row(p: Any) -> dict[str, Any]:
    """One scored image: its verdict, per-stage times and defect regions (a list; CSV cells
    hold it as JSON)."""
    return {
        "path": p.source,
        "score": f"{p.image_score:.6g}",
        "normalized": "" if p.normalized_score is None else f"{p.normalized_score:.4f}",
        "label": p.label or "",
        "total_ms": f"{sum(p.timings_ms.values()):.3f}",
        **{f"{k}_ms": f"{v:.3f}" for k, v in p.timings_ms.items()},
        "regions": [r.to_dict() for r in p.regions],
        "largest_region_area": max((r.area for r in p.regions), default=0),
        "warning": "; ".join(p.warnings),
        "error": "",
    }


def failure_row(f: Any) -> dict[str, str]:
    return {"path": f.source, "error": f.error}


def check_appendable(path: Path, fmt: str) -> None:
    """Rows can be added to ``path`` only when its columns are this version's (CSV)."""
    if fmt != "csv" or not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    if header != FIELDS:
        raise EdgeadError(
            f"{path}: its columns are not the ones this edgead writes (written by another "
            "version?): --overwrite, or another --out"
        )


class ResultWriter:
    """Rows to an open file as CSV (with a header) or JSON lines, flushed as they come."""

    def __init__(self, f: IO[str], fmt: str, header: bool = True):
        self.f = f
        self.csv = csv.DictWriter(f, fieldnames=FIELDS) if fmt == "csv" else None
        if self.csv and header:
            self.csv.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        if self.csv:
            self.csv.writerow(
                {k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()}
            )
        else:
            self.f.write(json.dumps(row) + "\n")
        self.f.flush()
