"""Image and pixel ROCAUC of PatchCore with the one greedy coreset against chunked coresets.

    python benchmarks/coreset_rocauc.py --data ../shared/data --settings 0,50000 \
        --jsonl benchmarks/results/coreset_chunks_rocauc.jsonl

At real scale (``--image-size 448 --categories mvtec3d_tire --settings 0,250000+0.2``: 658,560
patches, three chunks and the default's fifth of the picks over all).

Each setting is ``--coreset-chunk`` (0: the one greedy), optionally ``+SHARE`` for the share
of picks made over every patch after the chunks; every category under ``--data`` is fitted
with PatchCore's defaults otherwise and evaluated on its test set. Rows are appended as JSON
lines (category, setting, ROCAUC, AUPRO, coreset seconds, patches).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgead.detectors.registry import get_detector
from edgead.workflows import fit_detector


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a folder of MVTec categories")
    ap.add_argument("--categories", default="mvtec3d_tire,mvtec_bottle,loco_juice_bottle")
    ap.add_argument("--settings", default="0,50000")
    ap.add_argument("--jsonl", type=Path, required=True)
    ap.add_argument("--image-size", type=int, default=224)
    args = ap.parse_args()
    for category in args.categories.split(","):
        for setting in args.settings.split(","):
            chunk, _, refine = setting.partition("+")
            config = get_detector("patchcore").config_cls(
                coreset_chunk=int(chunk),
                coreset_refine=float(refine or 0),
                image_size=(args.image_size, args.image_size),
            )
            t = time.perf_counter()
            saved = fit_detector("patchcore", args.data / category, config, quiet=True)
            m = saved.evaluation.metrics
            row = {
                "category": category,
                "setting": setting,
                "image_size": args.image_size,
                "image_rocauc": m.image_rocauc,
                "pixel_rocauc": m.pixel_rocauc,
                "aupro": m.aupro,
                "coreset_s": saved.fit_report["coreset_seconds"],
                "patches": saved.fit_report["n_patches"],
                "fit_s": round(time.perf_counter() - t, 1),
            }
            print(json.dumps(row), flush=True)
            with args.jsonl.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
