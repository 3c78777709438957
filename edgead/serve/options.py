"""The settings of a server's streams (``edgead serve``, ``--config``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgead.runtime.drift import DriftSettings


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
