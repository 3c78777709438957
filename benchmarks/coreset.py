"""The PatchCore coreset: time and covering radius of the greedy k-center picks.

At real scale (``--case``): real features of one category at a larger input size, or of
several categories pooled; the one greedy over every patch (the exact reference: computed
once per case and kept in the results file) against the composable coreset at several chunk
sizes, each run in a process of its own for its peak memory (the process's, features
included). Rows are appended to ``--jsonl`` as they come, and a rerun on the same CPU skips
what is there:

    python benchmarks/coreset.py --case tire448 --image-size 448 \
        --data ../shared/data/mvtec3d_tire --chunks 50000,100000,200000 \
        --jsonl benchmarks/results/coreset_scale.jsonl

On one category's real PatchCore features (default backbone, default settings), in one process:
the fast greedy (``edgead.components.coreset``) against the naive greedy it replaces, each
with its time and covering radius (largest distance from any training patch to its nearest
pick, in the full embedding space); and, with ``--scale N``, the same at N patches made of the
real features repeated with noise (the issue's 700-image case is ``--scale 550000``).

    python benchmarks/coreset.py --data ../shared/data/mvtec3d_tire [--naive] [--scale 550000]

Goals (this 2-core machine, quiet): tire 10% in <= 10 s with a covering radius
within 5% of the naive greedy's; 550,000 patches in <= 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from edgead.components.coreset import covering_radius, first_pick, k_center_greedy, project
from edgead.runtime.bench import bench_context, cpu_label


def features_of(data: Path | list[Path], cache: Path | None, image_size: int = 224) -> torch.Tensor:
    """The default PatchCore embedder's patch features of the training images of one category
    (or of several, pooled), in image order (each image's patches together)."""
    if cache is not None and cache.exists():
        return torch.from_numpy(np.load(cache))
    from edgead.components.common import batched_inputs, input_spec
    from edgead.data.datasets import open_dataset
    from edgead.detectors.patchcore.model import PatchCoreConfig, build_embedder

    config = PatchCoreConfig(image_size=(image_size, image_size))
    embedder, _ = build_embedder(config, None)
    chunks = []
    with torch.inference_mode():
        for root in data if isinstance(data, list) else [data]:
            paths = open_dataset(root).train_paths()
            for _, batch, _ in batched_inputs(paths, input_spec(config), 16, "features", True):
                emb = embedder(batch)
                chunks.append(emb.reshape(-1, emb.shape[-1]))
    features = torch.cat(chunks)
    if cache is not None:
        np.save(cache, features.numpy())
    return features


def naive_greedy(features: torch.Tensor, n_select: int, seed: int) -> torch.Tensor:
    """The greedy as written before: one pass over every projected point per pick."""
    x = project(features, 128, seed)
    sq = (x * x).sum(1)
    min_dist = torch.full((len(x),), float("inf"))
    selected = torch.empty(n_select, dtype=torch.long)
    idx = first_pick(len(x), seed)
    for i in range(n_select):
        selected[i] = idx
        c = x[idx]
        torch.minimum(min_dist, sq - 2.0 * (x @ c) + (c * c).sum(), out=min_dist)
        idx = int(torch.argmax(min_dist))
    return selected


def high_water_mb() -> float:
    """This process's peak resident memory, MiB: VmHWM, the high-water mark of its own address
    space (getrusage's ru_maxrss would carry over the parent's peak across fork and exec)."""
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_run(
    features_npy: Path,
    method: str,
    chunk: int,
    ratio: float,
    refine: float,
    radius: bool = True,
    estimate: bool = False,
) -> dict:
    """One coreset in this process: time, covering radius, peak memory (printed as JSON);
    with ``estimate``, first the fit's estimate of that time (``estimate_seconds``)."""
    from edgead.components.coreset import estimate_seconds, k_center_greedy_chunked

    x = torch.from_numpy(np.load(features_npy))
    loaded_mb = high_water_mb()
    n_select = round(ratio * len(x))
    k_center_greedy(x[:2000], 10)  # the numba kernel from its disk cache
    said = None
    if estimate:  # as the fit says it, from the same features and settings
        said = estimate_seconds(x, n_select, 0 if method == "exact" else chunk, 128, 0, refine)
    t = time.perf_counter()
    if method == "exact":
        picks = k_center_greedy(x, n_select)
    else:
        picks = k_center_greedy_chunked(x, n_select, chunk, refine=refine)
    seconds = time.perf_counter() - t
    peak_mb = high_water_mb()
    np.save(
        features_npy.with_name(f"{features_npy.stem}_{method}{chunk or ''}_picks.npy"),
        picks.numpy(),
    )
    return {
        "method": method,
        "chunk": chunk or None,
        "refine": refine,
        "patches": len(x),
        "dim": x.shape[1],
        "picks": n_select,
        "seconds": round(seconds, 2),
        "radius": covering_radius(x, picks) if radius else None,
        "peak_rss_mb": round(peak_mb),
        "features_mb": round(loaded_mb),
        **({"estimate": said} if estimate else {}),
    }


def scale_case(args) -> None:
    """The real-scale rows of one case (module docstring), appended to --jsonl."""
    import subprocess
    import sys

    done = []
    if args.jsonl.exists():
        done = [json.loads(line) for line in args.jsonl.read_text().splitlines() if line]
    # a rerun skips what this machine measured; another machine measures again
    here = bench_context()

    def machine(context: dict) -> tuple:
        return context.get("cpu"), tuple(context.get("isa") or ())

    mine = [r for r in done if r["case"] == args.case and machine(r["context"]) == machine(here)]
    features_npy = args.cache or Path(f"/tmp/edgead-features-{args.case}.npy")
    if not features_npy.exists():
        t = time.perf_counter()
        features_of(args.data, features_npy, args.image_size)
        print(f"{args.case}: features in {time.perf_counter() - t:.0f} s", flush=True)
    # each chunk setting: ROWS or ROWS+SHARE (the share of picks made over all rows)
    plans = [("exact", 0, 0.0)] + [
        ("chunked", int(c.split("+")[0]), float(c.split("+")[1]) if "+" in c else 0.0)
        for c in args.chunks.split(",")
        if c
    ]
    for method, chunk, refine in plans:
        if any(
            r["method"] == method and (r["chunk"] or 0) == chunk and r.get("refine", 0) == refine
            for r in mine
        ):
            continue
        if method == "exact" and args.no_exact:
            continue
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                method,
                "--chunk",
                str(chunk),
                "--ratio",
                str(args.ratio),
                "--refine",
                str(refine),
                "--cache",
                str(features_npy),
                "--data",
                "-",
                *(["--no-radius"] if args.no_radius else []),
                *(["--estimate"] if args.estimate else []),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        row = {
            "case": args.case,
            "image_size": args.image_size,
            "data": [str(d) for d in args.data],
            **json.loads(out.stdout.splitlines()[-1]),
            "context": bench_context(),
        }
        exact = next((r for r in mine if r["method"] == "exact"), None)
        if exact is not None and method != "exact" and row["radius"] is not None:
            row["radius_vs_exact"] = row["radius"] / exact["radius"]
            row["speedup_vs_exact"] = exact["seconds"] / row["seconds"]
        mine.append(row)
        with args.jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps({k: v for k, v in row.items() if k != "context"}), flush=True)


