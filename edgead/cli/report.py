"""Tables the verbs print: the fit report, and the threshold with what it costs."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from edgead.bundle.records import CalibrationRecord


def frr_rows(cal: CalibrationRecord) -> list[list[str]]:
    """The promised false-reject rate: target, bound, point estimate and what they rest on."""
    image = cal.image
    lo, hi = image.frr_interval
    target = f"{100 * cal.target_frr:.1f}%"
    if image.frr_bound is None or image.confidence is None:  # before thresholds were bounds
        return [
            [
                "false-reject rate (target)",
                f"{100 * image.estimated_frr:.1f}% ({target}), 90% interval "
                f"{100 * lo:.1f}-{100 * hi:.1f}%, {image.method} estimate",
            ]
        ]
    return [
        [
            "false-reject rate",
            f"target {target}: at most {100 * image.frr_bound:.2f}% with "
            f"{100 * image.confidence:.0f}% confidence (point estimate "
            f"{100 * image.estimated_frr:.2f}%, 90% interval {100 * lo:.2f}-{100 * hi:.2f}%)",
        ],
        ["bound rests on", f"{image.basis()}; {image.method} estimate"],
        [
            "threshold at the point estimate",
            f"{image.point_value:.4g} (not used: it keeps the target only half the time)",
        ],
    ]


def threshold_rows(norm: Any) -> list[list[str]]:
    """The threshold, where it came from, and what it costs on labelled test images."""
    cal = norm.calibration
    if norm.image_threshold is None:
        return [["image threshold", "none: " + norm.source]]
    rows = [["image threshold", f"{norm.image_threshold:.4g}"]]
    if cal is not None:
        rows += [["threshold set on", cal.source], *frr_rows(cal)]
        if cal.test is not None:
            rows.append(["at it, on the test set", cal.test.describe()])
        f1 = cal.f1_optimal
        if f1 is not None:
            rows.append(
                [
                    "F1-optimal on the test set (diagnostic)",
                    f"{f1.threshold:.4g}: " + f1.describe(),
                ]
            )
    else:
        rows.append(["threshold set on", norm.source])
    return rows


def metrics_table(saved: Any) -> str:
    r = saved.fit_report
    rows = [
        ["training images", r["n_train_images"]],
        ["model", r.get("model_size", "-")],
        ["fit seconds", r["fit_seconds"]],
    ]
    # what a detector wants said about its fit (e.g. a regularization against its features)
    rows += [[label, value] for label, value in r.get("details", {}).items()]
    if saved.evaluation is not None:
        m = saved.evaluation.metrics
        pct = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
        if m.n_images:
            rows += [
                ["test images (anomalous)", f"{m.n_images} ({m.n_anomalous})"],
                ["image ROCAUC %", pct(m.image_rocauc)],
                ["pixel ROCAUC %", pct(m.pixel_rocauc)],
                ["AUPRO %", pct(m.aupro)],
            ]
        if m.torch_ms_per_image is not None:
            rows.append(["PyTorch ms per image", f"{m.torch_ms_per_image:.1f} ({m.torch_device})"])
        rows += threshold_rows(saved.evaluation.normalization)
    if r.get("skipped"):
        rows.append(["skipped training files", len(r["skipped"])])
    return tabulate(rows, tablefmt="github", headers=["", saved.detector])
