"""The truth about speed, in ONE run: a detector fitted and exported with defaults on a real
category, then, in this one process, one after the other on the same images:

- the bundle in the lean runtime, per stage, p50/p99 at batch 1, and throughput at batch 16;
- the PyTorch model it came from, on the same preprocessed images (its forward: backbone,
  search, map);
- the hardware floor of the search: one numpy matrix product of the same shape (PatchCore);

each quiet and again with a competing CPU-bound process that this script starts itself (one
busy Python loop, killed after, and exiting by itself after ``--load-s`` seconds whatever
happens). The fit and export times come from the same run; ``--export-wall`` also times the
command a user types (``edgead export DETECTOR --data DATA``) as a subprocess, quiet and loaded.
Every figure travels with its context (CPU, cores, threads, load average, versions, date).

    python benchmarks/speed.py --data ../shared/data/mvtec3d_tire [--detector patchcore]
        [--export-wall] [--json speed.json]

Goals (2-core machine): PatchCore with defaults: score p50 <= graph p50, total
p50 <= 1/3 of the PyTorch model's; loaded: total p99 <= 3x the quiet p50; SPADE search p50 <=
40 ms; `edgead export patchcore` <= 45 s quiet and <= 2.5x that loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def competing_load(seconds: float) -> Iterator[subprocess.Popen]:
    """One CPU-bound process beside this one, for at most ``seconds``."""
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"
    proc = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(0.5)  # let it take its core
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def summary(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, np.float64)
    return {"p50": float(np.median(v)), "p99": float(np.percentile(v, 99)), "n": len(v)}


def measure(pipe, torch_model, images, tensors, bank, repeats: int) -> dict:
    """In this one process, one after the other: the bundle's stages over the images, the
    PyTorch forward over the same images, the search floor. Not interleaved image by image: a
    library's threads that linger after its call (torch's, numpy's BLAS) would slow whatever
    runs next, which no deployment runs beside the bundle."""
    import torch

    from edgead.runtime.timing import StageTimer

    stages: dict[str, list[float]] = {}
    torch_ms, floor_ms = [], []
    for _ in range(repeats):
        for image in images:
            timer = StageTimer(pipe.backend.synchronize)
            pipe.predict([image], timer)
            for k, v in timer.ms.items():
                stages.setdefault(k, []).append(v)
            stages.setdefault("total", []).append(sum(timer.ms.values()))
    batch = [images[i % len(images)] for i in range(16)]
    pipe.predict(batch)
    t = time.perf_counter()
    runs = max(2, repeats)
    for _ in range(runs):
        pipe.predict(batch)
    throughput = 16 * runs / (time.perf_counter() - t)
    for _ in range(repeats):
        for x in tensors:
            t = time.perf_counter()
            with torch.inference_mode():
                torch_model(x)
            torch_ms.append(1000 * (time.perf_counter() - t))
    if bank is not None:
        q = np.random.default_rng(0).standard_normal((784, bank.shape[1]), np.float32)
        for _ in range(len(torch_ms)):
            t = time.perf_counter()
            (q @ bank.T).min(1)
            floor_ms.append(1000 * (time.perf_counter() - t))
    out = {
        "bundle_ms": {k: summary(v) for k, v in stages.items()},
        "torch_ms": summary(torch_ms),
        "throughput_batch16": throughput,
    }
    if floor_ms:
        out["search_floor_ms"] = summary(floor_ms)
    return out


def export_wall(detector: str, data: Path, out: Path) -> float:
    t = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "edgead",
            "-q",
            "export",
            detector,
            "--data",
            str(data),
            "--out",
            str(out),
            "--overwrite",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--detector", default="patchcore")
    ap.add_argument("--images", type=int, default=20, help="test images timed (each repeat)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--load-s", type=float, default=600, help="longest the competing load lives")
    ap.add_argument("--export-wall", action="store_true", help="also time the CLI export")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import edgead  # noqa: F401  (first: OpenMP's passive waiting must precede torch's load)
    from edgead.detectors.registry import get_detector
    from edgead.runtime.bench import bench_context
    from edgead.threads import configure

    threads = configure(args.threads)
    result: dict = {
        "context": bench_context(threads),
        "data": args.data.name,
        "detector": args.detector,
    }
    detector = get_detector(args.detector)
    with tempfile.TemporaryDirectory(prefix="edgead-speed-") as tmp:
        run(args, result, detector, threads, Path(tmp))


def run(args, result: dict, detector, threads, work: Path) -> None:
    import torch

    from edgead.components.backbones import inference_ready
    from edgead.data.datasets import open_dataset
    from edgead.data.images import read_image
    from edgead.runtime.pipeline import Pipeline
    from edgead.runtime.preprocess import preprocess
    from edgead.workflows import export_model, fit_detector

    t0 = time.perf_counter()
    saved = fit_detector(args.detector, args.data, detector.config_cls(), quiet=True)
    t1 = time.perf_counter()
    export_model(saved, work / "bundle")
    t2 = time.perf_counter()
    result["fit"] = {
        k: saved.fit_report.get(k)
        for k in ("feature_seconds", "coreset_seconds", "fit_seconds", "n_patches", "memory_bank")
    }
    result["fit"].update({"fit_and_evaluate_s": t1 - t0, "export_s": t2 - t1})
    result["search_choice"] = saved.fit_report.get("search", {}).get("chosen")
    samples = open_dataset(args.data).test_samples()
    step = max(1, len(samples) // args.images)
    paths = [s.path for s in samples[::step][: args.images]]
    images = [read_image(p) for p in paths]
    # the PyTorch model as edgead evaluates it (BatchNorm folded: the faster torch)
    model = inference_ready(copy.deepcopy(saved.model))
    bank = None
    if args.detector == "patchcore":
        bank = np.ascontiguousarray(model.memory_bank.numpy(), np.float32)
    with Pipeline(work / "bundle", threads=threads) as pipe:
        tensors = [torch.from_numpy(preprocess(im, pipe.spec))[None] for im in images]
        result["backend"] = pipe.describe()
        measure(pipe, model, images[:3], tensors[:3], bank, 1)  # warm-up
        result["quiet"] = measure(pipe, model, images, tensors, bank, args.repeats)
        with competing_load(args.load_s):
            result["loaded"] = measure(pipe, model, images, tensors, bank, args.repeats)
    if args.export_wall:
        result["export_wall_s"] = {"quiet": export_wall(args.detector, args.data, work / "cli")}
        with competing_load(args.load_s):
            result["export_wall_s"]["loaded"] = export_wall(args.detector, args.data, work / "cli")
    q, lo = result["quiet"], result["loaded"]
    qb, lb = q["bundle_ms"], lo["bundle_ms"]
    result["checks"] = {
        "score_p50_le_graph_p50": qb.get("score", {"p50": 0})["p50"] <= qb["graph"]["p50"],
        "total_p50_le_third_of_torch": qb["total"]["p50"] <= q["torch_ms"]["p50"] / 3,
        "loaded_total_p99_le_3x_quiet_p50": lb["total"]["p99"] <= 3 * qb["total"]["p50"],
    }
    for name, r in (("quiet", q), ("loaded", lo)):
        stages = ", ".join(f"{k} {v['p50']:.1f}/{v['p99']:.1f}" for k, v in r["bundle_ms"].items())
        floor = r.get("search_floor_ms", {}).get("p50")
        print(
            f"{name}: bundle p50/p99 ms: {stages}; batch 16: {r['throughput_batch16']:.1f} img/s; "
            f"PyTorch p50 {r['torch_ms']['p50']:.1f} ms"
            + (f"; search floor (numpy product) p50 {floor:.1f} ms" if floor else "")
        )
    print("fit:", json.dumps(result["fit"]), "| search:", result["search_choice"])
    if "export_wall_s" in result:
        print("export wall s:", json.dumps(result["export_wall_s"]))
    print("checks:", json.dumps(result["checks"]))
    print("context:", json.dumps(result["context"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
