"""The sink every kind builds on: memory queue, spool, spooler and sender threads; and the
message (see the package's docstring)."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from pathlib import Path

from edgead.serve.spool import Spool

log = logging.getLogger("edgead.serve")

SCHEMA = "edgead.verdict/1"


def line_message(
    stream: str,
    frame_id: str,
    entry: dict,
    threshold: float,
    bundle: dict,
) -> dict:
    """The message every sink sends for a scored frame (``entry`` is the stream's result)."""
    captured = float(entry["captured_at"])
    return {
        "schema": SCHEMA,
        "stream": stream,
        "frame_id": frame_id,
        "seq": int(entry["seq"]),
        "source": entry.get("source"),
        "captured_at": captured,
        "captured_at_iso": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(captured))
        + f".{int((captured % 1) * 1000):03d}Z",
        "verdict": entry["verdict"],
        "score": float(entry["score"]),
        "normalized_score": float(entry["normalized_score"]),
        "threshold": float(threshold),
        "regions": entry.get("regions", []),
        "bundle": bundle,
        "latency_ms": float(sum(entry.get("latency_ms", {}).values())),
        "frame_age_ms": float(entry.get("frame_age_ms", 0.0)),
    }


def send_verdict(
    sinks: list, stream: str, frame_id: str, entry: dict, threshold: float, runner
) -> None:
    """Offer one scored frame's message to each of a stream's sinks (``runner``: the stream's
    BundleRunner, for the bundle's name, revision and detector)."""
    if not sinks:
        return
    manifest = runner.pipeline.bundle.manifest
    bundle = {"name": runner.name, "revision": manifest.revision, "detector": manifest.detector}
    message = line_message(stream, frame_id, entry, threshold, bundle)
    for sink in sinks:
        sink.offer(message)


