"""Per-stage timers. The device is synchronized at every stage boundary, so "graph ms" is
the same quantity on every backend (Polygraphy's lesson).

The stages of one prediction, the same for every detector:

- ``decode``: the image file or frame to an RGB array (folder and video runs only);
- ``preprocess``: resize and normalize into the graph's input;
- ``graph``: the exported graph on the backend: the feature network and whatever of the
  scorer was compiled into it (PatchCore's exact search when exported with
  ``--in-graph-search``, EfficientAD's teacher, student and autoencoder);
- ``score``: the scorer on the host: PatchCore's faiss search, PaDiM's and PUAD's Mahalanobis
  distances, SPADE's gallery search, EfficientAD's map combination;
- ``postprocess``: image scores and anomaly maps at the input size, normalization, verdicts.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator

import numpy as np

STAGES = ("decode", "preprocess", "graph", "score", "postprocess")


class StageTimer:
    """Times named stages of one prediction, in milliseconds."""

    def __init__(self, synchronize: Callable[[], None] | None = None):
        self.synchronize = synchronize or (lambda: None)
        self.ms: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.synchronize()
            self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - start) * 1e3


class LatencyStats:
    """Collects per-image stage timings and summarizes them (median, p90, p99, mean).

    ``window``: keep only the last N images (a server's rolling figures); None keeps all.
    """

    def __init__(self, window: int | None = None) -> None:
        self.samples: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))

    def add(self, ms: dict[str, float]) -> None:
        for stage, value in ms.items():
            self.samples[stage].append(value)
        self.samples["total"].append(sum(v for k, v in ms.items() if k != "total"))

    def __len__(self) -> int:
        return len(self.samples.get("total", []))

    def summary(self) -> dict[str, dict[str, float]]:
        order = [s for s in (*STAGES, "total") if s in self.samples]
        order += [s for s in self.samples if s not in order]
        out = {}
        for stage in order:
            v = np.asarray(self.samples[stage], dtype=np.float64)
            out[stage] = {
                "p50": float(np.median(v)),
                "p90": float(np.percentile(v, 90)),
                "p99": float(np.percentile(v, 99)),
                "mean": float(v.mean()),
            }
        return out

    def table(self, title: str = "") -> str:
        from tabulate import tabulate

        rows = [
            [stage, f"{s['p50']:.2f}", f"{s['p90']:.2f}", f"{s['p99']:.2f}", f"{s['mean']:.2f}"]
            for stage, s in self.summary().items()
        ]
        text = tabulate(
            rows, headers=["stage", "p50 ms", "p90 ms", "p99 ms", "mean ms"], tablefmt="github"
        )
        return f"{title}\n{text}" if title else text
