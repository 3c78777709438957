"""The PatchCore coreset: time and covering radius of the greedy k-center picks.

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
from edgead.runtime.bench import bench_context


def features_of(data: Path, cache: Path | None) -> torch.Tensor:
    if cache is not None and cache.exists():
        return torch.from_numpy(np.load(cache))
    from edgead.components.common import batched_inputs, input_spec
    from edgead.data.datasets import open_dataset
    from edgead.detectors.patchcore.model import PatchCoreConfig, build_embedder

    config = PatchCoreConfig()
    embedder, _ = build_embedder(config, None)
    chunks = []
    with torch.inference_mode():
        paths = open_dataset(data).train_paths()
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


def timed(fn, *args) -> tuple[torch.Tensor, float]:
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--naive", action="store_true", help="also the naive greedy (~1 min on tire)")
    ap.add_argument(
        "--naive-scaled", action="store_true", help="the naive greedy at --scale too (~20 min)"
    )
    ap.add_argument("--device", default="cpu", help="where the fast greedy runs (cpu, cuda)")
    ap.add_argument("--scale", type=int, default=0, help="also at this many patches")
    ap.add_argument("--cache", type=Path, default=None, help="features .npy cache")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    result: dict = {"context": bench_context(), "data": str(args.data)}
    features = features_of(args.data, args.cache)
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
