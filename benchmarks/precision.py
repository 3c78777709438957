"""Precision table: accuracy and latency of every backend x precision, per detector and category.

    python benchmarks/precision.py --data ../shared/data --out /tmp/precision \
        --jsonl benchmarks/results/precision.jsonl

For each detector and category: export a bundle with the detector's defaults (``edgead
export DETECTOR --data``), add the INT8 graph through its gate (``edgead quantize``, gated on
onnxruntime and OpenVINO; a failed gate is recorded with its message and the graph left
out), run parity for every backend x precision the bundle holds (ROCAUC deltas against the
PyTorch original, Spearman of the image scores for INT8), and time all of them side by side
in one interleaved bench run (``edgead bench --backend onnxruntime,openvino --precision
fp32,fp16,int8``). EfficientAD and PUAD with a short training: ``--detectors efficientad,puad
--categories loco_juice_bottle --export-args "--image-size 128 --steps 300 --teacher-steps
50"``. One JSON line per detector, category and configuration; the machine's
instruction sets and load travel with every row. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from edgead.errors import EdgeadError
from edgead.export.quantize import Int8Settings, add_int8_graph
from edgead.runtime.bench import cpu_label
from edgead.runtime.compare import run_compare
from edgead.runtime.parity import run_parity

BACKENDS = ["onnxruntime", "openvino"]
PRECISIONS = ["fp32", "fp16", "int8"]


def export(detector: str, data: Path, out: Path, extra: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "edgead",
            "--quiet",
            "export",
            detector,
            "--data",
            str(data),
            "--out",
            str(out),
            "--overwrite",
            *extra,
        ],
        check=True,
    )
    return time.perf_counter() - t


def parity_rows(bundle: Path, data: Path, backend: str, precision: str) -> dict:
    try:
        report = run_parity(bundle, data, backend=backend, precision=precision, quiet=True)
    except EdgeadError as exc:
        return {"parity": None, "parity_error": str(exc)}
    rows = {r.check.split(" (")[0]: r for r in report.rows}

    def delta(name: str) -> float | None:
        r = rows.get(name)
        return None if r is None or r.bundle is None else round(r.bundle - r.original, 3)

    spearman = rows.get("image score ranks")
    return {
        "parity": report.passed,
        "image_rocauc_delta": delta("image ROCAUC"),
        "pixel_rocauc_delta": delta("pixel ROCAUC"),
        "image_rocauc": rows["image ROCAUC"].bundle if "image ROCAUC" in rows else None,
        "spearman": round(spearman.bundle, 4) if spearman else None,
        "false_reject_rate": (report.verdicts or {}).get("false_reject_rate"),
        "detection_rate": (report.verdicts or {}).get("detection_rate"),
    }


def table_rows(rows: list[dict]) -> list[list[str]]:
    """The docs' precision table: the latest row of each machine, detector, category and
    configuration; graph time relative to onnxruntime FP32 of the same bench run."""
    latest = {
        (cpu_label(r["context"]), r["detector"], r["category"], r["backend"], r["precision"]): r
        for r in rows
    }
    out = []
    for (cpu, detector, category, backend, precision), r in latest.items():
        base = latest.get((cpu, detector, category, "onnxruntime", "fp32"), {})
        if r.get("unavailable"):
            gate = r.get("int8_gate") or {}
            why = gate.get("message", r["unavailable"])
            # the first check the gate failed on this backend, as quantize said it, at the
            # last level of layers kept in FP32 it tried ("<level> in FP32: <failures>")
            last = why.split("is not written: ")[-1].split(" || ")[-1]
            level, sep, failures = last.partition(" in FP32: ")
            parts = (failures if sep else last).split(" | ")
            mine = [p for p in parts if p.startswith(f"{backend}: ")]
            reason = (mine or parts)[0].split(";")[0] + (f" ({level} in FP32)" if sep else "")
            if gate.get("passed", True):  # written, but its gate failed on this backend
                failed = (gate.get("backends") or {}).get(backend, {}).get("failed") or []
                reason = failed[0] if failed else r["unavailable"].split(": ", 1)[-1]
                reason = reason.split(";")[0]
            out.append(
                [
                    cpu,
                    detector,
                    category,
                    f"{backend} {precision}",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    f"refused: {reason}",
                ]
            )
            continue

        ratio = r["graph_p50_ms"] / base["graph_p50_ms"] if base.get("graph_p50_ms") else None
        out.append(
            [
                cpu,
                detector,
                category,
                f"{backend} {precision}",
                f"{r['graph_p50_ms']:.2f}",
                f"{ratio:.2f}x" if ratio else "-",
                f"{r['total_p50_ms']:.2f}",
                _delta(r.get("image_rocauc_delta")),
                _delta(r.get("pixel_rocauc_delta")),
                "-" if r.get("spearman") is None else f"{r['spearman']:.4f}",
                {True: "passes", False: "fails", None: "-"}[r.get("parity")],
            ]
        )
    return out


def _delta(v: float | None) -> str:
    return "-" if v is None else f"{v + 0.0:+.2f}".replace("-0.00", "+0.00")


HEADERS = [
    "CPU",
    "detector",
    "category",
    "configuration",
    "graph p50 ms",
    "vs onnxruntime fp32",
    "total p50 ms",
    "image ROCAUC Δ",
    "pixel ROCAUC Δ",
    "Spearman",
    "parity",
]


def print_table(jsonl: Path) -> None:
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    print("| " + " | ".join(HEADERS) + " |")
    print("|" + "---|" * len(HEADERS))
    for row in table_rows(rows):
        print("| " + " | ".join(row) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, help="a folder of MVTec categories")
    ap.add_argument("--categories", default="mvtec3d_tire,mvtec_bottle,loco_juice_bottle")
    ap.add_argument("--detectors", default="patchcore,padim,spade")
    ap.add_argument("--out", type=Path, help="where the bundles are written")
    ap.add_argument("--jsonl", type=Path, required=True)
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument(
        "--export-args",
        default="",
        help="more export options, e.g. '--image-size 128 --steps 300 --teacher-steps 50' for "
        "a short EfficientAD/PUAD training",
    )
    ap.add_argument("--table", action="store_true", help="print README's table from --jsonl")
    args = ap.parse_args()
    if args.table:
        print_table(args.jsonl)
        return
    for detector in args.detectors.split(","):
        for category in args.categories.split(","):
            data, bundle = args.data / category, args.out / f"{detector}-{category}"
            export_s = export(detector, data, bundle, args.export_args.split())
            t = time.perf_counter()
            try:
                meta = add_int8_graph(bundle, data, Int8Settings(backends=tuple(BACKENDS)))
                # written where it passed; refused (with its figures) where it failed
                gate = {"passed": True, "backends": meta["gate"], "gated_on": meta["gated_on"]}
            except EdgeadError as exc:
                gate = {"passed": False, "message": str(exc)}
            quantize_s = time.perf_counter() - t
            bench = run_compare(bundle, BACKENDS, PRECISIONS, iterations=args.iterations)
            for config in bench.configurations:
                row = {
                    "detector": detector,
                    "category": category,
                    "backend": config.backend,
                    "precision": config.precision,
                    "runs_as": config.runs_as,
                    "unavailable": config.unavailable,
                    "export_args": args.export_args,
                    "export_s": round(export_s, 1),
                    "quantize_s": round(quantize_s, 1),
                    "int8_gate": gate if config.precision == "int8" else None,
                    "context": bench.context,
                }
                if config.unavailable is None:
                    lat = config.latency_ms
                    row |= {
                        "graph_p50_ms": round(lat["graph"]["p50"], 3),
                        "total_p50_ms": round(lat["total"]["p50"], 3),
                    }
                    row |= parity_rows(bundle, data, config.backend, config.precision)
                print(json.dumps({k: v for k, v in row.items() if k != "context"}), flush=True)
                with args.jsonl.open("a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
