"""Which backend and precision a bundle runs with by default: measured, like its search.

At export and after ``edgead quantize``, every (backend, precision) the bundle can run here and
that holds its parity is timed on the bundle's golden input (batch 1, the candidates
interleaved); the choice (``choose``: the fastest, but higher precision where the gain is
within a margin) is recorded in the manifest (``runtime``) with what was measured and on
which CPU. ``--backend auto --precision auto`` (the defaults) run that choice where its
backend is installed, and onnxruntime FP32 where not. Parity that qualifies a candidate: the
golden check at its precision's tolerances (FP32, FP16: outputs and scores against the
PyTorch model's), and for INT8 the gate on the evaluation set that ``edgead quantize`` ran on
that backend (the graph is refused on any other).
"""

from __future__ import annotations

import datetime
import logging
import time

import numpy as np

from edgead.bundle import roles
from edgead.bundle.io import Bundle
from edgead.errors import EdgeadError
from edgead.runtime.choice import installed, instruction_sets

log = logging.getLogger(__name__)

# a candidate later in CANDIDATES is the default only if this much faster than the one chosen
# before it (a choice that flips with the noise of two timings helps nobody, and a lower
# precision that is not clearly faster gives up accuracy for nothing)
MARGIN = 0.9
# in order of preference: the plain default, then higher precision before lower
CANDIDATES = (
    ("onnxruntime", "fp32"),
    ("openvino", "fp32"),
    ("onnxruntime", "fp16"),
    ("openvino", "fp16"),
    ("onnxruntime", "int8"),
    ("openvino", "int8"),
)


def choose(p50: dict[str, float]) -> str:
    """The candidate (label "backend precision") to run by default, from its measured p50: in
    the order of CANDIDATES, each one replaces the choice so far only when it takes less than
    MARGIN of its time."""
    order = [f"{b} {p}" for b, p in CANDIDATES if f"{b} {p}" in p50]
    order += sorted(label for label in p50 if label not in order)
    best = order[0]
    for label in order[1:]:
        if p50[label] < MARGIN * p50[best]:
            best = label
    return best


def measure_runtime(bundle: Bundle, runs: int = 20, threads: int | None = None) -> dict:
    """Time every candidate that holds its parity; the choice, with what was measured."""
    from edgead.runtime.bench import cpu_name
    from edgead.runtime.parity import golden_rows
    from edgead.runtime.pipeline import Pipeline

    with np.load(bundle.path(roles.GOLDEN)) as g:
        x = g["input"][:1]
    feed = {bundle.manifest.graph.input_name: x}
    pipes, skipped = {}, {}
    try:
        for backend, precision in CANDIDATES:
            label = f"{backend} {precision}"
            if not installed(backend):
                skipped[label] = "not installed"
                continue
            try:
                pipe = Pipeline(
                    bundle, backend=backend, precision=precision, search="faiss", threads=threads
                )
            except EdgeadError as exc:
                skipped[label] = str(exc).split(": ", 1)[-1]
                continue
            pipes[label] = pipe
            if precision != "int8":  # INT8 holds parity through its gate (graph_artifact)
                failed = [r.check for r in golden_rows(pipe) if r.ok is False]
                if failed:
                    skipped[label] = f"fails its golden check ({', '.join(failed)})"
                    pipes.pop(label).close()
        times: dict[str, list[float]] = {label: [] for label in pipes}
        for pipe in pipes.values():  # warm-up
            for _ in range(3):
                pipe.backend.infer(feed)
        for i in range(runs):
            order = list(pipes.items())
            k = i % len(order)
            for label, pipe in order[k:] + order[:k]:
                pipe.backend.infer(feed)  # untimed: the previous pool's spin settles
                t = time.perf_counter()
                pipe.backend.infer(feed)
                pipe.backend.synchronize()
                times[label].append(1000 * (time.perf_counter() - t))
    finally:
        for pipe in pipes.values():
            pipe.close()
    if not times:
        raise EdgeadError(f"{bundle.root}: no backend here runs this bundle's graphs")
    p50 = {label: round(float(np.median(v)), 3) for label, v in times.items()}
    backend, precision = choose(p50).split()
    return {
        "backend": backend,
        "precision": precision,
        "graph_p50_ms": p50,
        "not_candidates": skipped,
        "cpu": cpu_name(),
        "isa": instruction_sets(),
        "threads": threads,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def record_runtime(writer, manifest, threads: int | None = None) -> dict:
    """Measure the staged bundle in ``writer`` and write the choice into its manifest."""
    from edgead.bundle.io import open_bundle

    choice = measure_runtime(open_bundle(writer.staging), threads=threads)
    manifest.runtime = choice
    writer.write_manifest(manifest)
    log.info(
        "default runtime: %s %s (graph p50 %s)",
        choice["backend"],
        choice["precision"],
        ", ".join(f"{k} {v} ms" for k, v in choice["graph_p50_ms"].items()),
    )
    return choice
