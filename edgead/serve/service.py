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
from pathlib import Path

from edgead.runtime.pipeline import Pipeline
from edgead.serve.metrics import Metrics
from edgead.serve.options import ServeOptions
from edgead.serve.runner import BundleRunner
from edgead.serve.sources import FrameSource
from edgead.serve.stream import Stream

__all__ = ["BundleRunner", "Metrics", "ServeOptions", "Service", "Stream"]

log = logging.getLogger("edgead.serve")


class Service:
    """The streams and bundle runners of one server: starts, stops and reports them."""

    def __init__(self, runners: list[BundleRunner], streams: list[Stream]):
        if not streams:
            raise ValueError("a service needs at least one stream")
        self.runners = runners
        self.streams = streams
        self.by_name = {s.name: s for s in streams}
        self.metrics = Metrics(lambda: self.streams)
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
