"""One stream of ``edgead serve``: its capture thread and drop-oldest queue, its verdict
threshold, and what it publishes (latest result, MJPEG overlay, events, Prometheus series).
Its frames are scored by the :class:`~edgead.serve.runner.BundleRunner` of its bundle."""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edgead.bundle.manifest import Normalization
from edgead.runtime.drift import DriftMonitor, DriftStatus
from edgead.runtime.pipeline import Prediction
from edgead.runtime.postprocess import normalize_score, overlay, verdict
from edgead.runtime.timing import LatencyStats
from edgead.serve.capture import Backoff, CaptureThread, Frame, FrameQueue
from edgead.serve.feedback import FeedbackStore
from edgead.serve.gates import Gate
from edgead.serve.recorder import EventRecorder
from edgead.serve.sinks import Sink, SinkSpec, send_verdict
from edgead.serve.sources import FrameSource

if TYPE_CHECKING:
    from edgead.serve.metrics import Metrics
    from edgead.serve.options import ServeOptions
    from edgead.serve.runner import BundleRunner

log = logging.getLogger("edgead.serve")


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
        sinks: list[SinkSpec] | tuple = (),
        gate: Gate | None = None,
    ):
        self.name = name
        self.source = source
        self.runner = runner
        self.options = o = options
        self.out_dir = Path(out_dir)
        self._own_threshold = threshold
        self.norm: Normalization = self._judged_by()
        self.drift = DriftMonitor.for_normalization(self.norm, o.drift, name)
        self._drift_state = self.drift.status().state
        self.feedback = FeedbackStore(self.out_dir / "confirmed", o.feedback_frames)
        # files are not frames: a folder (or a video not marked live) is scored whole
        self.queue = FrameQueue(o.queue_size, drop_oldest=source.live)
        source.keep_state(self.out_dir)
        self.on_failed: Callable[[Stream, str], None] = lambda stream, reason: None
        self.capture = CaptureThread(
            source,
            self.queue,
            Backoff(o.backoff_initial, o.backoff_max),
            on_frame_error=lambda message: self.frame_error("source", message),
            give_up_after=o.give_up_after,
            on_failed=lambda reason: self.on_failed(self, reason),
        )
        self.capture.name = f"edgead-capture-{name}"
        self.gate = gate  # the line's state pauses the capture (edgead.serve.gates)
        self.capture.gate = gate
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
        # verdicts to the line: each sink queues, spools and sends on its own threads
        self.sinks: list[Sink] = [spec.make(self.out_dir) for spec in sinks]
        now = time.time()
        self._run_id = (
            time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1e3) % 1000:03d}"
        )
        runner.attach(self)

    def _judged_by(self) -> Normalization:
        """The verdict's threshold: the bundle's (or the runner's --threshold) unless the
        stream sets its own; the runner scores, each stream judges."""
        base = self.runner.pipeline.normalization
        if self._own_threshold is None:
            return base
        return dataclasses.replace(base, image_threshold=float(self._own_threshold))

    def bundle_changed(self) -> None:
        """The runner loaded a new bundle revision: its threshold and drift reference."""
        self.norm = self._judged_by()
        self.drift = DriftMonitor.for_normalization(self.norm, self.options.drift, self.name)
        self._drift_state = self.drift.status().state

    @property
    def live(self) -> bool:
        return self.capture.state == "live"

    # -- lifecycle (called by the service) ------------------------------------------------------
    def start_writer(self) -> None:
        self._writer.start()
        for sink in self.sinks:
            sink.start()
        if self.gate is not None:
            self.gate.start()

    def stop_writer(self, timeout: float) -> None:
        if self._writer.ident is not None:  # started
            self._records.put(None)
            self._writer.join(timeout)
        for sink in self.sinks:  # what a sink cannot deliver in time stays in its spool
            sink.stop(min(timeout, 5.0))
        if self.gate is not None:
            self.gate.stop()

    # -- publishing -----------------------------------------------------------------------------
    def judge(self, result: Prediction) -> Prediction:
        """The result under this stream's threshold (the same object when it is the runner's)."""
        if self.norm is self.runner.pipeline.normalization:
            return result
        return dataclasses.replace(
            result,
            normalized_score=normalize_score(result.image_score, self.norm),
            label=verdict(result.image_score, self.norm, result.regions, self.runner.rules),
        )

    def publish(self, frame: Frame, result: Prediction, batch: int = 1) -> None:
        result = self.judge(result)
        anomalous = result.label == "anomalous"
        # the overlay is drawn only for someone: a stream viewer or an event to save
        start = time.perf_counter()
        over = (
            overlay(frame.image, result.anomaly_map, self.norm, regions=result.regions)
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
            "regions": [r.to_dict() for r in result.regions],
            "batch": batch,
            "latency_ms": {
                **result.timings_ms,
                **({"render": render_ms} if over is not None else {}),
            },
            "frame_age_ms": (now - frame.captured_at) * 1e3,
        }
        self.source.done(frame.source_id)
        frame_id = f"{self.name}-{self._run_id}-{frame.seq}"
        send_verdict(self.sinks, self.name, frame_id, entry, self.norm.image_threshold, self.runner)
        self.feedback.remember(frame.seq, frame.image, entry)
        checked = self.drift.add(result.image_score, anomalous)
        if checked is not None and (checked.state == "drift") != (self._drift_state == "drift"):
            self._drift_changed(checked)
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

    def _drift_changed(self, status: DriftStatus) -> None:
        """A drift alarm raised or cleared: logged and appended to OUT/<stream>/drift.jsonl."""
        self._drift_state = status.state  # only raised and cleared are events
        record = {"stream": self.name, "at": time.time(), **status.to_dict()}
        if status.state == "drift":
            log.warning("[%s] drift: %s. %s", self.name, "; ".join(status.alarms), status.advice)
        else:
            log.info("[%s] drift cleared at part %d", self.name, status.checked_at_part)
        try:
            with open(self.out_dir / "drift.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            log.error("[%s] could not write the drift event: %s", self.name, exc)

    def confirm(self, label: str, seq: int | None = None, event: str | None = None) -> dict:
        """An operator's confirmation of a recent frame (``seq``) or a saved event (``event``)."""
        revision = self.runner.pipeline.bundle.manifest.revision
        extra = {"threshold": self.norm.image_threshold, "bundle_revision": revision}
        return self.feedback.confirm_seen(label, seq, event, self.recorder, extra)

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
        status["drift"] = self.drift.status().to_dict()
        status["feedback"] = self.feedback.rates()
        pipeline = self.runner.pipeline
        status.update(
            {
                "source": self.capture.snapshot(),
                "dropped_frames": self.queue.dropped,
                "viewers": self.viewers,
                "queue": len(self.queue),
                "events": self.recorder.stats(),
                "sinks": [s.stats() for s in self.sinks],
                "gate": None if self.gate is None else self.gate.stats(),
                "model": {
                    "name": self.runner.name,
                    "detector": pipeline.bundle.manifest.detector,
                    "bundle": str(pipeline.bundle.root),
                    "backend": self.runner.backend_name,
                    "precision": pipeline.precision,
                    "threshold": self.norm.image_threshold,
                    "revision": pipeline.bundle.manifest.revision,
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
                "drift": self.drift.status().state,
                "drift_alarms": self.drift.status().alarms,
                "drift_notices": self.drift.status().notices,
                "sinks": [s.row() for s in self.sinks],
                "paused_frames": source["paused_frames"],
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