def estimate_check(args) -> None:
    """The fit's estimate (``estimate_seconds``) against every time this machine measured for
    the case in ``--jsonl`` (same settings, features from the case's cache), one row each
    appended to ``--estimate-jsonl``: how far the estimate said before a coreset is from what
    it took."""
    from edgead.components.coreset import estimate_seconds

    here = bench_context()
    rows = [json.loads(line) for line in args.jsonl.read_text().splitlines() if line]
    mine = [
        r
        for r in rows
        if r["case"] == args.case
        and (r["context"].get("cpu"), r["context"].get("isa")) == (here["cpu"], here["isa"])
    ]
    features_npy = args.cache or Path(f"/tmp/edgead-features-{args.case}.npy")
    x = torch.from_numpy(np.load(features_npy))
    for r in mine:
        chunk = r["chunk"] or 0
        said = estimate_seconds(x, r["picks"], chunk, 128, 0, r.get("refine") or 0.0)
        out = {
            "case": args.case,
            "method": r["method"],
            "chunk": r["chunk"],
            "refine": r.get("refine"),
            "patches": r["patches"],
            "picks": r["picks"],
            "measured_seconds": r["seconds"],
            "estimate": said,
            "estimate_vs_measured": said["seconds"] / r["seconds"] if said else None,
            "context": here,
        }
        with args.estimate_jsonl.open("a") as f:
            f.write(json.dumps(out) + "\n")
        print(json.dumps({k: v for k, v in out.items() if k != "context"}), flush=True)


CASES = {
    "tire448": "tire, 448 px",
    "pooled224": "tire, bottle, juice pooled, 224 px",
    "juice448": "juice, 448 px",
    "pooled448": "tire, bottle, juice pooled, 448 px",
}
SCALE_HEADERS = [
    "CPU",
    "real features",
    "patches",
    "picks",
    "coreset",
    "seconds",
    "radius vs the one greedy",
    "peak MiB",
]
ESTIMATE_HEADERS = ["CPU", "real features", "coreset", "said before, s", "took, s", "said / took"]


def _setting(r: dict) -> str:
    if r["method"] == "exact":
        return "one greedy"
    share = f", {round(100 * r['refine'])}% over all" if r.get("refine") else ""
    return f"chunks of {r['chunk']:,}{share}"


