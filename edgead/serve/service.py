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

import dataclasses
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

from edgead.bundle.manifest import Normalization
from edgead.errors import ImageDecodeError
from edgead.runtime.pipeline import Pipeline, Prediction
from edgead.runtime.postprocess import normalize_score, overlay, verdict
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
    # frames of the streams sharing a bundle scored as one batch (a config's default is 8; one
    # stream alone scores frame by frame, as it always has)
    max_batch: int = 1
    max_wait_ms: float = 10.0  # longest a first frame waits for the batch to fill


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
        for stream in self.service.streams:
            key = [stream.name, stream.runner.name]
            status = stream.capture.snapshot()
            dropped.add_metric(key, stream.queue.dropped)
            reconnects.add_metric(key, status["reconnects"])
            up.add_metric(key, 1.0 if status["state"] == "live" else 0.0)
            fps.add_metric(key, stream.fps())
        return [dropped, reconnects, up, fps]


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


class Stream:
    """One source: its capture thread and queue, its verdict threshold, what it publishes."""

    def __init__(
        self,
        name: str,
        source: FrameSource,
        runner: BundleRunner,
        out_dir: str | Path,
        options: ServeOptions,
        threshold: float | None = None,
    ):
        self.name = name
        self.source = source
        self.runner = runner
        self.options = o = options
        # the verdict's threshold: the bundle's (or the runner's --threshold) unless the stream
        # sets its own; the runner scores, each stream judges
        base = runner.pipeline.normalization
        self.norm: Normalization = (
            dataclasses.replace(base, image_threshold=float(threshold))
            if threshold is not None
            else base
        )
        self.queue = FrameQueue(o.queue_size)
        self.capture = CaptureThread(
            source,
            self.queue,
            Backoff(o.backoff_initial, o.backoff_max),
            on_frame_error=lambda message: self.frame_error("source", message),
        )
        self.capture.name = f"edgead-capture-{name}"
        self.recorder = EventRecorder(Path(out_dir) / "events", o.max_events, o.max_bytes)
        self.metrics: Metrics | None = None  # set by the service
        self._lock = threading.Lock()  # guards the published state below
        self._jpeg_lock = threading.Lock()
        self.viewers = 0  # MJPEG clients connected (changed on the web server's event loop)
        self._latest: dict | None = None
        self._jpeg: bytes | None = None
        self._jpeg_seq = 0
        self._stats = LatencyStats(window=o.window)
        self._times: deque[float] = deque(maxlen=o.window)
        # capture to result: queue wait, batch wait and inference (what a line waits for)
        self._ages: deque[float] = deque(maxlen=o.window)
        self._events: deque[dict] = deque(maxlen=o.recent_events)
        self._errors: deque[dict] = deque(maxlen=20)
        self.frames = 0
        self.anomalies = 0
        self._records: queue.Queue = queue.Queue(o.record_queue)
        self._writer = threading.Thread(
            target=self._write_loop, name=f"edgead-writer-{name}", daemon=True
        )
        runner.attach(self)

    @property
    def live(self) -> bool:
        return self.capture.snapshot()["state"] == "live"

    # -- lifecycle (called by the service) ------------------------------------------------------
    def start_writer(self) -> None:
        self._writer.start()

    def stop_writer(self, timeout: float) -> None:
        if self._writer.ident is not None:  # started
            self._records.put(None)
            self._writer.join(timeout)

    # -- publishing -----------------------------------------------------------------------------
    def judge(self, result: Prediction) -> Prediction:
        """The result under this stream's threshold (the same object when it is the runner's)."""
        if self.norm is self.runner.pipeline.normalization:
            return result
        return dataclasses.replace(
            result,
            normalized_score=normalize_score(result.image_score, self.norm),
            label=verdict(result.image_score, self.norm),
        )

    def publish(self, frame: Frame, result: Prediction, batch: int = 1) -> None:
        result = self.judge(result)
        anomalous = result.label == "anomalous"
        # the overlay is drawn only for someone: a stream viewer or an event to save
        start = time.perf_counter()
        over = (
            overlay(frame.image, result.anomaly_map, self.norm)
            if self.viewers or anomalous
            else None
        )
        buf = None
        if over is not None and self.viewers:
            ok, encoded = cv2.imencode(
                ".jpg", over, [cv2.IMWRITE_JPEG_QUALITY, self.options.jpeg_quality]
            )
            buf = encoded if ok else None
        render_ms = (time.perf_counter() - start) * 1e3
        now = time.time()
        entry = {
            "stream": self.name,
            "seq": frame.seq,
            "source": frame.source_id,
            "captured_at": frame.captured_at,
            "scored_at": now,
            "score": result.image_score,
            "normalized_score": result.normalized_score,
            "verdict": result.label,
            "batch": batch,
            "latency_ms": {
                **result.timings_ms,
                **({"render": render_ms} if over is not None else {}),
            },
            "frame_age_ms": (now - frame.captured_at) * 1e3,
        }
        m = self.metrics
        labels = (self.name, self.runner.name)
        m.frames.labels(*labels).inc()
        m.score.labels(*labels).set(result.image_score)
        for stage, ms in entry["latency_ms"].items():
            m.stage.labels(*labels, stage).observe(ms / 1e3)
        with self._lock:
            self.frames += 1
            self._latest = entry
            self._stats.add(entry["latency_ms"])
            self._ages.append(entry["frame_age_ms"])
            self._times.append(time.monotonic())
            if anomalous:
                self.anomalies += 1
        if anomalous:
            m.anomalies.labels(*labels).inc()
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
            self.metrics.events_lost.labels(self.name, self.runner.name).inc()
            log.warning(
                "[%s] event writer is behind: anomalous frame %s not saved",
                self.name,
                entry["source"],
            )

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
                "bundle": str(self.runner.pipeline.bundle.root),
                "detector": self.runner.pipeline.bundle.manifest.detector,
                "threshold": self.norm.image_threshold,
            }
            event_id = self.recorder.save(image, over, amap, scale, record)
            if event_id is None:
                self.metrics.events_lost.labels(self.name, self.runner.name).inc()
                continue
            with self._lock:
                self._events.appendleft({**entry, "id": event_id})

    def frame_error(self, origin: str, message: str) -> None:
        if self.metrics is not None:
            self.metrics.frame_errors.labels(self.name, origin).inc()
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

    def status(self, stopping: bool = False, started_at: float | None = None) -> dict:
        with self._lock:
            latency = {s: round(v["p50"], 3) for s, v in self._stats.summary().items()}
            ages = np.asarray(self._ages, np.float64)
            status = {
                "stream": self.name,
                "latest": self._latest,
                "fps": round(self._fps_locked(), 2),
                "frames": self.frames,
                "anomalies": self.anomalies,
                "latency_ms_p50": latency,
                "frame_age_ms": (
                    {
                        "p50": round(float(np.percentile(ages, 50)), 3),
                        "p99": round(float(np.percentile(ages, 99)), 3),
                    }
                    if ages.size
                    else None
                ),
                "latency_window": len(self._stats),
                "recent_errors": list(self._errors)[:5],
            }
        pipeline = self.runner.pipeline
        status.update(
            {
                "source": self.capture.snapshot(),
                "dropped_frames": self.queue.dropped,
                "viewers": self.viewers,
                "queue": len(self.queue),
                "events": self.recorder.stats(),
                "model": {
                    "name": self.runner.name,
                    "detector": pipeline.bundle.manifest.detector,
                    "bundle": str(pipeline.bundle.root),
                    "backend": self.runner.backend_name,
                    "precision": pipeline.precision,
                    "threshold": self.norm.image_threshold,
                    "max_batch": self.runner.max_batch,
                    "max_wait_ms": self.runner.max_wait_s * 1e3,
                },
                "stopping": stopping,
            }
        )
        if started_at is not None:
            status["uptime_s"] = round(time.time() - started_at, 1)
        return status

    def summary(self) -> dict:
        """The overview page's row: state, last score, verdict, frames/s, drops."""
        with self._lock:
            latest = self._latest
            row = {
                "stream": self.name,
                "bundle": self.runner.name,
                "fps": round(self._fps_locked(), 2),
                "frames": self.frames,
                "anomalies": self.anomalies,
                "score": latest["score"] if latest else None,
                "verdict": latest["verdict"] if latest else None,
                "last_scored_at": latest["scored_at"] if latest else None,
                "errors": len(self._errors),
            }
        source = self.capture.snapshot()
        row.update(
            {
                "source": source["name"],
                "state": source["state"],
                "last_error": source["last_error"],
                "frame_errors": source["frame_errors"],
                "dropped_frames": self.queue.dropped,
                "threshold": self.norm.image_threshold,
            }
        )
        return row

    def events(self) -> list[dict]:
        with self._lock:
            return list(self._events)

    def frame_ages(self) -> list[float]:
        """Capture-to-result times (ms) of the frames in the window, oldest first."""
        with self._lock:
            return list(self._ages)

    def latest_jpeg(self) -> tuple[int, bytes | None]:
        """(sequence number, JPEG) of the newest overlay; the number grows with each frame."""
        with self._jpeg_lock:
            return self._jpeg_seq, self._jpeg

    def predict_upload(self, data: bytes, name: str) -> dict:
        """Score one uploaded, already size-checked image; ImageDecodeError when it is bad."""
        from edgead.serve.uploads import decode_upload_with_channels

        try:
            image, channels = decode_upload_with_channels(data, name)
        except ImageDecodeError as exc:
            self.frame_error("upload", str(exc))
            raise
        result = self.judge(self.runner.predict_one(image, name))
        self.metrics.uploads.labels(self.name, self.runner.name).inc()
        return {
            "stream": self.name,
            "source": name,
            "score": result.image_score,
            "normalized_score": result.normalized_score,
            "verdict": result.label,
            "threshold": self.norm.image_threshold,
            "latency_ms": result.timings_ms,
            "map_max": float(result.anomaly_map.max()),
            # e.g. a grayscale image into a colour model
            "warnings": [w for w in [self.runner.pipeline.channel_warning(channels)] if w],
        }


