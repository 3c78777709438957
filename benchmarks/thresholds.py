"""What the default thresholds cost: for each detector and real category, fitted with defaults,
the threshold set on held-out good images at the target false-reject rate, and on the labelled
test set the false rejects (good flagged) and detections at it, beside the F1-optimal
threshold on the test set (the old default, a diagnostic now).

    python benchmarks/thresholds.py --data ../shared/data [--detectors patchcore,padim,spade]
        [--target-frr 0.01] [--json thresholds.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--categories", default="mvtec3d_tire,mvtec_bottle,loco_juice_bottle")
    ap.add_argument("--detectors", default="patchcore,padim,spade")
    ap.add_argument("--target-frr", type=float, default=0.01)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from tabulate import tabulate

    import edgead  # noqa: F401  (before torch: OpenMP's passive waiting)
    from edgead.detectors.registry import get_detector
    from edgead.metrics.calibration import Verdicts
    from edgead.workflows import fit_detector

    keys = ("threshold", "n_good", "n_anomalous", "false_rejects", "detections")
    rows, out = [], []
    for name in args.detectors.split(","):
        for category in args.categories.split(","):
            detector = get_detector(name)
            saved = fit_detector(
                name,
                args.data / category,
                detector.config_cls(),
                quiet=True,
                target_frr=args.target_frr,
            )
            norm = saved.evaluation.normalization
            m = saved.evaluation.metrics
            cal = norm.calibration
            test = Verdicts(*[cal["test"][k] for k in keys])
            f1 = Verdicts(*[cal["f1_optimal"][k] for k in keys])
            lo, hi = cal["image"]["frr_interval"]
            rows.append(
                [
                    name,
                    category,
                    cal["source"],
                    f"{cal['image']['method']}",
                    f"{100 * cal['image']['estimated_frr']:.1f}% ({100 * lo:.1f}-{100 * hi:.1f})",
                    f"{test.false_rejects}/{test.n_good}",
                    f"{100 * test.detection_rate:.1f}%",
                    f"{f1.false_rejects}/{f1.n_good}, {100 * f1.detection_rate:.1f}%",
                    f"{100 * m.image_rocauc:.1f}",
                    "-" if m.pixel_rocauc is None else f"{100 * m.pixel_rocauc:.1f}",
                ]
            )
            out.append(
                {
                    "detector": name,
                    "category": category,
                    "calibration": cal,
                    "image_rocauc": m.image_rocauc,
                    "pixel_rocauc": m.pixel_rocauc,
                }
            )
            print(rows[-1], flush=True)
    print(
        tabulate(
            rows,
            tablefmt="github",
            headers=[
                "detector",
                "category",
                "threshold set on",
                "estimate",
                "estimated FRR (90% interval)",
                "good flagged (test)",
                "detected (test)",
                "F1-optimal: flagged, detected",
                "image ROCAUC",
                "pixel ROCAUC",
            ],
        )
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
