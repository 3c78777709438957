"""INT8 variants of one bundle's graph: which layers kept in FP32 buy back accuracy, and at
what speed, on onnxruntime and OpenVINO.

    python benchmarks/int8_variants.py --bundle /tmp/precision/patchcore-mvtec3d_tire \
        --data ../shared/data/mvtec3d_tire [--json out.json]

For each variant the bundle's folded FP32 graph is quantized with NNCF (full bias correction,
the same 64 good training images and seed as ``edgead quantize``): the whole graph; the
average pooling kept in FP32; depthwise convolutions kept in FP32; the tail after the last
weighted layer kept in FP32 (``fp32_tail``: what ``edgead quantize`` does); depthwise and
tail. Each variant runs on onnxruntime and on OpenVINO (inference precision pinned to f32)
and is compared with onnxruntime FP32 on every seventh test image: the mean relative error
of the graph's output, and the p50 of 60 batch-1 runs of one image, all in one process (a
ratio inside one run is the figure to trust; absolute milliseconds move with the machine's
load). The parity gate of ``edgead quantize`` decides what ships; this script says where an
INT8 graph loses its accuracy and what keeping layers in FP32 costs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import tempfile

    import nncf
    import onnx
    import onnxruntime as ort
    import openvino as ov

    from edgead.bundle import roles
    from edgead.bundle.io import open_bundle
    from edgead.data.datasets import open_dataset
    from edgead.data.images import read_image
    from edgead.export.quantize import (
        Int8Settings,
        calibration_paths,
        depthwise_convs,
        fold_shapes,
        fp32_tail,
    )
    from edgead.runtime.bench import bench_context
    from edgead.runtime.preprocess import preprocess

    bundle = open_bundle(args.bundle)
    spec, name = bundle.manifest.input, bundle.manifest.graph.input_name
    settings = Int8Settings()
    paths = calibration_paths(bundle, args.data, settings.images, settings.seed)
    calibration = [preprocess(read_image(p), spec)[None] for p in paths]
    test = [s.path for s in open_dataset(args.data).test_samples()][::7]
    x = np.concatenate([preprocess(read_image(p), spec)[None] for p in test])
    folded = fold_shapes(bundle.path(roles.ONNX))
    depthwise = depthwise_convs(folded)
    tail = fp32_tail(folded)  # what `edgead quantize` keeps in FP32
    pooling = [n.name for n in folded.graph.node if n.op_type == "AveragePool"]
    variants = {
        "fp32": None,
        "int8": [],
        "int8, pooling fp32": pooling,
        "int8, depthwise fp32": depthwise,
        "int8, tail fp32 (edgead quantize)": tail,
        "int8, depthwise and tail fp32": depthwise + tail,
    }
    dataset = nncf.Dataset(calibration, lambda a: {name: a})
    core = ov.Core()

    def runners(model, folder: Path) -> dict:
        path = folder / "graph.onnx"
        onnx.save(model, str(path))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        compiled = core.compile_model(
            core.read_model(str(path)),
            "CPU",
            {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"},
        )
        return {
            "onnxruntime": lambda a: session.run(None, {name: a})[0],
            "openvino": lambda a: compiled({0: a})[0],
        }

    reference = None
    rows = []
    tmp = tempfile.mkdtemp(prefix="edgead-int8-")
    for label, keep in variants.items():
        if keep is None:
            model = folded
        else:
            model = nncf.quantize(
                folded,
                dataset,
                subset_size=len(calibration),
                fast_bias_correction=False,
                ignored_scope=nncf.IgnoredScope(names=keep, validate=False) if keep else None,
            )
        for backend, run in runners(model, Path(tmp)).items():
            out = np.concatenate([run(x[i : i + 1]) for i in range(len(x))])
            if reference is None:
                reference = out  # onnxruntime FP32, the first run
            times = []
            for _ in range(3):
                run(x[:1])
            for _ in range(args.runs):
                t = time.perf_counter()
                run(x[:1])
                times.append(1000 * (time.perf_counter() - t))
            err = float(np.abs(out - reference).mean() / np.abs(reference).mean())
            row = {
                "variant": label,
                "backend": backend,
                "layers_kept_fp32": len(keep or []),
                "p50_ms": round(float(np.median(times)), 3),
                "mean_relative_error": round(err, 4),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    base = next(r for r in rows if r["variant"] == "fp32" and r["backend"] == "onnxruntime")
    print("\n| variant | backend | p50 ms | vs onnxruntime fp32 | mean relative error |")
    print("|---|---|---|---|---|")
    for r in rows:
        ratio = r["p50_ms"] / base["p50_ms"]
        print(
            f"| {r['variant']} | {r['backend']} | {r['p50_ms']:.2f} | {ratio:.2f}x | "
            f"{100 * r['mean_relative_error']:.1f}% |"
        )
    if args.json:
        context = bench_context()
        args.json.write_text(json.dumps({"rows": rows, "context": context}, indent=2) + "\n")


if __name__ == "__main__":
    main()