def scale_rows(rows: list[dict]) -> list[list[str]]:
    """The docs' real-scale table: the latest row of each CPU, case and setting; the radius
    against the one greedy's of the same case (the picks do not depend on the CPU)."""
    latest = {(cpu_label(r["context"]), r["case"], _setting(r)): r for r in rows}
    exact = {r["case"]: r["radius"] for r in rows if r["method"] == "exact" and r["radius"]}
    out = []
    for (cpu, case, setting), r in latest.items():
        ref = exact.get(r["case"])
        radius = (
            f"{r['radius'] / ref:.3f}x ({r['radius']:.3f} / {ref:.3f})"
            if r["radius"] and ref and setting != "one greedy"
            else f"{r['radius']:.3f}"
            if r["radius"]
            else "not computed"
        )
        out.append(
            [
                cpu,
                CASES.get(case, case),
                f"{r['patches']:,}",
                f"{r['picks']:,}",
                setting,
                f"{r['seconds']:.1f}",
                radius,
                f"{r['peak_rss_mb']:,}",
            ]
        )
    return out


def estimate_rows(rows: list[dict]) -> list[list[str]]:
    """The docs' estimate table: the latest check of each CPU, case and setting."""
    latest = {(cpu_label(r["context"]), r["case"], _setting(r)): r for r in rows}
    return [
        [
            cpu,
            CASES.get(case, case),
            setting,
            f"{r['estimate']['seconds']:.1f}",
            f"{r['measured_seconds']:.1f}",
            f"{r['estimate_vs_measured']:.2f}",
        ]
        for (cpu, case, setting), r in latest.items()
    ]


def print_tables(args) -> None:
    for headers, make, path in (
        (SCALE_HEADERS, scale_rows, args.jsonl),
        (ESTIMATE_HEADERS, estimate_rows, args.estimate_jsonl),
    ):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for row in make(rows):
            print("| " + " | ".join(row) + " |")
        print()


def timed(fn, *args) -> tuple[torch.Tensor, float]:
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="one or more (pooled)")
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--naive", action="store_true", help="also the naive greedy (~1 min on tire)")
    ap.add_argument(
        "--naive-scaled", action="store_true", help="the naive greedy at --scale too (~20 min)"
    )
    ap.add_argument("--device", default="cpu", help="where the fast greedy runs (cpu, cuda)")
    ap.add_argument("--scale", type=int, default=0, help="also at this many patches")
    ap.add_argument("--cache", type=Path, default=None, help="features .npy cache")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--case", default=None, help="a real-scale case name (see the docstring)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--chunks", default="50000,100000,200000")
    ap.add_argument("--jsonl", type=Path, default=Path("benchmarks/results/coreset_scale.jsonl"))
    ap.add_argument("--no-exact", action="store_true", help="skip the exact reference")
    ap.add_argument(
        "--no-radius",
        action="store_true",
        help="time and memory only (the covering radius costs as much as an exact search of "
        "every patch against the bank: ~20 min at 2,000,000 patches here)",
    )
    ap.add_argument(
        "--estimate",
        action="store_true",
        help="with --case: each run first makes the fit's estimate of its time (rows carry "
        "both; e.g. --chunks 250000+0.2 --no-exact --no-radius --jsonl "
        "benchmarks/results/coreset_estimate.jsonl)",
    )
    ap.add_argument(
        "--estimate-only",
        action="store_true",
        help="with --case: the fit's estimate against each time this machine measured for the "
        "case in --jsonl, appended to --estimate-jsonl",
    )
    ap.add_argument(
        "--estimate-jsonl",
        type=Path,
        default=Path("benchmarks/results/coreset_estimate.jsonl"),
    )
    ap.add_argument(
        "--table",
        action="store_true",
        help="print the docs' tables from --jsonl and --estimate-jsonl",
    )
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--refine", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(
            json.dumps(
                one_run(
                    args.cache,
                    args.one,
                    args.chunk,
                    args.ratio,
                    args.refine,
                    not args.no_radius,
                    args.estimate,
                )
            )
        )
        return
    if args.table:
        print_tables(args)
        return
    if args.case is not None and args.estimate_only:
        estimate_check(args)
        return
    if args.case is not None:
        scale_case(args)
        return

    result: dict = {"context": bench_context(), "data": str(args.data[0])}
    features = features_of(args.data[0], args.cache)
    # compile the kernel first (numba caches it on disk)
    k_center_greedy(features[:2000], 10, device=args.device)
    runs = [("real", features)]
    if args.scale:
        rng = torch.Generator().manual_seed(0)
        reps = -(-args.scale // len(features))
        scale = features.std() * 0.05
        big = features.repeat(reps, 1)[: args.scale]
        runs.append(("scaled", big + scale * torch.randn(big.shape, generator=rng)))
    for name, x in runs:
        n_select = round(args.ratio * len(x))
        row: dict = {"patches": len(x), "dim": x.shape[1], "picks": n_select}
        picks, row["fast_s"] = timed(k_center_greedy, x, n_select, 128, 0, True, args.device)
        row["fast_radius"] = covering_radius(x, picks)
        if args.naive if name == "real" else args.naive_scaled:
            ref, row["naive_s"] = timed(naive_greedy, x, n_select, 0)
            row["naive_radius"] = covering_radius(x, ref)
            row["same_picks"] = float((ref == picks).float().mean())
            row["radius_ratio"] = row["fast_radius"] / row["naive_radius"]
        result[name] = row
        print(name, json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(f"threads: torch {torch.get_num_threads()}, cores {os.cpu_count()}")


if __name__ == "__main__":
    main()
