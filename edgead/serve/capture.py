"""The capture side of ``edgead serve``: a thread that reads a source into a bounded queue.

For a live source (a camera, a stream), when inference is slower than the source the queue
drops its *oldest* frame for each new one and counts the drop: the line wants the newest frame
scored, not a growing backlog. The standard library's queue.Queue blocks or refuses the
*newest* item when full, so the few lines of drop-oldest logic are written here. Files are not
frames: for a folder (or a video not marked live) the capture waits for room instead, and
every file is scored.

A source that has never opened (a wrong path, a file no decoder reads, a camera that is not
there) is retried with backoff for ``give_up_after`` seconds, then the stream is ``failed``
with the reason; one that was live and is lost is retried for as long as the server runs (a
camera being power-cycled comes back).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgead.serve.sources import FrameError, FrameSource, SourceLostError

log = logging.getLogger("edgead.serve")


@dataclass
class Frame:
    seq: int
    source_id: str
    image: np.ndarray
    captured_at: float  # time.time()


class FrameQueue:
    """Bounded, drop-oldest, thread-safe."""

    def __init__(self, maxsize: int = 2, drop_oldest: bool = True):
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self._items: deque[Frame] = deque()
        self._maxsize = maxsize
        self.drop_oldest = drop_oldest
        self._cond = threading.Condition()
        self.dropped = 0
        # called after each put, outside the queue's lock: a runner that serves several
        # queues waits on its own condition, not on each queue's
        self.listener: Callable[[], None] | None = None

    def put(self, frame: Frame, stop: threading.Event | None = None) -> bool:
        """Add a frame; True when an older one was dropped to make room. Without
        ``drop_oldest``, wait for room instead (until ``stop`` is set: then the frame is not
        added and False is returned)."""
        with self._cond:
            while not self.drop_oldest and len(self._items) >= self._maxsize:
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.1)
            dropped = len(self._items) >= self._maxsize
            if dropped:
                self._items.popleft()
                self.dropped += 1
            self._items.append(frame)
            self._cond.notify_all()
        if self.listener is not None:
            self.listener()
        return dropped

    def get(self, timeout: float) -> Frame | None:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._take()

    def get_nowait(self) -> Frame | None:
        with self._cond:
            return self._take()

    def _take(self) -> Frame | None:
        if not self._items:
            return None
        self._cond.notify_all()  # a waiting capture has room now
        return self._items.popleft()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


@dataclass
class Backoff:
    """Exponential reconnect delays: initial, doubled after each failure, capped."""

    initial: float = 0.5
    maximum: float = 10.0
    _next: float = field(default=0.0, init=False)

    def next(self) -> float:
        delay = self._next or self.initial
        self._next = min(delay * 2.0, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = 0.0


@dataclass
class SourceStatus:
    # connecting | live | paused | reconnecting | ended | failed | stopped
    state: str = "connecting"
    name: str = ""
    reconnects: int = 0  # successful re-opens after a loss
    attempts: int = 0  # failed opens since the last success
    last_error: str | None = None
    next_retry_s: float | None = None
    frames: int = 0
    frame_errors: int = 0
    paused_frames: int = 0  # read and dropped while the line's gate said stopped
    since: float = field(default_factory=time.time)

    def as_dict(self) -> dict:
        return {
            "state": self.state,
            "name": self.name,
            "reconnects": self.reconnects,
            "failed_attempts": self.attempts,
            "last_error": self.last_error,
            "next_retry_s": self.next_retry_s,
            "frames": self.frames,
            "frame_errors": self.frame_errors,
            "paused_frames": self.paused_frames,
            "state_since": self.since,
        }


class CaptureThread(threading.Thread):
    """Reads ``source`` into ``queue`` until stopped; reconnects with backoff when it is lost."""

    def __init__(
        self,
        source: FrameSource,
        queue: FrameQueue,
        backoff: Backoff | None = None,
        on_frame_error: callable | None = None,
        give_up_after: float | None = None,
        on_failed: Callable[[str], None] | None = None,
    ):
        super().__init__(name="edgead-capture", daemon=True)
        self.source = source
        self.queue = queue
        self.backoff = backoff or Backoff()
        self.status = SourceStatus(name=source.name)
        self.on_frame_error = on_frame_error or (lambda message: None)
        self.give_up_after = give_up_after
        self.on_failed = on_failed or (lambda reason: None)
        self._first_attempt: float | None = None
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._seq = 0
        # the line's gate (edgead.serve.gates): False while the line stands; then a live
        # source is read and its frames dropped (counted), a folder or video waits unread
        self.gate: Callable[[], bool] | None = None

    def stop(self) -> None:
        self._stop_event.set()

    def snapshot(self) -> dict:
        with self._lock:
            return self.status.as_dict()

    @property
    def state(self) -> str:
        """The state alone (the batching runner asks it of every stream, per batch)."""
        with self._lock:
            return self.status.state

    def _set(self, state: str, error: str | None = None, retry: float | None = None) -> None:
        with self._lock:
            if state != self.status.state:
                self.status.since = time.time()
            self.status.state = state
            if error is not None:
                self.status.last_error = error
            self.status.next_retry_s = retry

    def _open(self, ever_opened: bool, replay: bool) -> bool:
        try:
            self.source.open()
        except SourceLostError as exc:
            now = time.monotonic()
            self._first_attempt = self._first_attempt or now
            waited = now - self._first_attempt
            if not ever_opened and self.give_up_after is not None and waited >= self.give_up_after:
                reason = f"{exc} (gave up after {waited:.0f} s of retries, --give-up-after)"
                self._set("failed", reason)
                log.error("source %s failed: %s", self.source.name, reason)
                self._stop_event.set()
                self.on_failed(reason)
                return False
            delay = self.backoff.next()
            with self._lock:
                self.status.attempts += 1
            self._set("reconnecting" if ever_opened else "connecting", str(exc), delay)
            log.warning("%s; retrying in %.1f s", exc, delay)
            self._stop_event.wait(delay)
            return False
        self.backoff.reset()
        with self._lock:
            if ever_opened and not replay:
                self.status.reconnects += 1
            self.status.attempts = 0
        self._set("live")
        if not replay:
            log.info("source %s is live", self.source.name)
        return True

    def _gate_open(self) -> bool:
        """Whether the line runs (always, without a gate); keeps the state in step."""
        if self.gate is None:
            return True
        running = bool(self.gate())
        state = self.state
        if not running and state == "live":
            self._set("paused")
            log.info("source %s paused: the line stands", self.source.name)
        elif running and state == "paused":
            self._set("live")
            log.info("source %s resumed: the line runs", self.source.name)
        return running

    def run(self) -> None:
        opened = False
        ever_opened = False
        replay = False  # reopening a looped video after its end: not a reconnect
        next_due = 0.0
        try:
            while not self._stop_event.is_set():
                if not opened:
                    if getattr(self.source, "ended", False):
                        self._set("ended", "end of video (use --loop to replay it)")
                        self._stop_event.wait(0.5)
                        continue
                    opened = self._open(ever_opened, replay)
                    replay = False  # a failed reopen makes the next success a reconnect
                    ever_opened = ever_opened or opened
                    continue
                if not self.source.live and not self._gate_open():
                    self._stop_event.wait(0.1)  # files wait for the line, nothing is lost
                    continue
                try:
                    item = self.source.read()
                except FrameError as exc:
                    with self._lock:
                        self.status.frame_errors += 1
                    log.warning("skipped a frame: %s", exc)
                    self.on_frame_error(str(exc))
                    continue
                except SourceLostError as exc:
                    opened = False
                    self.source.close()
                    replay = exc.end_of_stream
                    if not exc.end_of_stream:
                        self._set("reconnecting", str(exc))
                        log.warning("source lost: %s", exc)
                    continue
                if item is None:
                    continue
                source_id, image = item
                # the line stands: a camera's frame is not a part (a file read already goes on)
                if self.source.live and not self._gate_open():
                    with self._lock:
                        self.status.paused_frames += 1
                    continue
                # pace file sources at their frame rate: a replayed video stands in for a camera
                interval = self.source.frame_interval
                if interval > 0:
                    now = time.monotonic()
                    next_due = max(next_due + interval, now) if next_due else now
                    if next_due > now:
                        self._stop_event.wait(next_due - now)
                self._seq += 1
                with self._lock:
                    self.status.frames += 1
                self.queue.put(Frame(self._seq, source_id, image, time.time()), self._stop_event)
        finally:
            self.source.close()
            if self.state != "failed":
                self._set("stopped")
