"""Many streams on one bundle: frames/s scored and frame latency against the number of
streams, with and without cross-stream batching, in ONE run on this machine.

For each N in --streams (default 1 2 4 8), N replayed cameras (the category's test images as
a lossless video, each stream starting at a different frame, paced at --fps like a camera)
share one bundle in the same service `edgead serve --config` runs (no HTTP in the timing). It
reports, over --seconds after a warm-up: frames scored per second (all streams together),
frames dropped (inference behind: drop-oldest), and the frame age at scoring (capture to
result: queue wait + batch wait + inference) p50/p99, for max_batch 1 (no batching) and
max_batch 8 (frames of the streams scored together, waiting at most --max-wait-ms).

    python benchmarks/streams.py BUNDLE IMAGES_DIR [--fps 15] [--seconds 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def write_clip(images: list[Path], path: Path, fps: float, start: int) -> None:
    order = images[start:] + images[:start]
    first = cv2.imread(str(order[0]))
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h))
    for p in order:
        frame = cv2.imread(str(p))
        if frame is not None:
            writer.write(cv2.resize(frame, (w, h)))
    writer.release()


def run_one(bundle: Path, clips: list[Path], args, max_batch: int, work: Path) -> dict:
    from edgead.serve.server import build_service
    from edgead.serve.service import ServeOptions

    config = work / f"streams-{len(clips)}-{max_batch}.yaml"
    lines = ["streams:"]
    lines += [
        f"  - {{name: cam{k}, video: {clip}, loop: true, live: true, fps: {args.fps}, "
        f"bundle: {bundle}}}"
        for k, clip in enumerate(clips)
    ]
    lines.append(f"batching: {{max_batch: {max_batch}, max_wait_ms: {args.max_wait_ms}}}")
    config.write_text("\n".join(lines) + "\n")
    options = ServeOptions(window=100_000)  # every frame of the run in the latency figures
    service = build_service(config, work / "out", args.threads, options)
    service.start()
    try:
        time.sleep(args.warmup)
        start_frames = [s.frames for s in service.streams]
        start_drops = [s.queue.dropped for s in service.streams]
        start_samples = [len(s.frame_ages()) for s in service.streams]
        start_batches = sum(r.batches for r in service.runners)
        t0 = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - t0
        frames = sum(s.frames - f for s, f in zip(service.streams, start_frames, strict=True))
        drops = sum(s.queue.dropped - d for s, d in zip(service.streams, start_drops, strict=True))
        ages = np.concatenate(
            [
                np.asarray(s.frame_ages())[k:]
                for s, k in zip(service.streams, start_samples, strict=True)
            ]
        )
        batches = sum(r.batches for r in service.runners) - start_batches
    finally:
        service.begin_stop()
        service.stop()
    return {
        "streams": len(clips),
        "max_batch": max_batch,
        "offered_fps": args.fps * len(clips),
        "scored_fps": frames / elapsed,
        "dropped_per_s": drops / elapsed,
        "frames_per_batch": frames / batches if batches else 0.0,
        "frame_age_ms_p50": float(np.percentile(ages, 50)) if ages.size else None,
        "frame_age_ms_p99": float(np.percentile(ages, 99)) if ages.size else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("images", type=Path, help="folder searched recursively for .png/.jpg")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--fps", type=float, default=15.0, help="each camera's frame rate")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=4.0)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import edgead  # noqa: F401  (OpenMP's passive waiting before any library loads)
    from edgead.runtime.bench import bench_context
    from edgead.threads import configure

    threads = configure(args.threads)
    images = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".png", ".jpg"))
    if not images:
        raise SystemExit(f"{args.images}: no images")
    result = {"context": bench_context(threads), "bundle": str(args.bundle), "runs": []}
    with tempfile.TemporaryDirectory(prefix="edgead-streams-") as tmp:
        work = Path(tmp)
        most = max(args.streams)
        clips = []
        for k in range(most):
            clip = work / f"cam{k}.avi"
            write_clip(images, clip, args.fps, (k * len(images)) // most)
            clips.append(clip)
        print(f"{len(images)} images per clip, {args.fps:g} frames/s per camera, pid {os.getpid()}")
        print("streams  batch  offered/s  scored/s  dropped/s  frames/batch  age p50  age p99 ms")
        for n in args.streams:
            for max_batch in (1, args.max_batch):
                r = run_one(args.bundle, clips[:n], args, max_batch, work)
                result["runs"].append(r)
                print(
                    f"{n:7d}  {max_batch:5d}  {r['offered_fps']:9.1f}  {r['scored_fps']:8.1f}  "
                    f"{r['dropped_per_s']:9.1f}  {r['frames_per_batch']:12.2f}  "
                    f"{r['frame_age_ms_p50']:7.1f}  {r['frame_age_ms_p99']:7.1f}",
                    flush=True,
                )
    print("context:", json.dumps(result["context"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
