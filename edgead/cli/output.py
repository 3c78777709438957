"""One way to turn a prediction into a result row (CSV or JSON lines)."""

from __future__ import annotations

import csv
import json
from typing import IO, Any

from edgead.runtime.timing import STAGES

FIELDS = [
    "path",
    "score",
    "normalized",
    "label",
    *[f"{s}_ms" for s in STAGES],
    "total_ms",
    "warning",
    "error",
]


def prediction_row(p: Any) -> dict[str, str]:
    return {
        "path": p.source,
        "score": f"{p.image_score:.6g}",
        "normalized": "" if p.normalized_score is None else f"{p.normalized_score:.4f}",
        "label": p.label or "",
        "total_ms": f"{sum(p.timings_ms.values()):.3f}",
        **{f"{k}_ms": f"{v:.3f}" for k, v in p.timings_ms.items()},
        "warning": "; ".join(p.warnings),
        "error": "",
    }


def failure_row(f: Any) -> dict[str, str]:
    return {"path": f.source, "error": f.error}


class ResultWriter:
    """Rows to an open file as CSV (with a header) or JSON lines, flushed as they come."""

    def __init__(self, f: IO[str], fmt: str):
        self.f = f
        self.csv = csv.DictWriter(f, fieldnames=FIELDS) if fmt == "csv" else None
        if self.csv:
            self.csv.writeheader()

    def write(self, row: dict[str, str]) -> None:
        if self.csv:
            self.csv.writerow(row)
        else:
            self.f.write(json.dumps(row) + "\n")
        self.f.flush()
