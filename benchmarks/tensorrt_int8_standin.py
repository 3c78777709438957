"""What the signed form of an INT8 graph (the form a TensorRT INT8 engine is built from) does
to the parity gate, measured on the CPU: the signed graph run by onnxruntime stands in for
the engine, next to the bundle's own (unsigned) INT8 graph.

    python benchmarks/tensorrt_int8_standin.py --bundle /tmp/precision/patchcore-mvtec3d_tire \
        --data ../shared/data/mvtec3d_tire [--jsonl benchmarks/results/tensorrt_int8_standin.jsonl]
    python benchmarks/tensorrt_int8_standin.py --table \
        --jsonl benchmarks/results/tensorrt_int8_standin.jsonl

The bundle needs an INT8 graph (``edgead quantize``). A copy of it gets the signed graph in
place of the INT8 one (``edgead.export.engine.signed_int8``, registered through the bundle
writer), and both run the INT8 gate on DATA with onnxruntime. TensorRT's own kernels differ
from onnxruntime's in accumulation order and fusion, not in the quantization grid: the stand-in
shows what the lost lowest bit of the unsigned activations costs, the gate on the GPU decides.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path


def gate(bundle: Path, data: Path) -> dict:
    from edgead.export.quantize import gate_record
    from edgead.runtime.parity import run_parity

    report = run_parity(bundle, data, quiet=True, backend="onnxruntime", precision="int8")
    print(report.table())
    return gate_record(report)


HEADERS = ["CPU", "bundle", "INT8 graph", "gate on onnxruntime"]


def table_rows(rows: list[dict]) -> list[list[str]]:
    """The docs' table: the latest row per CPU, bundle and form."""
    from edgead.runtime.bench import cpu_label

    latest = {(cpu_label(r["context"]), r["bundle"], r["form"]): r for r in rows}
    return [
        [*key, "passes" if r["passed"] else "fails: " + "; ".join(r["failed"])]
        for key, r in latest.items()
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--jsonl", type=Path, default=None)
    ap.add_argument("--table", action="store_true", help="print the docs' table from --jsonl")
    args = ap.parse_args()
    if args.table:
        rows = [json.loads(line) for line in args.jsonl.read_text().splitlines() if line]
        print("| " + " | ".join(HEADERS) + " |")
        print("|" + "---|" * len(HEADERS))
        for row in table_rows(rows):
            print("| " + " | ".join(row) + " |")
        return
    if args.bundle is None or args.data is None:
        ap.error("--bundle and --data (or --table)")

    import onnx

    from edgead.bundle import roles
    from edgead.bundle.io import amend_bundle, open_bundle
    from edgead.export.engine import signed_int8
    from edgead.runtime.bench import bench_context

    bundle = open_bundle(args.bundle)
    artifact = bundle.manifest.artifact(roles.ONNX_INT8)
    rows = {"unsigned (edgead quantize)": gate(bundle.root, args.data)}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(shutil.copytree(bundle.root, Path(tmp) / bundle.root.name))
        with amend_bundle(copy) as (writer, manifest):
            target = writer.path(artifact.path)
            onnx.save(signed_int8(onnx.load(str(target))), str(target))
            meta = {k: v for k, v in artifact.meta.items() if k != "gate"}
            writer.add(artifact.path, role=roles.ONNX_INT8, fmt="onnx", precision="int8", **meta)
            writer.write_manifest(manifest)
        rows["signed (TensorRT's form)"] = gate(copy, args.data)
    context = bench_context()
    for form, record in rows.items():
        line = {
            "bundle": bundle.root.name,
            "data": args.data.name,
            "form": form,
            "passed": record["passed"],
            "failed": record["failed"],
            "rows": record["rows"],
            "context": context,
        }
        print(form, "passes" if record["passed"] else "fails: " + "; ".join(record["failed"]))
        if args.jsonl:
            with args.jsonl.open("a") as f:
                f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
