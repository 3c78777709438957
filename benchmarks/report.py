"""Run every detector on every category and write the report an inspection engineer reads.

    python benchmarks/report.py --data ../shared/data --out report/

For each detector and category: fit and export with the default settings (bundles are cached
in OUT/bundles: delete one to refit it), accuracy parity through the runtime, per-stage
latency at batch 1 and throughput per batch size. Writes OUT/report.md (tables),
OUT/report.html (tables and plots) and OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
from tabulate import tabulate

from edgead.bundle import open_bundle
from edgead.data.datasets import MVTecCategory
from edgead.data.images import read_image
from edgead.report import histogram_png, markdown_to_html, overlays_png, roc_png
from edgead.runtime import Pipeline
from edgead.runtime.bench import run_bench
from edgead.runtime.memory import human
from edgead.runtime.parity import run_parity
from edgead.runtime.postprocess import overlay

DETECTORS = ("patchcore", "padim", "spade")
STAGES = ("decode", "preprocess", "graph", "score", "postprocess", "total")


def fit_and_export(detector: str, data: Path, bundle: Path, quick: bool) -> None:
    from edgead.detectors.registry import get_detector
    from edgead.workflows import export_model, fit_detector

    config = get_detector(detector).config_cls()
    if quick and detector == "patchcore":
        config.coreset_ratio = 0.01
    saved = fit_detector(detector, data, config, quiet=True)
    export_model(saved, bundle, overwrite=True)


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def run(
    data_root: Path,
    out: Path,
    detectors: list[str],
    categories: list[str],
    batches: tuple[int, ...],
    quick: bool,
    iterations: int,
) -> dict:
    results = []
    images: dict[str, bytes] = {}
    for category in categories:
        data = data_root / category
        curves = []
        for detector in detectors:
            bundle = out / "bundles" / f"{detector}-{category}"
            if not (bundle / "manifest.json").is_file():
                logging.info("fitting %s on %s", detector, category)
                fit_and_export(detector, data, bundle, quick)
            manifest = open_bundle(bundle).manifest
            parity = run_parity(bundle, data, quiet=True)
            bench = run_bench(bundle, data, batches, iterations=iterations)
            rows = {r.check.split(" (")[0]: r for r in parity.rows}
            labels = [s["label"] for s in parity.samples]
            scores = [s["score"] for s in parity.samples]
            curves.append((detector, labels, scores))
            name = f"{detector} on {category}"
            images[f"{name}: score histogram"] = histogram_png(
                labels, scores, manifest.normalization.image_threshold, name
            )
            images[f"{name}: best and worst cases"] = overlay_cases(bundle, parity.samples, name)
            results.append(
                {
                    "detector": detector,
                    "category": category,
                    "parity": {
                        k: {"original": r.original, "bundle": r.bundle, "diff": r.diff, "ok": r.ok}
                        for k, r in rows.items()
                    },
                    "passed": parity.passed,
                    "latency_ms": bench.latency_ms,
                    "throughput": bench.throughput,
                    "torch_ms": manifest.metrics.torch_ms_per_image,
                    "fit": manifest.fit,
                    "bundle_bytes": bench.bundle_bytes,
                    "context": bench.title(),
                }
            )
        images[f"ROC curves, {category} (bundle scores; ROCAUC in the legend)"] = roc_png(
            curves, category
        )
    text = markdown(results, batches)
    (out / "report.md").write_text(text)
    (out / "report.html").write_text(markdown_to_html(text, "edgead report", images))
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return {"results": results, "markdown": text}


def overlay_cases(bundle: Path, samples: list[dict], name: str) -> bytes:
    """The highest-scored defect, the lowest-scored defect and the highest-scored good image."""
    defects = sorted((s for s in samples if s["label"] == 1), key=lambda s: s["score"])
    goods = sorted((s for s in samples if s["label"] == 0), key=lambda s: s["score"])
    picks = []
    if defects:
        picks += [("best: top defect", defects[-1]), ("worst: lowest defect", defects[0])]
    if goods:
        picks.append(("worst: highest good", goods[-1]))
    cases = []
    with Pipeline(bundle) as pipe:
        for caption, sample in picks:
            image = read_image(sample["path"])
            pred = pipe.predict([image])[0]
            cases.append(
                (
                    f"{caption}\n{sample['relpath']}\nscore {pred.image_score:.3g}",
                    overlay(image, pred.anomaly_map, pipe.bundle.manifest.normalization),
                )
            )
    return overlays_png(cases, name)


def markdown(results: list[dict], batches: tuple[int, ...]) -> str:
    parts = [
        "## Accuracy parity: original PyTorch model vs bundle (onnxruntime, FP32)\n",
        "ROCAUC and AUPRO in percent; Δ = |bundle - original| in points.\n",
    ]
    for detector in dict.fromkeys(r["detector"] for r in results):
        rows, sums = [], {}
        for r in (r for r in results if r["detector"] == detector):
            row = [r["category"]]
            for metric in ("image ROCAUC", "pixel ROCAUC", "AUPRO"):
                p = r["parity"].get(metric, {})
                row += [pct(p.get("original")), pct(p.get("bundle")), pct(p.get("diff"))]
                for key in ("original", "bundle", "diff"):
                    if p.get(key) is not None:
                        sums.setdefault((metric, key), []).append(p[key])
            row.append("ok" if r["passed"] else "FAIL")
            rows.append(row)
        avg = ["**average**"]
        for metric in ("image ROCAUC", "pixel ROCAUC", "AUPRO"):
            avg += [
                pct(np.mean(sums[(metric, k)])) if (metric, k) in sums else "-"
                for k in ("original", "bundle", "diff")
            ]
        rows.append([*avg, ""])
        headers = [
            "category",
            "image orig",
            "image bundle",
            "Δ",
            "pixel orig",
            "pixel bundle",
            "Δ",
            "AUPRO orig",
            "AUPRO bundle",
            "Δ",
            "parity",
        ]
        parts.append(f"\n### {detector}\n\n" + tabulate(rows, headers=headers, tablefmt="github"))
    parts.append("\n\n## Per-stage latency, batch 1 (p50 ms), and throughput\n")
    lat_rows = []
    for r in results:
        lat = r["latency_ms"]
        lat_rows.append(
            [
                r["detector"],
                r["category"],
                *[f"{lat[s]['p50']:.1f}" if s in lat else "-" for s in STAGES],
                f"{r['torch_ms']:.1f}" if r["torch_ms"] else "-",
                *[f"{r['throughput'][b]:.1f}" for b in batches],
            ]
        )
    headers = ["detector", "category", *STAGES, "PyTorch ms", *[f"img/s @{b}" for b in batches]]
    parts.append(tabulate(lat_rows, headers=headers, tablefmt="github"))
    parts.append(
        "\n\nPyTorch ms: the original model, batch 1 median, preprocessed input to "
        "anomaly map (compare with graph + score + postprocess).\n"
    )
    parts.append("\n## Fit and size\n")
    fit_rows = [
        [
            r["detector"],
            r["category"],
            r["fit"].get("n_train_images"),
            r["fit"].get("fit_seconds"),
            r["fit"].get("model_size"),
            human(r["bundle_bytes"]),
        ]
        for r in results
    ]
    parts.append(
        tabulate(
            fit_rows,
            headers=["detector", "category", "train images", "fit s", "model", "bundle"],
            tablefmt="github",
        )
    )
    contexts = sorted({r["context"].split(" | ", 1)[1] for r in results})
    parts.append("\n\nMeasured on: " + "; ".join(contexts) + "\n")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of MVTec categories")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument("--categories", default=None, help="default: every category in --data")
    parser.add_argument("--batch", default="1,16")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="PatchCore-1%% coreset (for CI)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    categories = (
        args.categories.split(",")
        if args.categories
        else sorted(p.name for p in args.data.iterdir() if MVTecCategory.is_mvtec(p))
    )
    args.out.mkdir(parents=True, exist_ok=True)
    result = run(
        args.data,
        args.out,
        args.detectors.split(","),
        categories,
        tuple(int(b) for b in args.batch.split(",")),
        args.quick,
        args.iterations,
    )
    print(result["markdown"])


if __name__ == "__main__":
    main()
