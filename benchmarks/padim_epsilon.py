"""PaDiM's covariance regularization, Sigma + epsilon * I: the paper's absolute epsilon (0.01)
against epsilons relative to the mean feature variance of the training set.

The moments are accumulated once per category (as `edgead fit padim` does); each epsilon then
gets its own whitening factors and a full evaluation through the detector's own inference:

    python benchmarks/padim_epsilon.py ../shared/data/mvtec3d_tire ../shared/data/loco_juice_bottle
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tabulate import tabulate

from edgead.components.common import batched_inputs, input_spec
from edgead.components.evaluate import evaluate
from edgead.data.datasets import open_dataset
from edgead.detectors.padim import model as padim
from edgead.detectors.registry import get_detector


def moments(config: padim.PadimConfig, paths: list[Path]):
    embedder, _ = padim.build_embedder(config, None)
    spec = input_spec(config)
    total = outer = None
    n = 0
    with torch.no_grad():
        for _, batch, _ in batched_inputs(paths, spec, config.batch_size, "features", True):
            emb = embedder(batch).double()
            b, h, w, d = emb.shape
            emb = emb.reshape(b, h * w, d)
            total = emb.sum(0) if total is None else total + emb.sum(0)
            o = torch.einsum("bpd,bpe->pde", emb, emb)
            outer = o if outer is None else outer + o
            n += b
    mean = total / n
    cov = (outer - n * mean[:, :, None] * mean[:, None, :]) / (n - 1)
    return embedder, spec, mean, cov


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("categories", nargs="+", type=Path, help="MVTec-layout category folders")
    ap.add_argument("--relative", default="0.01,0.1,0.3,1", help="epsilon / mean variance")
    args = ap.parse_args()
    entry = get_detector("padim")
    rows = []
    for root in args.categories:
        dataset = open_dataset(root)
        config = padim.PadimConfig()
        embedder, spec, mean, cov = moments(config, dataset.train_paths())
        positions, d, _ = cov.shape
        scale = float(torch.diagonal(cov, dim1=1, dim2=2).mean())
        variants = [("0.01 (paper)", 0.01)] + [
            (f"{r} x {scale:.2f}", float(r) * scale) for r in args.relative.split(",")
        ]
        eye = torch.eye(d, dtype=torch.float64)
        for name, eps in variants:
            chol = torch.linalg.cholesky(cov + eps * eye)
            whitening = torch.linalg.solve_triangular(
                chol, eye.expand(positions, d, d), upper=False
            )
            model = padim.PadimModel(embedder, mean.float(), whitening.float(), config).eval()
            m = evaluate(lambda x, m=model: entry.infer(m, x), dataset, spec, quiet=True).metrics
            pct = [None if v is None else round(100 * v, 2) for v in (m.image_rocauc,
                   m.pixel_rocauc, m.aupro)]  # fmt: skip
            rows.append([root.name, name, round(eps, 4), *pct])
            print(rows[-1], flush=True)
    print(
        tabulate(
            rows,
            ["category", "epsilon", "value", "image ROCAUC", "pixel ROCAUC", "AUPRO"],
            tablefmt="github",
        )
    )


if __name__ == "__main__":
    main()
