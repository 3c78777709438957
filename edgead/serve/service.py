"""The serving loop, for one stream or many.

Each stream (:class:`Stream`) has a capture thread that reads its source into a bounded,
drop-oldest queue, and publishes what was scored: the latest result, a JPEG of the latest
overlay for its MJPEG view, recent anomalies (written to disk by its own writer thread, so a
slow disk never stalls inference) and its Prometheus series. Each bundle is loaded once, in a
:class:`BundleRunner`, whose inference thread takes the frames of all the streams that use it
and scores them together as one batch (up to ``max_batch`` frames, waiting at most
``max_wait_ms`` for the batch to fill), so the backend sees batches.

Faults stay with their stream: a lost source only stops its own capture thread (the runner
never waits for a stream that is not live), and a batch that fails is scored again frame by
frame, so one broken frame costs only itself.

The web app (``edgead.serve.app``) only reads what is published here.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from edgead.runtime.drift import DriftSettings
from edgead.runtime.pipeline import Pipeline
from edgead.serve.runner import BundleRunner
from edgead.serve.sources import FrameSource
from edgead.serve.stream import Stream

__all__ = ["BundleRunner", "Metrics", "ServeOptions", "Service", "Stream"]

log = logging.getLogger("edgead.serve")


@dataclass
class ServeOptions:
    queue_size: int = 2
    window: int = 200  # frames in the rolling latency and FPS window
    recent_events: int = 50
    max_events: int = 1000
    max_bytes: int = 512 << 20
    jpeg_quality: int = 80
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    record_queue: int = 32
    # frames of the streams sharing a bundle scored as one batch (a config's default is 8; one
    # stream alone scores frame by frame, as it always has)
    max_batch: int = 1
    max_wait_ms: float = 10.0  # longest a first frame waits for the batch to fill
    # a source that never opened is given up after this many seconds of retries (failed)
    give_up_after: float | None = 30.0
    drift: DriftSettings = field(default_factory=DriftSettings)
    feedback_frames: int = 16  # recent frames an operator can still confirm (in memory)
    sinks: list = field(default_factory=list)  # SinkSpec: every stream's verdicts to the line
    gate: object | None = None  # a Gate: the line's state pauses the single stream


class _StreamCollector:
    """Source and queue figures per stream, read from their owners when Prometheus scrapes:
    nothing is mirrored into counters on the per-frame path."""

    def __init__(self, service: Service):
        self.service = service

    def collect(self):
        labels = ["stream", "bundle"]
        dropped = CounterMetricFamily(
            "edgead_dropped_frames", "Frames dropped because inference was behind", labels=labels
        )
        reconnects = CounterMetricFamily("edgead_reconnects", "Source reconnections", labels=labels)
        up = GaugeMetricFamily(
            "edgead_source_up", "1 when the source delivers frames", labels=labels
        )
        fps = GaugeMetricFamily("edgead_fps", "Frames scored per second (rolling)", labels=labels)
        drift = {
            "alarm": GaugeMetricFamily(
                "edgead_drift_alarm",
                "1 while the drift alarm is up (the promise broken or about to be)",
                labels=labels,
            ),
            "notice": GaugeMetricFamily(
                "edgead_drift_notice",
                "1 while the scores moved but the promise holds (recalibrate when you can)",
                labels=labels,
            ),
            "psi": GaugeMetricFamily(
                "edgead_drift_psi", "Population stability index of the scores", labels=labels
            ),
            "flag_rate": GaugeMetricFamily(
                "edgead_drift_flag_rate", "Share of the window's parts flagged", labels=labels
            ),
            "target_frr": GaugeMetricFamily(
                "edgead_promised_false_reject_rate", "The bundle's target rate", labels=labels
            ),
            "median_shift": GaugeMetricFamily(
                "edgead_drift_median_shift",
                "Median score shift, as a fraction of the way to the threshold",
                labels=labels,
            ),
        }
        live = {
            "confirmed_good": GaugeMetricFamily(
                "edgead_confirmed_good", "Frames an operator confirmed good", labels=labels
            ),
            "confirmed_defective": GaugeMetricFamily(
                "edgead_confirmed_defective", "Frames confirmed defective", labels=labels
            ),
            "live_false_reject_rate": GaugeMetricFamily(
                "edgead_live_false_reject_rate",
                "Confirmed good frames the verdict rejected, as a share",
                labels=labels,
            ),
            "live_detection_rate": GaugeMetricFamily(
                "edgead_live_detection_rate",
                "Confirmed defective frames the verdict caught, as a share",
                labels=labels,
            ),
        }
        sink_labels = ["stream", "bundle", "sink", "type"]
        sinks = {
            "sent": CounterMetricFamily(
                "edgead_sink_sent", "Verdicts the receiver acknowledged", labels=sink_labels
            ),
            "dropped": CounterMetricFamily(
                "edgead_sink_dropped",
                "Verdicts lost: spool full (the oldest go) or a disk error",
                labels=sink_labels,
            ),
            "rejected": CounterMetricFamily(
                "edgead_sink_rejected", "Verdicts the receiver refused for good", labels=sink_labels
            ),
            "spooled": GaugeMetricFamily(
                "edgead_sink_spooled", "Verdicts waiting on disk for delivery", labels=sink_labels
            ),
            "connected": GaugeMetricFamily(
                "edgead_sink_connected", "1 while the receiver takes verdicts", labels=sink_labels
            ),
        }
        for stream in self.service.streams:
            key = [stream.name, stream.runner.name]
            for sink in stream.sinks:
                s = sink.stats()
                skey = [*key, s["name"], s["type"]]
                for name in ("sent", "dropped", "rejected", "spooled"):
                    sinks[name].add_metric(skey, s[name])
                sinks["connected"].add_metric(skey, 1.0 if s["state"] == "connected" else 0.0)
            status = stream.capture.snapshot()
            dropped.add_metric(key, stream.queue.dropped)
            reconnects.add_metric(key, status["reconnects"])
            up.add_metric(key, 1.0 if status["state"] == "live" else 0.0)
            fps.add_metric(key, stream.fps())
            d = stream.drift.status()
            if d.state in ("ok", "shift", "drift"):
                drift["alarm"].add_metric(key, 1.0 if d.state == "drift" else 0.0)
                drift["notice"].add_metric(key, 1.0 if d.state == "shift" else 0.0)
                for name in ("psi", "flag_rate", "target_frr", "median_shift"):
                    drift[name].add_metric(key, getattr(d, name))
            rates = stream.feedback.rates()
            for name, family in live.items():
                if rates[name] is not None:
                    family.add_metric(key, rates[name])
        return [dropped, reconnects, up, fps, *drift.values(), *live.values(), *sinks.values()]


class Metrics:
    """Prometheus metrics, labelled by stream and bundle, in a registry of their own (one per
    service; tests run several)."""

    def __init__(self, service: Service) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        sb = ["stream", "bundle"]
        self.frames = Counter("edgead_frames", "Frames scored", sb, registry=r)
        self.anomalies = Counter("edgead_anomalies", "Frames judged anomalous", sb, registry=r)
        self.frame_errors = Counter(
            "edgead_frame_errors",
            "Frames or uploads that could not be used",
            ["stream", "origin"],
            registry=r,
        )
        self.uploads = Counter("edgead_uploads", "Images scored through the API", sb, registry=r)
        self.events_lost = Counter(
            "edgead_events_not_saved", "Anomalous frames not written to disk", sb, registry=r
        )
        self.score = Gauge(
            "edgead_last_score", "Raw image score of the latest frame", sb, registry=r
        )
        r.register(_StreamCollector(service))
        self.stage = Histogram(
            "edgead_stage_seconds",
            "Per-stage latency of one frame (a batch's stage time shared by its frames)",
            ["stream", "bundle", "stage"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
            registry=r,
        )
        self.batch = Histogram(
            "edgead_batch_frames",
            "Frames per batch the backend scored",
            ["bundle"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )


class Service:
    """The streams and bundle runners of one server: starts, stops and reports them."""

    def __init__(self, runners: list[BundleRunner], streams: list[Stream]):
        if not streams:
            raise ValueError("a service needs at least one stream")
        self.runners = runners
        self.streams = streams
        self.by_name = {s.name: s for s in streams}
        self.metrics = Metrics(self)
        for s in streams:
            s.metrics = self.metrics
        for r in runners:
            r.metrics = self.metrics
        self.started_at = time.time()
        self.closing = False  # set when a stop was asked for: streams end, state reports it
        self._stopped = threading.Event()
        self.failed: dict[str, str] = {}  # stream -> why its source was given up
        # called once no stream is left that can deliver (the server then exits non-zero)
        self.on_all_failed: callable = lambda: None
        for s in streams:
            s.on_failed = self._stream_failed

    def _stream_failed(self, stream: Stream, reason: str) -> None:
        self.failed[stream.name] = reason
        log.error("[%s] stream failed: %s", stream.name, reason)
        if len(self.failed) == len(self.streams):
            self.on_all_failed()

    @classmethod
    def single(
        cls,
        pipeline: Pipeline,
        source: FrameSource,
        out_dir: str | Path,
        options: ServeOptions | None = None,
        name: str = "default",
    ) -> Service:
        """One bundle on one source (``edgead serve BUNDLE --video ...``): events in OUT/events."""
        o = options or ServeOptions()
        runner = BundleRunner(pipeline.bundle.root.name, pipeline, o.max_batch, o.max_wait_ms)
        stream = Stream(name, source, runner, out_dir, o, sinks=o.sinks, gate=o.gate)
        return cls([runner], [stream])

    @property
    def first(self) -> Stream:
        return self.streams[0]

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        for s in self.streams:
            s.start_writer()
        for r in self.runners:
            r.start()
        for s in self.streams:
            s.capture.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop capture, finish the batches in flight, flush the events to disk, close models."""
        self._stopped.set()
        for s in self.streams:
            s.capture.stop()
        for s in self.streams:
            if s.capture.ident is not None:  # started
                s.capture.join(timeout)
        for r in self.runners:
            r.stop(timeout)
        for s in self.streams:
            s.stop_writer(timeout)
        for r in self.runners:
            r.close()
        for s in self.streams:
            log.info(
                "[%s] stopped: %d frames scored, %d anomalous, %d events written",
                s.name,
                s.frames,
                s.anomalies,
                s.recorder.written,
            )

    @property
    def stopping(self) -> bool:
        return self.closing or self._stopped.is_set()

    def begin_stop(self) -> None:
        """Tell streaming clients to finish (called on SIGINT/SIGTERM, before ``stop``)."""
        self.closing = True

    # -- what the web app reads ---------------------------------------------------------------
    def stream_status(self, stream: Stream) -> dict:
        return stream.status(self.stopping, self.started_at)

    def status(self) -> dict:
        """Every stream's row and every bundle's batching; with one stream, that stream's
        whole status at the top level as well (what single-stream clients read)."""
        out: dict = {}
        if len(self.streams) == 1:
            out.update(self.stream_status(self.first))
        out.update(
            {
                "streams": [s.summary() for s in self.streams],
                "bundles": [
                    {
                        "name": r.name,
                        "bundle": str(r.pipeline.bundle.root),
                        "detector": r.pipeline.bundle.manifest.detector,
                        "backend": r.backend_name,
                        "streams": [s.name for s in r.streams],
                        "batches": r.batches,
                        "max_batch": r.max_batch,
                        "max_wait_ms": r.max_wait_s * 1e3,
                    }
                    for r in self.runners
                ],
                "uptime_s": round(time.time() - self.started_at, 1),
                "stopping": self.stopping,
            }
        )
        return out

    def reload(self, bundle: str | None = None, path: str | None = None) -> list[dict]:
        """Load a new revision for one bundle (by name) or all, without a restart; a bundle
        that does not open leaves the running one in place (EdgeadError)."""
        runners = [r for r in self.runners if bundle is None or r.name == bundle]
        if not runners:
            names = ", ".join(r.name for r in self.runners)
            raise KeyError(f"no bundle {bundle!r} (bundles: {names})")
        if path is not None and len(runners) > 1:
            raise ValueError("a path names one bundle's new revision: give the bundle too")
        return [r.reload(path) for r in runners]

    def totals(self) -> dict:
        return {
            "frames": sum(s.frames for s in self.streams),
            "anomalies": sum(s.anomalies for s in self.streams),
            "dropped": sum(s.queue.dropped for s in self.streams),
            "bad_frames": sum(s.capture.snapshot()["frame_errors"] for s in self.streams),
            "events": sum(s.recorder.written for s in self.streams),
        }
