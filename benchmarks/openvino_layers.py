"""Where a bundle's graph spends its time on OpenVINO, FP32 against INT8, by kind of layer.

    python benchmarks/openvino_layers.py --bundle /tmp/precision/patchcore-mvtec3d_tire \
        [--runs 200] [--json benchmarks/results/openvino_layers.json]

The bundle needs an INT8 graph (``edgead quantize``). Both graphs are compiled as the
openvino backend compiles them (latency hint, inference precision f32, the configured
threads) and run on one random batch-1 input with OpenVINO's per-layer profiling on, each
profiled call right after an untimed one of its own. Each layer's time
is summed by kind: 1x1 convolutions, depthwise convolutions, other convolutions, layout
reorders, quantizers (FakeQuantize) and the rest (the FP32 tail's pooling, resizing,
concatenation and transpose, element-wise layers); "outside the layers" is the call's wall
time less their sum (the request's own overhead, thread wake-up, the copy of the output).
The wall times come from a second loop with profiling off, through the openvino backend and
next to onnxruntime FP32 (the precision table's reference), in random order per iteration,
each timed call right after an untimed one of its own (as ``edgead bench`` times side by
side); a last loop times the INT8 request with its input copied into a new OpenVINO tensor
on every call (OpenVINO's default) against the backend's in-place read, in random order. It
says what INT8 can still gain on a graph: only the time of the layers it speeds up.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

KINDS = (
    "1x1 convolutions",
    "depthwise convolutions",
    "other convolutions",
    "layout reorders",
    "quantizers",
    "the rest",
)


def kind(node_type: str, exec_type: str) -> str:
    if node_type == "Convolution":
        return "1x1 convolutions" if "1x1" in exec_type else "other convolutions"
    if node_type == "GroupConvolution":
        return "depthwise convolutions"
    if node_type == "Reorder":
        return "layout reorders"
    if node_type == "FakeQuantize":
        return "quantizers"
    return "the rest"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import onnxruntime as ort
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    from edgead.bundle import roles
    from edgead.bundle.io import open_bundle
    from edgead.runtime.backends.base import create_backend
    from edgead.runtime.bench import bench_context
    from edgead.threads import configured

    bundle = open_bundle(args.bundle)
    name = bundle.manifest.graph.input_name
    spec = bundle.manifest.input
    x = np.random.default_rng(0).standard_normal((1, 3, spec.height, spec.width), np.float32)
    core = ov.Core()
    graphs = {"fp32": bundle.path(roles.ONNX), "int8": bundle.path(roles.ONNX_INT8)}
    profiled = {}
    for precision, path in graphs.items():
        config = {
            hints.performance_mode: hints.PerformanceMode.LATENCY,
            hints.inference_precision: ov.Type.f32,
            props.inference_num_threads: configured(),
            props.enable_profiling: True,
        }
        profiled[precision] = core.compile_model(core.read_model(str(path)), "CPU", config)
    requests = {p: c.create_infer_request() for p, c in profiled.items()}
    layers = {p: defaultdict(float) for p in graphs}
    for i in range(args.runs + 20):
        for precision, request in requests.items():
            request.infer({0: x}, share_inputs=True)  # untimed: its own caches and threads
            request.infer({0: x}, share_inputs=True)
            if i >= 20:
                for info in request.profiling_info:
                    ms = info.real_time.total_seconds() * 1000 / args.runs
                    layers[precision][kind(info.node_type, info.exec_type)] += ms

    # wall times without profiling, as the runtime runs them: the backends themselves
    options = ort.SessionOptions()
    options.intra_op_num_threads = configured()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(graphs["fp32"]), options, providers=["CPUExecutionProvider"])
    backends = {p: create_backend("openvino", path).activate() for p, path in graphs.items()}
    calls = {"onnxruntime fp32": lambda: session.run(None, {name: x})}
    for precision, backend in backends.items():
        calls[f"openvino {precision}"] = lambda b=backend: b.infer({name: x})
    times: dict[str, list[float]] = {k: [] for k in calls}
    rng = np.random.default_rng(0)
    for i in range(args.runs + 20):
        for label in rng.permutation(list(calls)):
            calls[label]()  # untimed first, as `edgead bench` does side by side
            t = time.perf_counter()
            calls[label]()
            if i >= 20:
                times[label].append(1000 * (time.perf_counter() - t))
    p50 = {k: float(np.median(v)) for k, v in times.items()}

    # the INT8 request with its input copied into a new OpenVINO tensor on every call
    # (OpenVINO's default) against the backend's in-place read: picked at random per
    # iteration, each timed call right after an untimed one of its own kind (a fixed order
    # favours whichever call follows its twin: warm caches, awake threads)
    request = backends["int8"].request
    ab = {
        "openvino int8, input copied": lambda: request.infer({0: x}),
        "openvino int8, input read in place": lambda: request.infer({0: x}, share_inputs=True),
    }
    ab_times: dict[str, list[float]] = {k: [] for k in ab}
    for i in range(2 * args.runs + 20):
        label = list(ab)[rng.integers(len(ab))]
        ab[label]()
        t = time.perf_counter()
        ab[label]()
        if i >= 20:
            ab_times[label].append(1000 * (time.perf_counter() - t))
    p50 |= {k: float(np.median(v)) for k, v in ab_times.items()}

    rows = []
    for k in KINDS:
        rows.append({"layers": k, **{p: round(layers[p][k], 3) for p in graphs}})
    rows.append({"layers": "all layers", **{p: round(sum(layers[p].values()), 3) for p in graphs}})
    rows.append(
        {
            "layers": "outside the layers",
            **{p: round(p50[f"openvino {p}"] - sum(layers[p].values()), 3) for p in graphs},
        }
    )
    rows.append({"layers": "call p50", **{p: round(p50[f"openvino {p}"], 3) for p in graphs}})
    base = p50["onnxruntime fp32"]
    print(f"onnxruntime fp32 p50 {base:.2f} ms (the precision table's reference)")
    print("\n| layers | openvino fp32 ms | openvino int8 ms | int8 / fp32 |")
    print("|---|---|---|---|")
    for r in rows:
        ratio = f"{r['int8'] / r['fp32']:.2f}" if r["fp32"] > 0 else "-"
        print(f"| {r['layers']} | {r['fp32']:.3f} | {r['int8']:.3f} | {ratio} |")
    print(
        f"\nopenvino int8 against onnxruntime fp32: {p50['openvino int8'] / base:.2f}x; "
        f"with no time outside the layers: {sum(layers['int8'].values()) / base:.2f}x"
    )
    for label in ab:
        print(f"{label}: p50 {p50[label]:.3f} ms (random A/B)")
    if args.json:
        out = {"rows": rows, "p50_ms": p50, "runs": args.runs, "context": bench_context()}
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