class Sink:
    """One destination of one stream: memory queue, spool, spooler and sender threads."""

    kind = "sink"

    def __init__(
        self,
        name: str,
        spool_path: str | Path,
        queue_size: int = 1000,
        spool_max: int = 100_000,
        batch: int = 50,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
    ):
        self.name = name
        self.queue: queue.Queue = queue.Queue(queue_size)
        self.spool = Spool(spool_path, spool_max)
        self.batch = batch
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.sent = 0
        self.dropped_memory = 0  # the memory queue was full (the spooler is behind)
        self.rejected = 0  # refused by the receiver for good (e.g. HTTP 400): not retried
        self.errors = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.state = "connecting"
        self.offer_seconds = 0.0  # time spent on the scoring thread, in ``offer``
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._stop_deadline = 0.0
        self._spooler = threading.Thread(target=self._spool_loop, daemon=True)
        self._sender = threading.Thread(target=self._send_loop, daemon=True)
        if self.spool.recovered:
            log.info(
                "sink %s: %d undelivered messages from an earlier run go out first",
                name,
                self.spool.recovered,
            )

    # -- the scoring thread's side ----------------------------------------------------------------
    def offer(self, message: dict) -> None:
        """Queue a message; never blocks (a full memory queue drops it, counted)."""
        start = time.perf_counter()
        try:
            self.queue.put_nowait(message)
        except queue.Full:
            self.dropped_memory += 1
        self.offer_seconds += time.perf_counter() - start

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._spooler.name = f"edgead-spool-{self.name}"
        self._sender.name = f"edgead-send-{self.name}"
        self._spooler.start()
        self._sender.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Spool what is queued, give the sender up to ``timeout`` to deliver, then close; what
        is left stays in the spool for the next start."""
        self.queue.put(None)
        if self._spooler.ident is not None:
            self._spooler.join(timeout)
        self._stop_deadline = time.monotonic() + timeout
        self._stop.set()
        self._notify()
        if self._sender.ident is not None:
            self._sender.join(timeout + 1.0)
            if self._sender.is_alive():  # stuck in a delivery past its own timeout: leave it
                log.warning("sink %s: a delivery still hangs at stop; left behind", self.name)
                return
        self.close()
        self.spool.close()

    # -- threads -------------------------------------------------------------------------------
    def _spool_loop(self) -> None:
        while True:
            item = self.queue.get()
            items = [item]
            while item is not None and len(items) < 500:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                items.append(item)
            done = items[-1] is None
            bodies = [json.dumps(m, separators=(",", ":")) for m in items if m is not None]
            try:
                dropped = self.spool.put_many(bodies)
                if dropped:
                    log.warning(
                        "sink %s: spool full (%d messages): the %d oldest dropped",
                        self.name,
                        self.spool.max_messages,
                        dropped,
                    )
            except Exception as exc:  # a disk error: counted, the messages are lost
                self.dropped_memory += len(bodies)
                self._error(f"spool: {exc}")
            self._notify()
            if done:
                return

    def _send_loop(self) -> None:
        delay = self.backoff_initial
        while True:
            if self._stop.is_set() and (
                len(self.spool) == 0 or time.monotonic() > self._stop_deadline
            ):
                return
            rows = self.spool.peek(self.batch)
            if not rows:
                self._idle(0.5)
                continue
            try:
                if self.state != "connected":
                    self.connect()
                    self.state = "connected"
                    log.info("sink %s: connected", self.name)
                delivered = self._deliver_rows(rows)
                delay = self.backoff_initial
            except Exception as exc:
                delivered = getattr(exc, "delivered", None)
                if delivered is not None:
                    self.spool.remove_through(delivered)
                self._error(str(exc) or type(exc).__name__)
                if self.state == "connected":
                    log.warning("sink %s: disconnected (%s); spooling", self.name, exc)
                self.state = "disconnected"
                with contextlib.suppress(Exception):  # the connection is gone either way
                    self.close()
                if self._stop.is_set():  # stopping: a last short try until the deadline
                    time.sleep(min(delay, 0.2))
                else:
                    self._stop.wait(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            self.spool.remove_through(delivered)

    def _deliver_rows(self, rows: list[tuple[int, str]]) -> int:
        """Deliver rows in order; returns the last id acknowledged. On a failure, raises with
        ``.delivered`` set to the last id acknowledged before it (or None)."""
        last = None
        for row_id, body in rows:
            try:
                accepted = self.deliver(row_id, json.loads(body))
            except Exception as exc:
                exc.delivered = last  # type: ignore[attr-defined]
                raise
            if accepted:
                self.sent += 1
            else:
                self.rejected += 1
            last = row_id
        return last

    def _error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message
        self.last_error_at = time.time()

    def _notify(self) -> None:
        """Wake the sender: there is something in the spool (or a stop)."""
        self._wake.set()

    def _idle(self, seconds: float) -> None:
        """The sender's wait for work, up to ``seconds``."""
        self._wake.wait(seconds)
        self._wake.clear()

    # -- what a kind of sink implements -----------------------------------------------------------
    def connect(self) -> None:
        """Open the connection (raises when the receiver cannot be reached)."""

    def deliver(self, counter: int, message: dict) -> bool:
        """Send one message and wait for its acknowledgement. True: delivered; False: the
        receiver refused it for good (not retried, counted); raises to retry later."""
        raise NotImplementedError

    def close(self) -> None:
        """Drop the connection (the next delivery reconnects)."""

    def describe(self) -> str:
        return self.kind

    def row(self) -> dict:
        """The figures the overview page's row shows (``stats`` has them all)."""
        keep = ("name", "type", "state", "sent", "spooled", "dropped", "last_error")
        return {k: v for k, v in self.stats().items() if k in keep}

    def stats(self) -> dict:
        return {
            "name": self.name,
            "type": self.kind,
            "target": self.describe(),
            "state": self.state,
            "sent": self.sent,
            "spooled": len(self.spool),
            "recovered_at_start": self.spool.recovered,
            "dropped": self.spool.dropped + self.dropped_memory,
            "rejected": self.rejected,
            "errors": self.errors,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            # time the scoring thread spent handing messages to this sink, in all
            "offer_ms": round(self.offer_seconds * 1e3, 3),
        }
