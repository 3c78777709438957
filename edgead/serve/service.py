"""The serving loop: capture thread -> bounded queue -> inference thread -> published state.

The web app (``edgead.serve.app``) only reads what this publishes: the latest result, a JPEG of
the latest overlay for the MJPEG stream, recent anomalies and Prometheus metrics. Anomalous
frames go to a writer thread, so a slow disk never stalls inference.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from edgead.errors import EdgeadError, ImageDecodeError
from edgead.runtime.pipeline import Pipeline, Prediction
from edgead.runtime.postprocess import overlay
from edgead.runtime.timing import LatencyStats
from edgead.serve.capture import Backoff, CaptureThread, Frame, FrameQueue
from edgead.serve.recorder import EventRecorder
from edgead.serve.sources import FrameSource

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


class _CaptureCollector:
    """Source and queue figures, read from their owners when Prometheus scrapes: nothing is
    mirrored into counters on the per-frame path."""

    def __init__(self, service: Service):
        self.service = service

    def collect(self):
        status = self.service.capture.snapshot()
        dropped = CounterMetricFamily(
            "edgead_dropped_frames", "Frames dropped because inference was behind"
        )
        dropped.add_metric([], self.service.queue.dropped)
        reconnects = CounterMetricFamily("edgead_reconnects", "Source reconnections")
        reconnects.add_metric([], status["reconnects"])
        up = GaugeMetricFamily("edgead_source_up", "1 when the source delivers frames")
        up.add_metric([], 1.0 if status["state"] == "live" else 0.0)
        return [dropped, reconnects, up]


class Metrics:
    """Prometheus metrics, in a registry of their own (one per service; tests run several)."""

    def __init__(self, service: Service) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("edgead_frames", "Frames scored", registry=r)
        self.anomalies = Counter("edgead_anomalies", "Frames judged anomalous", registry=r)
        self.frame_errors = Counter(
            "edgead_frame_errors",
            "Frames or uploads that could not be used",
            ["origin"],
            registry=r,
        )
        self.uploads = Counter("edgead_uploads", "Images scored through the API", registry=r)
        self.events_lost = Counter(
            "edgead_events_not_saved", "Anomalous frames not written to disk", registry=r
        )
        self.score = Gauge("edgead_last_score", "Raw image score of the latest frame", registry=r)
        fps = Gauge("edgead_fps", "Frames scored per second (rolling)", registry=r)
        fps.set_function(service.fps)
        r.register(_CaptureCollector(service))
        self.stage = Histogram(
            "edgead_stage_seconds",
            "Per-stage latency of one frame",
            ["stage"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
            registry=r,
        )


class Service:
    """Owns the pipeline, the capture thread, the inference thread and the event writer."""

    def __init__(
        self,
        pipeline: Pipeline,
        source: FrameSource,
        out_dir: str | Path,
        options: ServeOptions | None = None,
    ):
        self.pipeline = pipeline
        self.source = source
        self.options = options or ServeOptions()
        o = self.options
        self.manifest = pipeline.bundle.manifest
        self.norm = pipeline.normalization  # the calibrated threshold, or --threshold
        self.queue = FrameQueue(o.queue_size)
        self.capture = CaptureThread(
            source,
            self.queue,
            Backoff(o.backoff_initial, o.backoff_max),
            on_frame_error=lambda message: self._frame_error("source", message),
        )
        self.recorder = EventRecorder(Path(out_dir) / "events", o.max_events, o.max_bytes)
        self.metrics = Metrics(self)
        self.started_at = time.time()
        self.backend_name = pipeline.describe()
        self._lock = threading.Lock()  # guards the published state below
        self._predict_lock = threading.Lock()  # the pipeline is shared with uploads
        self._jpeg_lock = threading.Lock()
        self._stop = threading.Event()
        self.closing = False  # set when a stop was asked for: streams end, state reports it
        self.viewers = 0  # MJPEG clients connected (changed on the web server's event loop)
        self._latest: dict | None = None
        self._jpeg: bytes | None = None
        self._jpeg_seq = 0
        self._stats = LatencyStats(window=o.window)
        self._times: deque[float] = deque(maxlen=o.window)
        self._events: deque[dict] = deque(maxlen=o.recent_events)
        self._errors: deque[dict] = deque(maxlen=20)
        self.frames = 0
        self.anomalies = 0
        self._records: queue.Queue = queue.Queue(o.record_queue)
        self._worker = threading.Thread(target=self._infer_loop, name="edgead-infer", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="edgead-writer", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._writer.start()
        self._worker.start()
        self.capture.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop capture, finish the frame in flight, flush the events to disk, close the model."""
        self.capture.stop()
        self._stop.set()
        self.capture.join(timeout)
        self._worker.join(timeout)
        self._records.put(None)
        self._writer.join(timeout)
        self.pipeline.close()
        log.info(
            "stopped: %d frames scored, %d anomalous, %d events written",
            self.frames,
            self.anomalies,
            self.recorder.written,
        )

    @property
    def stopping(self) -> bool:
        return self.closing or self._stop.is_set()

    # -- inference ------------------------------------------------------------------------------
    def _predict(self, image: np.ndarray, source_id: str) -> Prediction:
        with self._predict_lock:
            return self.pipeline.predict([image], sources=[source_id])[0]

    def _infer_loop(self) -> None:
        while not self._stop.is_set():
            frame = self.queue.get(timeout=0.2)
            if frame is None:
                continue
            try:
                result = self._predict(frame.image, frame.source_id)
            except EdgeadError as exc:  # e.g. a backend refusing an input: report, go on
                self._frame_error("inference", f"{frame.source_id}: {exc}")
                continue
            self._publish(frame, result)

    def _render(self, image: np.ndarray, result: Prediction) -> np.ndarray:
        return overlay(image, result.anomaly_map, self.norm)

    def _publish(self, frame: Frame, result: Prediction) -> None:
        anomalous = result.label == "anomalous"
        # the overlay is drawn only for someone: a stream viewer or an event to save
        start = time.perf_counter()
        over = self._render(frame.image, result) if self.viewers or anomalous else None
        buf = None
        if over is not None and self.viewers:
            ok, encoded = cv2.imencode(
                ".jpg", over, [cv2.IMWRITE_JPEG_QUALITY, self.options.jpeg_quality]
            )
            buf = encoded if ok else None
        render_ms = (time.perf_counter() - start) * 1e3
        now = time.time()
        entry = {
            "seq": frame.seq,
            "source": frame.source_id,
            "captured_at": frame.captured_at,
            "scored_at": now,
            "score": result.image_score,
            "normalized_score": result.normalized_score,
            "verdict": result.label,
            "latency_ms": {
                **result.timings_ms,
                **({"render": render_ms} if over is not None else {}),
            },
            "frame_age_ms": (now - frame.captured_at) * 1e3,
        }
        m = self.metrics
        m.frames.inc()
        m.score.set(result.image_score)
        for stage, ms in entry["latency_ms"].items():
            m.stage.labels(stage).observe(ms / 1e3)
        with self._lock:
            self.frames += 1
            self._latest = entry
            self._stats.add(entry["latency_ms"])
            self._times.append(time.monotonic())
            if anomalous:
                self.anomalies += 1
        if anomalous:
            m.anomalies.inc()
            self._queue_record(frame.image, over, result, entry)
        if buf is not None:
            with self._jpeg_lock:
                self._jpeg = buf.tobytes()
                self._jpeg_seq += 1

    def _queue_record(
        self, image: np.ndarray, over: np.ndarray, result: Prediction, entry: dict
    ) -> None:
        try:
            self._records.put_nowait((image, over, result.anomaly_map, entry))
        except queue.Full:
            self.metrics.events_lost.inc()
            log.warning("event writer is behind: anomalous frame %s not saved", entry["source"])

    def _write_loop(self) -> None:
        lo = self.norm.pixel_min
        hi = self.norm.pixel_max
        while True:
            item = self._records.get()
            if item is None:
                return
            image, over, amap, entry = item
            scale = (
                (lo, hi)
                if lo is not None and hi is not None
                else (float(amap.min()), float(amap.max()))
            )
            record = {
                **entry,
                "bundle": str(self.pipeline.bundle.root),
                "detector": self.manifest.detector,
                "threshold": self.norm.image_threshold,
            }
            event_id = self.recorder.save(image, over, amap, scale, record)
            if event_id is None:
                self.metrics.events_lost.inc()
                continue
            with self._lock:
                self._events.appendleft({**entry, "id": event_id})

    def _frame_error(self, origin: str, message: str) -> None:
        self.metrics.frame_errors.labels(origin).inc()
        with self._lock:
            self._errors.appendleft({"at": time.time(), "origin": origin, "error": message})

    # -- what the web app reads ---------------------------------------------------------------
    def fps(self) -> float:
        with self._lock:
            return self._fps_locked()

    def _fps_locked(self) -> float:
        # frames scored over the last few seconds (not the whole window: the page should show
        # a stall as a falling rate)
        if len(self._times) < 2:
            return 0.0
        horizon = time.monotonic() - 5.0
        recent = [t for t in self._times if t >= horizon]
        if len(recent) < 2:
            return 0.0
        span = time.monotonic() - recent[0]
        return (len(recent) - 1) / span if span > 0 else 0.0

    def status(self) -> dict:
        with self._lock:
            latency = {s: round(v["p50"], 3) for s, v in self._stats.summary().items()}
            status = {
                "latest": self._latest,
                "fps": round(self._fps_locked(), 2),
                "frames": self.frames,
                "anomalies": self.anomalies,
                "latency_ms_p50": latency,
                "latency_window": len(self._stats),
                "recent_errors": list(self._errors)[:5],
            }
        status.update(
            {
                "source": self.capture.snapshot(),
                "dropped_frames": self.queue.dropped,
                "viewers": self.viewers,
                "queue": len(self.queue),
                "events": self.recorder.stats(),
                "model": {
                    "detector": self.manifest.detector,
                    "bundle": str(self.pipeline.bundle.root),
                    "backend": self.backend_name,
                    "precision": self.pipeline.precision,
                    "threshold": self.norm.image_threshold,
                },
                "uptime_s": round(time.time() - self.started_at, 1),
                "stopping": self.stopping,
            }
        )
        return status

    def events(self) -> list[dict]:
        with self._lock:
            return list(self._events)

    def latest_jpeg(self) -> tuple[int, bytes | None]:
        """(sequence number, JPEG) of the newest overlay; the number grows with each frame."""
        with self._jpeg_lock:
            return self._jpeg_seq, self._jpeg

    def begin_stop(self) -> None:
        """Tell streaming clients to finish (called on SIGINT/SIGTERM, before ``stop``)."""
        self.closing = True

    def predict_upload(self, data: bytes, name: str) -> dict:
        """Score one uploaded, already size-checked image; ImageDecodeError when it is bad."""
        from edgead.serve.uploads import decode_upload_with_channels

        try:
            image, channels = decode_upload_with_channels(data, name)
        except ImageDecodeError as exc:
            self._frame_error("upload", str(exc))
            raise
        result = self._predict(image, name)
        self.metrics.uploads.inc()
        return {
            "source": name,
            "score": result.image_score,
            "normalized_score": result.normalized_score,
            "verdict": result.label,
            "threshold": self.norm.image_threshold,
            "latency_ms": result.timings_ms,
            "map_max": float(result.anomaly_map.max()),
            # e.g. a grayscale image into a colour model
            "warnings": [w for w in [self.pipeline.channel_warning(channels)] if w],
        }