class BundleRunner:
    """One loaded bundle and the inference thread that scores its streams' frames in batches."""

    def __init__(self, name: str, pipeline: Pipeline, max_batch: int = 8, max_wait_ms: float = 10):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.name = name
        self.pipeline = pipeline
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, max_wait_ms) / 1e3
        self.backend_name = pipeline.describe()
        self.streams: list[Stream] = []
        self.metrics: Metrics | None = None
        self.batches = 0
        self._wake = threading.Condition()
        self._pending = False
        self._next = 0  # round-robin start, so no stream is always first in a batch
        self._predict_lock = threading.Lock()  # the pipeline is shared with uploads
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"edgead-infer-{name}", daemon=True)

    def attach(self, stream: Stream) -> None:
        self.streams.append(stream)
        stream.queue.listener = self._notify

    def _notify(self) -> None:
        with self._wake:
            self._pending = True
            self._wake.notify()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._notify()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)

    def close(self) -> None:
        self.pipeline.close()

    # -- batching -------------------------------------------------------------------------------
    def _take(self, batch: list[tuple[Stream, Frame]]) -> None:
        """Round-robin over the streams, oldest frame first, until the batch is full or every
        queue is empty."""
        n = len(self.streams)
        took = True
        while took and len(batch) < self.max_batch:
            took = False
            for k in range(n):
                stream = self.streams[(self._next + k) % n]
                frame = stream.queue.get_nowait()
                if frame is not None:
                    batch.append((stream, frame))
                    took = True
                    if len(batch) >= self.max_batch:
                        break
        self._next = (self._next + 1) % max(n, 1)

    def _complete(self, batch: list[tuple[Stream, Frame]]) -> bool:
        """Full, or holding a frame of every live stream (no other frame is on its way soon)."""
        if len(batch) >= self.max_batch:
            return True
        have = {id(s) for s, _ in batch}
        return all(id(s) in have for s in self.streams if s.live)

    def collect(self, idle_timeout: float = 0.2) -> list[tuple[Stream, Frame]]:
        """The next batch: waits for a first frame (up to ``idle_timeout``), then at most
        ``max_wait_ms`` from that frame for the batch to fill; [] when nothing came."""
        batch: list[tuple[Stream, Frame]] = []
        idle_until = time.monotonic() + idle_timeout
        fill_until: float | None = None  # set when the batch's first frame is taken
        while not self._stop.is_set():
            with self._wake:
                self._pending = False
            self._take(batch)
            now = time.monotonic()
            if batch:
                if fill_until is None:
                    fill_until = now + self.max_wait_s
                if self._complete(batch) or now >= fill_until:
                    return batch
                timeout = fill_until - now
            else:
                if now >= idle_until:  # nothing came: let the caller look at its stop flag
                    return batch
                timeout = idle_until - now
            with self._wake:
                if not self._pending:
                    self._wake.wait(timeout)
        return batch

    def _loop(self) -> None:
        while not self._stop.is_set():
            batch = self.collect()
            if batch:
                self.score(batch)

    def score(self, batch: list[tuple[Stream, Frame]]) -> None:
        """Score a batch and publish each frame to its stream; a failing batch is scored
        again frame by frame, so only the frame at fault is lost (reported to its stream)."""
        try:
            with self._predict_lock:
                results = self.pipeline.predict(
                    [f.image for _, f in batch], sources=[f.source_id for _, f in batch]
                )
        except Exception as exc:
            if len(batch) > 1:
                for item in batch:
                    self.score([item])
                return
            stream, frame = batch[0]
            log.warning("[%s] could not score %s: %s", stream.name, frame.source_id, exc)
            stream.frame_error("inference", f"{frame.source_id}: {exc}")
            return
        self.batches += 1
        if self.metrics is not None:
            self.metrics.batch.labels(self.name).observe(len(batch))
        for (stream, frame), result in zip(batch, results, strict=True):
            try:
                stream.publish(frame, result, len(batch))
            except Exception as exc:
                log.exception("[%s] could not publish %s", stream.name, frame.source_id)
                stream.frame_error("publish", f"{frame.source_id}: {exc}")

    def predict_one(self, image: np.ndarray, name: str) -> Prediction:
        with self._predict_lock:
            return self.pipeline.predict([image], sources=[name])[0]


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
        return cls([runner], [Stream(name, source, runner, out_dir, o)])

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

    def totals(self) -> dict:
        return {
            "frames": sum(s.frames for s in self.streams),
            "anomalies": sum(s.anomalies for s in self.streams),
            "dropped": sum(s.queue.dropped for s in self.streams),
            "bad_frames": sum(s.capture.snapshot()["frame_errors"] for s in self.streams),
            "events": sum(s.recorder.written for s in self.streams),
        }
