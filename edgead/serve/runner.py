"""One loaded bundle and the inference thread that scores the frames of all its streams as
batches: round-robin over the streams' queues, up to ``max_batch`` frames, waiting at most
``max_wait_ms`` from the batch's first frame, and not at all once every live stream has a
frame in it (a lost camera is never waited for). A batch that fails is scored again frame by
frame, so only the frame at fault is lost."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edgead.runtime.pipeline import Pipeline, Prediction
from edgead.serve.capture import Frame, FrameQueue

if TYPE_CHECKING:
    from edgead.serve.metrics import Metrics

log = logging.getLogger("edgead.serve")


class Stream(Protocol):
    """What a runner needs of a stream (``edgead.serve.stream.Stream``): its queue, whether it
    is live, and where its results and faults go. A protocol, so that the stream may know its
    runner without the runner importing the stream."""

    name: str
    queue: FrameQueue

    @property
    def live(self) -> bool: ...

    def publish(self, frame: Frame, result: Prediction, batch: int = 1) -> None: ...

    def frame_error(self, origin: str, message: str) -> None: ...

    def bundle_changed(self) -> None: ...


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
        self.rules = pipeline.rules
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

    def reload(self, path: str | Path | None = None) -> dict:
        """Swap in a new revision of the bundle (its folder read again, or ``path``) between
        batches: loaded and verified first, so a broken one leaves this one running."""
        new = self.pipeline.reopen(path)
        with self._predict_lock:
            old, self.pipeline = self.pipeline, new
            self.backend_name = new.describe()
            self.rules = new.rules
            for stream in self.streams:
                stream.bundle_changed()
        old.close()
        m = new.bundle.manifest
        log.info("[%s] loaded %s revision %d", self.name, new.bundle.root, m.revision)
        return {
            "bundle": self.name,
            "path": str(new.bundle.root),
            "revision": m.revision,
            "threshold": new.normalization.image_threshold,
        }

    def predict_one(self, image: np.ndarray, name: str) -> Prediction:
        with self._predict_lock:
            return self.pipeline.predict([image], sources=[name])[0]
