"""``edgead bench --backend a,b --precision x,y``: configurations side by side, in one run.

Every configuration (backend x precision) is loaded once; then each timed run feeds the same
image to every configuration in turn, the order rotating from run to run, so that load on
the machine, turbo and cache state fall on all of them alike. Timings of configurations
measured in separate processes minutes apart differed by more than the differences sought.
A configuration the bundle cannot run (no INT8 graph, an INT8 graph not gated on that
backend, a backend not installed) is listed with the reason instead of failing the run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgead.bundle.io import open_bundle
from edgead.data.images import read_image
from edgead.errors import EdgeadError
from edgead.runtime.bench import bench_context, labelled_accuracy, load_images
from edgead.runtime.pipeline import Pipeline
from edgead.runtime.settings import RuntimeSettings
from edgead.runtime.timing import LatencyStats, StageTimer

log = logging.getLogger(__name__)


@dataclass
class Configuration:
    backend: str
    precision: str
    runs_as: str = ""  # the backend as it describes itself (provider, device, precision)
    unavailable: str | None = None  # why this configuration could not run
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    latency_samples_ms: dict[str, list[float]] = field(default_factory=dict)
    accuracy: dict | None = None  # with labelled --data (edgead.runtime.bench)

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}"


@dataclass
class CompareReport:
    bundle: str
    detector: str
    input_shape: list[int]
    n_images: int
    warmup: int
    iterations: int
    configurations: list[Configuration] = field(default_factory=list)
    context: dict = field(default_factory=dict)

    def baseline(self) -> Configuration | None:
        """The first configuration that ran: the unit of the ratio columns."""
        return next((c for c in self.configurations if c.unavailable is None), None)

    def rows(self) -> list[list[str]]:
        base = self.baseline()
        out = []
        for c in self.configurations:
            if c.unavailable is not None:
                out.append([c.label, "-", "-", "-", "-", "-", "-", f"not run: {c.unavailable}"])
                continue
            lat = c.latency_ms
            graph, total = lat["graph"]["p50"], lat["total"]["p50"]
            acc = c.accuracy or {}
            verdicts = acc.get("verdicts") or {}
            out.append(
                [
                    c.label,
                    f"{graph:.2f}",
                    f"{graph / base.latency_ms['graph']['p50']:.2f}x",
                    f"{total:.2f}",
                    f"{total / base.latency_ms['total']['p50']:.2f}x",
                    _pct(acc.get("image_rocauc")),
                    _pct(verdicts.get("false_reject_rate")),
                    c.runs_as,
                ]
            )
        return out

    def markdown(self) -> str:
        from tabulate import tabulate

        table = tabulate(
            self.rows(),
            headers=[
                "configuration",
                "graph p50 ms",
                "vs first",
                "total p50 ms",
                "vs first",
                "image ROCAUC %",
                "false rejects %",
                "runs as",
            ],
            tablefmt="github",
        )
        c = self.context
        return (
            f"**{self.detector} | input {'x'.join(map(str, self.input_shape))} | "
            f"{c.get('cpu', '-')}** — {self.n_images} images, {self.warmup} warm-up, "
            f"{self.iterations} timed runs per configuration, interleaved\n\n{table}\n\n"
            f"threads {c.get('threads') or c.get('cores_usable')} of {c.get('cores')} cores, "
            f"instruction sets {', '.join(c.get('isa', [])) or '-'}, load average at start "
            f"{', '.join(map(str, c.get('load_average', [])))}, {c.get('date', '-')}\n"
        )

    def html(self) -> str:
        from edgead.report import compare_plots, markdown_to_html

        return markdown_to_html(
            self.markdown(), title=f"edgead bench: {self.bundle}", images=compare_plots(self)
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def run_compare(
    bundle: str | Path,
    backends: list[str],
    precisions: list[str],
    data: str | Path | None = None,
    settings: RuntimeSettings | None = None,
    warmup: int = 5,
    iterations: int = 30,
    **changes: Any,
) -> CompareReport:
    """Every backend x precision side by side, interleaved in one run; the other fields of
    ``settings`` (keyword ``changes`` replace single ones) hold for all of them."""
    settings = RuntimeSettings.of(settings, **changes)
    b = open_bundle(bundle)
    images, paths = load_images(data, b)
    spec = b.manifest.input
    report = CompareReport(
        str(bundle),
        b.manifest.detector,
        [3, spec.height, spec.width],
        len(images),
        warmup,
        iterations,
        context=bench_context(settings.threads),
    )
    pipes: list[tuple[Configuration, Pipeline]] = []
    try:
        for backend in backends:
            for precision in precisions:
                config = Configuration(backend, precision)
                report.configurations.append(config)
                try:
                    pipe = Pipeline(b, settings.replace(backend=backend, precision=precision))
                except EdgeadError as exc:
                    config.unavailable = str(exc)
                    log.warning("bench: %s not run: %s", config.label, exc)
                    continue
                config.runs_as = pipe.describe()
                # auto resolved: what the bundle's recorded choice made of it
                config.backend, config.precision = pipe.backend.name, pipe.precision
                pipes.append((config, pipe))
        if not pipes:
            raise EdgeadError(f"{bundle}: none of the configurations can run here")
        for i in range(warmup):
            for _, pipe in pipes:
                pipe.predict([images[i % len(images)]])
        stats = {id(c): LatencyStats() for c, _ in pipes}
        for i in range(iterations):
            image = read_image(paths[i % len(paths)]) if paths else images[i % len(images)]
            k = i % len(pipes)
            for config, pipe in pipes[k:] + pipes[:k]:
                # one untimed run first: the previous configuration's idle thread pool (TBB
                # workers spin before they sleep) no longer steals the cores from this one
                pipe.predict([image])
                timer = StageTimer(pipe.backend.synchronize)
                pipe.predict([image], timer)
                stats[id(config)].add(timer.ms)
        for config, pipe in pipes:
            s = stats[id(config)]
            config.latency_ms = s.summary()
            config.latency_samples_ms = {k: [round(x, 4) for x in v] for k, v in s.samples.items()}
            if data is not None:
                config.accuracy = labelled_accuracy(pipe, Path(data))
    finally:
        for _, pipe in pipes:
            pipe.close()
    return report
