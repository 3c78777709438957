"""What the default thresholds cost: for each detector and real category, fitted with defaults,
the threshold set on held-out good images at the target false-reject rate (its upper
confidence bound), and on the labelled test set the false rejects (good flagged) and detections
at it, beside the threshold of the point estimate and the F1-optimal threshold on the test set
(diagnostics).

With ``--holdout-by random,newest --train-only`` the held-out images are taken from train/good
even where the category has validation/good, by each strategy in turn: which held-out choice
predicts the test set's good images (on loco_juice_bottle those are the 60 images captured
after train/good, in name order) is measured, not assumed.

    python benchmarks/thresholds.py --data ../shared/data [--detectors patchcore,padim,spade]
        [--target-frr 0.01] [--holdout-by auto] [--train-only] [--json thresholds.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--categories", default="mvtec3d_tire,mvtec_bottle,loco_juice_bottle")
    ap.add_argument("--detectors", default="patchcore,padim,spade")
    ap.add_argument("--target-frr", type=float, default=0.01)
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--holdout-by", default="auto", help="comma-separated strategies to compare")
    ap.add_argument("--train-only", action="store_true", help="ignore validation/good")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from tabulate import tabulate

    import edgead  # noqa: F401  (before torch: OpenMP's passive waiting)
    from edgead.detectors.registry import get_detector
    from edgead.metrics.calibration import verdicts_at
    from edgead.workflows import fit_detector

    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')} {platform.node()} {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    rows, out = [], []
    for name in args.detectors.split(","):
        for category in args.categories.split(","):
            for by in args.holdout_by.split(","):
                detector = get_detector(name)
                saved = fit_detector(
                    name,
                    args.data / category,
                    detector.config_cls(),
                    quiet=True,
                    target_frr=args.target_frr,
                    holdout_by=by,
                    confidence=args.confidence,
                    use_validation=not args.train_only,
                )
                ev = saved.evaluation
                norm, m = ev.normalization, ev.metrics
                cal = norm.calibration
                image = cal.image
                test = cal.test
                labels = [r["label"] for r in ev.records]
                scores = [r["score"] for r in ev.records]
                point = verdicts_at(image.point_value, labels, scores)
                f1 = cal.f1_optimal
                rows.append(
                    [
                        name,
                        category,
                        by,
                        cal.source,
                        f"{100 * image.frr_bound:.2f}% ({100 * image.estimated_frr:.2f}%)",
                        f"{test.false_rejects}/{test.n_good}",
                        f"{100 * test.detection_rate:.1f}%",
                        f"{point.false_rejects}/{point.n_good}, {100 * point.detection_rate:.1f}%",
                        f"{f1.false_rejects}/{f1.n_good}, {100 * f1.detection_rate:.1f}%",
                        f"{100 * m.image_rocauc:.1f}",
                        "-" if m.pixel_rocauc is None else f"{100 * m.pixel_rocauc:.1f}",
                    ]
                )
                out.append(
                    {
                        "detector": name,
                        "category": category,
                        "holdout_by": by,
                        "train_only": args.train_only,
                        "calibration": cal.to_dict(),
                        "point_estimate_test": point.to_dict(),
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
                "holdout by",
                "threshold set on",
                "FRR bound (point estimate)",
                "good flagged (test)",
                "detected (test)",
                "point estimate: flagged, detected",
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
