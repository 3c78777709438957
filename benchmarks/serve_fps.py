"""Frames per second of `edgead serve` on this machine, for one bundle and a folder of images.

The images become a lossless video (FFV1); the server replays it paced at --fps (a camera's
rate; 0 = as fast as inference goes) for --seconds after a warm-up, with one MJPEG viewer
attached, and the script prints what /api/status reports: scored frames/s, dropped frames,
per-stage p50 latency, and the server's memory.

    python benchmarks/serve_fps.py BUNDLE IMAGES_DIR [--fps 30] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import httpx
import psutil


def write_clip(images: list[Path], path: Path, fps: float) -> None:
    first = cv2.imread(str(images[0]))
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps or 30, (w, h))
    for p in images:
        frame = cv2.imread(str(p))
        if frame is not None:
            writer.write(cv2.resize(frame, (w, h)))
    writer.release()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("images", help="folder searched recursively for .png/.jpg")
    ap.add_argument("--fps", type=float, default=0.0, help="source pacing (0: unpaced)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    args = ap.parse_args()

    images = sorted(p for p in Path(args.images).rglob("*") if p.suffix in (".png", ".jpg"))
    if not images:
        sys.exit(f"{args.images}: no images")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.avi"
        write_clip(images, clip, args.fps)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "edgead.cli", "-q", "serve", args.bundle, "--video", str(clip)]
        cmd += ["--loop", "--live", "--fps", str(args.fps), "--port", str(port)]
        cmd += ["--out", f"{tmp}/out"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        try:
            for _ in range(600):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            stop = threading.Event()

            def viewer() -> None:  # one browser's worth of MJPEG
                with httpx.stream("GET", f"http://127.0.0.1:{port}/stream.mjpg", timeout=10) as r:
                    for _ in r.iter_bytes():
                        if stop.is_set():
                            return

            threading.Thread(target=viewer, daemon=True).start()
            time.sleep(args.warmup)
            s0 = client.get("/api/status").json()
            time.sleep(args.seconds)
            s1 = client.get("/api/status").json()
            stop.set()
            rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        frames = s1["frames"] - s0["frames"]
        dropped = s1["dropped_frames"] - s0["dropped_frames"]
        result = {
            "bundle": args.bundle,
            "detector": s1["model"]["detector"],
            "backend": s1["model"]["backend"],
            "frame_size": list(cv2.imread(str(images[0])).shape[:2]),
            "source_fps": args.fps or "unpaced",
            "scored_fps": round(frames / args.seconds, 2),
            "dropped_per_s": round(dropped / args.seconds, 2),
            "latency_ms_p50": s1["latency_ms_p50"],
            "server_rss_mb": round(rss, 1),
        }
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
