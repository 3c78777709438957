"""A bundle served by Triton on this machine: throughput and latency at 1/4/16 concurrent
clients, and the parity of Triton's scores and maps with the runtime's, in ONE run.

The bundle is written as a Triton repository (`edgead export-triton --form python`), served by
the nvidia-pytriton wheel's tritonserver (CPU, Python backend, dynamic batching, the server's
numpy<2 environment from tools/triton-env.sh), and queried over gRPC by C client threads, each
sending one image per request for --seconds. The in-process runtime's batch-1 latency on the
same images is printed beside it (what Triton's transport, queueing and Python stub add).

    python benchmarks/triton_clients.py BUNDLE IMAGES_DIR [--clients 1 4 16] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

OUTPUTS = ("SCORE", "ANOMALOUS", "MAP")


def load(images_dir: Path, limit: int) -> list[tuple[Path, np.ndarray]]:
    from edgead.data.images import read_image

    paths = sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in (".png", ".jpg"))
    step = max(1, len(paths) // limit)
    return [(p, read_image(p)) for p in paths[::step][:limit]]


def infer(client, image: np.ndarray):
    import tritonclient.grpc as grpcclient

    inp = grpcclient.InferInput("IMAGE", [1, *image.shape], "UINT8")
    inp.set_data_from_numpy(image[None])
    return client.infer("bundle", [inp])


def parity(url: str, images, reference) -> dict:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    rel, map_diff, agree = [], [], 0
    try:
        for (_, image), ref in zip(images, reference, strict=True):
            r = infer(client, image)
            score = float(r.as_numpy("SCORE")[0, 0])
            rel.append(abs(score - ref.image_score) / max(abs(ref.image_score), 1e-12))
            span = float(ref.anomaly_map.max() - ref.anomaly_map.min()) or 1.0
            map_diff.append(float(np.abs(r.as_numpy("MAP")[0] - ref.anomaly_map).max()) / span)
            agree += bool(r.as_numpy("ANOMALOUS")[0, 0]) == (ref.label == "anomalous")
    finally:
        client.close()
    return {
        "images": len(images),
        "score_max_rel_diff": max(rel),
        "map_max_diff_of_range": max(map_diff),
        "verdicts_agree": f"{agree}/{len(images)}",
    }


def load_test(url: str, images, clients: int, seconds: float) -> dict:
    import tritonclient.grpc as grpcclient

    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = threading.Event()

    def worker(k: int) -> None:
        client = grpcclient.InferenceServerClient(url)
        i = k
        try:
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    infer(client, images[i % len(images)][1])
                    latencies[k].append(1000 * (time.perf_counter() - t))
                except Exception:  # counted: a load test reports failures, it does not stop
                    errors[k] += 1
                i += clients
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    flat = np.concatenate([np.asarray(v) for v in latencies])
    return {
        "clients": clients,
        "requests": int(flat.size),
        "errors": sum(errors),
        "throughput_img_s": flat.size / elapsed,
        "latency_ms_p50": float(np.percentile(flat, 50)),
        "latency_ms_p99": float(np.percentile(flat, 99)),
    }


def batching_stats(url: str) -> dict:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics("bundle", as_json=True)["model_stats"][0]
    finally:
        client.close()
    return {
        "inferences": int(stats.get("inference_count", 0)),
        "executions": int(stats.get("execution_count", 0)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("images", type=Path)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--images-max", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--max-queue-delay-us", type=int, default=2000)
    ap.add_argument("--python-env", type=Path, default=None, help="numpy<2 env for the server")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import edgead  # noqa: F401
    from edgead.runtime.bench import bench_context
    from edgead.runtime.pipeline import Pipeline
    from edgead.threads import configure
    from edgead.triton.local import LocalTriton
    from edgead.triton.repository import TritonOptions, export_triton

    threads = configure(None)
    images = load(args.images, args.images_max)
    with Pipeline(args.bundle, threads=threads) as pipe:
        reference = [pipe.predict([im])[0] for _, im in images]
        runtime_ms = []
        for _, im in images:
            t = time.perf_counter()
            pipe.predict([im])
            runtime_ms.append(1000 * (time.perf_counter() - t))
    result: dict = {
        "context": bench_context(threads),
        "bundle": str(args.bundle),
        "runtime_batch1_ms_p50": float(np.percentile(runtime_ms, 50)),
    }
    with tempfile.TemporaryDirectory(prefix="edgead-triton-bench-") as tmp:
        repo = Path(tmp) / "repo"
        options = TritonOptions(
            form="python", max_batch=args.max_batch, max_queue_delay_us=args.max_queue_delay_us
        )
        export_triton([args.bundle], repo, options, names=["bundle"])
        with LocalTriton(repo, args.python_env, log=Path(tmp) / "server.log") as server:
            result["parity"] = parity(server.grpc_url, images, reference)
            print("parity:", json.dumps(result["parity"]), flush=True)
            load_test(server.grpc_url, images, 2, 3.0)  # warm-up
            result["runs"] = []
            for c in args.clients:
                before = batching_stats(server.grpc_url)
                r = load_test(server.grpc_url, images, c, args.seconds)
                after = batching_stats(server.grpc_url)
                done = after["executions"] - before["executions"]
                r["requests_per_execution"] = (
                    (after["inferences"] - before["inferences"]) / done if done else 0.0
                )
                result["runs"].append(r)
                print(
                    f"{c:3d} clients: {r['throughput_img_s']:6.1f} img/s, p50 "
                    f"{r['latency_ms_p50']:6.1f} ms, p99 {r['latency_ms_p99']:6.1f} ms, "
                    f"{r['requests_per_execution']:.2f} requests per model execution, "
                    f"{r['errors']} errors",
                    flush=True,
                )
    print(f"runtime in-process, batch 1: p50 {result['runtime_batch1_ms_p50']:.1f} ms")
    print("context:", json.dumps(result["context"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
