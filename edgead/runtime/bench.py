"""``edgead bench``: per-stage latency and throughput of a bundle in the lean runtime.

Protocol (as in the EfficientAD paper): warm-up runs first; latency at batch 1, per stage,
over many runs (p50/p90/p99/mean); throughput at larger batches, clocked from host images to
host anomaly maps. Every figure travels with the device, backend, precision and input shape.
"""

from __future__ import annotations

import json
import logging
import platform
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgead.bundle.io import Bundle, open_bundle
from edgead.data.datasets import folder_samples
from edgead.data.images import read_image
from edgead.errors import EdgeadError
from edgead.runtime.memory import human
from edgead.runtime.pipeline import Pipeline
from edgead.runtime.settings import RuntimeSettings
from edgead.runtime.timing import LatencyStats, StageTimer

log = logging.getLogger(__name__)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide a figure (those importable here; torch only when
    already imported, so that the runtime never loads it for this)."""
    import sys
    from importlib import metadata

    names = ["numpy", "onnxruntime", "faiss-cpu", "opencv-python-headless", "numba", "torch"]
    out = {"python": platform.python_version()}
    for name in names:
        if name == "torch" and "torch" not in sys.modules:
            continue
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def bench_context(threads: int | None = None) -> dict:
    """What every speed figure travels with: CPU, its instruction sets, cores, threads used,
    load, versions, date."""
    import datetime
    import os

    from edgead.runtime.choice import instruction_sets

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return {
        "cpu": cpu_name(),
        "isa": instruction_sets(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "threads": threads,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "versions": library_versions(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def cpu_label(context: dict) -> str:
    """A bench context's CPU with the instruction sets INT8 and FP16 speed depend on, for
    results tables that hold several machines' rows."""
    isa = context.get("isa")
    if isa is None:
        return f"{context.get('cpu', '?')}, instruction sets not recorded"
    isa = set(isa)
    # every 8-bit dot-product set the CPU has: CPUs sold under one name differ here (an EPYC
    # with AVX-512 VNNI alone ran the same graphs at about half the speed of one with AVX-VNNI
    # too), and INT8 kernels pick their code by it
    dot = [
        n
        for f, n in (("amx_int8", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"))
        if f in isa
    ]
    kind = (
        " + ".join(dot)
        if dot
        else "AVX-512"
        if "avx512f" in isa
        else "AVX2"
        if "avx2" in isa
        else "no AVX2"
    )
    return f"{context.get('cpu', '?')}, {kind}"


@dataclass
class BenchReport:
    bundle: str
    detector: str
    backend: str
    device: str
    precision: str
    input_shape: list[int]
    n_images: int
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    throughput: dict[int, float] = field(default_factory=dict)  # batch -> images/s
    # batch -> stage -> ms per image (mean over the throughput runs): where a batch's time goes
    batch_stages_ms: dict[int, dict[str, float]] = field(default_factory=dict)
    context: dict = field(default_factory=dict)  # bench_context(): CPU, cores, load, versions
    latency_samples_ms: dict[str, list[float]] = field(default_factory=dict)  # batch 1 runs
    # with labelled --data: image ROCAUC and the verdicts at the threshold over its test set
    accuracy: dict | None = None
    peak_rss_bytes: int = 0
    bundle_bytes: int = 0
    scorer_memory_bytes: int | None = None
    warmup: int = 0
    iterations: int = 0

    def title(self) -> str:
        return (
            f"{self.detector} | {self.backend} | {self.precision} | input "
            f"{'x'.join(map(str, self.input_shape))} | {self.device}"
        )

    def markdown(self) -> str:
        from tabulate import tabulate

        lat = tabulate(
            [
                [s, f"{v['p50']:.2f}", f"{v['p90']:.2f}", f"{v['p99']:.2f}", f"{v['mean']:.2f}"]
                for s, v in self.latency_ms.items()
            ],
            headers=["stage (batch 1)", "p50 ms", "p90 ms", "p99 ms", "mean ms"],
            tablefmt="github",
        )
        stage_names = list(dict.fromkeys(k for v in self.batch_stages_ms.values() for k in v))
        thr = tabulate(
            [
                [b, f"{v:.1f}", f"{1000 / v:.2f}"]
                + [f"{self.batch_stages_ms.get(b, {}).get(s, 0.0):.3f}" for s in stage_names]
                for b, v in self.throughput.items()
            ],
            headers=["batch", "images/s", "ms per image"] + [f"{s} ms/img" for s in stage_names],
            tablefmt="github",
        )
        mem = tabulate(
            [
                ["bundle on disk", human(self.bundle_bytes)],
                [
                    "scorer statistics in memory",
                    human(self.scorer_memory_bytes) if self.scorer_memory_bytes else "-",
                ],
                ["peak RSS (whole process)", human(self.peak_rss_bytes)],
            ],
            tablefmt="github",
            headers=["memory", ""],
        )
        c = self.context
        ctx = tabulate(
            [
                ["CPU", c.get("cpu", "-")],
                [
                    "cores (usable) / threads used",
                    f"{c.get('cores')} ({c.get('cores_usable')})"
                    f" / {c.get('threads') or c.get('cores_usable')}",
                ],
                [
                    "load average at start (1, 5, 15 min)",
                    ", ".join(map(str, c.get("load_average", []))),
                ],
                ["versions", ", ".join(f"{k} {v}" for k, v in c.get("versions", {}).items())],
                ["date", c.get("date", "-")],
            ],
            tablefmt="github",
            headers=["context", ""],
        )
        acc = ""
        if self.accuracy:
            a = self.accuracy
            rows = [["test images", a["images"]]]
            if a.get("image_rocauc") is not None:
                rows.append(["image ROCAUC %", f"{100 * a['image_rocauc']:.2f}"])
            v = a.get("verdicts")
            if v:
                rows += [
                    ["threshold", f"{v['threshold']:.4g}"],
                    [
                        "false-reject rate",
                        f"{v['false_rejects']} of {v['n_good']} good "
                        f"({100 * (v['false_reject_rate'] or 0):.1f}%)",
                    ],
                    [
                        "detection rate",
                        f"{v['detections']} of {v['n_anomalous']} defective "
                        f"({100 * (v['detection_rate'] or 0):.1f}%)",
                    ],
                ]
            acc = "\n\n" + tabulate(rows, tablefmt="github", headers=["accuracy", ""])
        return (
            f"**{self.title()}** — {self.n_images} images, {self.warmup} warm-up, "
            f"{self.iterations} timed runs\n\n{lat}\n\n{thr}\n\n{mem}{acc}\n\n{ctx}\n"
        )

    def html(self) -> str:
        """A page with the tables, the latency distribution per stage and throughput per
        batch size (plots need matplotlib: the report extra)."""
        from edgead.report import bench_plots, markdown_to_html, plots_available

        text = self.markdown()
        if not plots_available():
            note = "No plots in this report: they need matplotlib (`pip install 'edgead[report]'`)."
            log.warning("bench --format html: %s", note)
            text = f"*{note}*\n\n{text}"
        return markdown_to_html(
            text, title=f"edgead bench: {self.bundle}", images=bench_plots(self)
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def load_images(data: str | Path | None, bundle: Bundle, n: int = 32) -> tuple[list, list]:
    """Up to ``n`` decoded images (and their paths) from DATA, or synthetic ones without it."""
    if data is not None:
        root = Path(data)
        samples = folder_samples(root / "test" if (root / "test").is_dir() else root)
        if not samples:
            raise EdgeadError(f"{data}: no images found")
        step = max(1, len(samples) // n)
        paths = [s.path for s in samples[::step][:n]]
        return [read_image(p) for p in paths], paths
    spec = bundle.manifest.input
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8) for _ in range(n)
    ], []


def labelled_accuracy(pipe: Pipeline, data: Path) -> dict | None:
    """Image ROCAUC and the verdicts at the pipeline's threshold over DATA's labelled test set
    (one pass, untimed); None when DATA has no good and defective test images."""
    from edgead.data.datasets import MVTecCategory, open_dataset
    from edgead.metrics import image_rocauc
    from edgead.metrics.scored import ScoredTestSet
    from edgead.runtime.pipeline import Failure

    if not MVTecCategory.is_mvtec(data):
        return None
    dataset = open_dataset(data)
    samples = dataset.test_samples()
    if len({s.label for s in samples}) < 2:
        return None
    scores = {
        r.source: r.image_score
        for r in pipe.predict_files([s.path for s in samples])
        if not isinstance(r, Failure)
    }
    scored = ScoredTestSet.collect(dataset, samples, scores)  # image scores only
    out: dict = {
        "images": len(scored.samples),
        "image_rocauc": image_rocauc(scored.labels, scored.scores),
    }
    threshold = pipe.normalization.image_threshold
    if threshold is not None:
        out["verdicts"] = scored.verdicts(threshold).to_dict()
    return out


def run_bench(
    bundle: str | Path,
    data: str | Path | None = None,
    batches: tuple[int, ...] = (1,),
    settings: RuntimeSettings | None = None,
    warmup: int = 5,
    iterations: int = 30,
    **changes: Any,
) -> BenchReport:
    """Per-stage latency at batch 1 and throughput at ``batches``, run as ``settings`` say
    (keyword ``changes`` replace single fields)."""
    settings = RuntimeSettings.of(settings, **changes)
    b = open_bundle(bundle)
    images, paths = load_images(data, b)
    spec = b.manifest.input
    with Pipeline(b, settings) as pipe:
        report = BenchReport(
            str(bundle),
            b.manifest.detector,
            pipe.describe(),
            settings.device or cpu_name(),
            pipe.precision,
            [3, spec.height, spec.width],
            len(images),
            bundle_bytes=sum(a.size for a in b.manifest.artifacts),
            scorer_memory_bytes=getattr(b.manifest.scorer.params, "memory_bytes", None),
            warmup=warmup,
            iterations=iterations,
            context=bench_context(settings.threads),
        )
        for i in range(warmup):
            pipe.predict([images[i % len(images)]])
        stats = LatencyStats()
        for i in range(iterations):
            timer = StageTimer(pipe.backend.synchronize)
            if paths:  # decode from the file, as on the line
                with timer("decode"):
                    image = read_image(paths[i % len(paths)])
            else:
                image = images[i % len(images)]
            pipe.predict([image], timer)
            stats.add(timer.ms)
        report.latency_ms = stats.summary()
        report.latency_samples_ms = {k: [round(x, 4) for x in v] for k, v in stats.samples.items()}
        for batch in batches:
            chunk = [images[i % len(images)] for i in range(batch)]
            pipe.predict(chunk)  # warm-up at this batch size
            runs = max(3, iterations // batch)
            stages: dict[str, float] = {}
            start = time.perf_counter()
            for _ in range(runs):
                timer = StageTimer(pipe.backend.synchronize)
                pipe.predict(chunk, timer)
                for k, v in timer.ms.items():
                    stages[k] = stages.get(k, 0.0) + v / (batch * runs)
            report.throughput[batch] = batch * runs / (time.perf_counter() - start)
            report.batch_stages_ms[batch] = stages
        if data is not None:
            report.accuracy = labelled_accuracy(pipe, Path(data))
    report.peak_rss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return report
