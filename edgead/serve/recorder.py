"""Anomalous frames to disk: the frame, its heat-map overlay, its raw map and a JSON record.

Each event is ``<id>.jpg`` (the frame), ``<id>_overlay.jpg``, ``<id>_map.png`` (the anomaly
map as 16-bit PNG, scaled by ``map_scale`` in the record) and ``<id>.json``. Every file is
written to a temporary name and renamed, and the JSON record is written last: an event with a
record is complete, so a crash or power cut leaves at most stray ``.tmp`` files, which are
removed at the next start. The folder is kept under a count and a byte limit by deleting the
oldest events.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgead.bundle.io import write_file_atomic

log = logging.getLogger("edgead.serve")

EVENT_ID = re.compile(r"^\d{8}T\d{6}_\d{3}_\d{6}$")
_SUFFIXES = (".jpg", "_overlay.jpg", "_map.png", ".json")


@dataclass
class _Event:
    event_id: str
    nbytes: int


def _encode(ext: str, image: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, image, params or [])
    if not ok:
        raise OSError(f"could not encode {ext}")
    return buf.tobytes()


class EventRecorder:
    """Writes events to ``folder``, keeping at most ``max_events`` and ``max_bytes``."""

    def __init__(self, folder: str | Path, max_events: int = 1000, max_bytes: int = 512 << 20):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._events: deque[_Event] = deque()
        self._bytes = 0
        self._counter = 0
        self.written = 0
        self.rotated = 0
        self.errors = 0
        self._load()

    def _files(self, event_id: str) -> list[Path]:
        return [self.folder / f"{event_id}{s}" for s in _SUFFIXES]

    def _load(self) -> None:
        """Pick up the events of an earlier run (so the limits hold across restarts)."""
        for tmp in self.folder.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        for record in sorted(self.folder.glob("*.json")):
            event_id = record.stem
            if not EVENT_ID.match(event_id):
                continue
            size = sum(p.stat().st_size for p in self._files(event_id) if p.exists())
            self._events.append(_Event(event_id, size))
            self._bytes += size
        self._rotate()

    def _new_id(self) -> str:
        now = time.time()
        self._counter = (self._counter + 1) % 1_000_000
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
        return f"{stamp}_{int(now * 1000) % 1000:03d}_{self._counter:06d}"

    def save(
        self,
        frame_rgb: np.ndarray,
        overlay_bgr: np.ndarray,
        amap: np.ndarray,
        map_scale: tuple[float, float],
        record: dict,
    ) -> str | None:
        """Write one event; returns its id, or None when the disk refused (counted, logged)."""
        with self._lock:
            event_id = self._new_id()
            try:
                lo, hi = map_scale
                scaled = np.clip((amap - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
                nbytes = write_file_atomic(
                    self.folder / f"{event_id}.jpg",
                    _encode(
                        ".jpg",
                        cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 92],
                    ),
                )
                nbytes += write_file_atomic(
                    self.folder / f"{event_id}_overlay.jpg", _encode(".jpg", overlay_bgr)
                )
                nbytes += write_file_atomic(
                    self.folder / f"{event_id}_map.png",
                    _encode(".png", (scaled * 65535.0 + 0.5).astype(np.uint16)),
                )
                full = {
                    "id": event_id,
                    **record,
                    "files": {
                        "frame": f"{event_id}.jpg",
                        "overlay": f"{event_id}_overlay.jpg",
                        "map": f"{event_id}_map.png",
                    },
                    "map_scale": {"min": float(lo), "max": float(hi), "png_max": 65535},
                }
                nbytes += write_file_atomic(
                    self.folder / f"{event_id}.json", json.dumps(full, indent=1).encode()
                )
            except OSError as exc:
                self.errors += 1
                log.error("could not save event %s in %s: %s", event_id, self.folder, exc)
                for path in self._files(event_id):
                    path.unlink(missing_ok=True)
                return None
            self._events.append(_Event(event_id, nbytes))
            self._bytes += nbytes
            self.written += 1
            self._rotate()
            return event_id

    def _rotate(self) -> None:
        while self._events and (
            len(self._events) > self.max_events or self._bytes > self.max_bytes
        ):
            old = self._events.popleft()
            # the record goes first: a half-deleted event is never taken for a complete one
            for path in reversed(self._files(old.event_id)):
                path.unlink(missing_ok=True)
            self._bytes -= old.nbytes
            self.rotated += 1

    def stats(self) -> dict:
        with self._lock:
            return {
                "folder": str(self.folder),
                "events_on_disk": len(self._events),
                "bytes_on_disk": self._bytes,
                "written": self.written,
                "rotated": self.rotated,
                "write_errors": self.errors,
                "max_events": self.max_events,
                "max_bytes": self.max_bytes,
            }

    def read_event(self, event_id: str) -> tuple[np.ndarray, dict] | None:
        """An event's frame (RGB, from its JPEG) and record; None when unknown or rotated."""
        frame_path = self.path_of(event_id, "frame")
        record_path = self.path_of(event_id, "record")
        if frame_path is None or record_path is None:
            return None
        image = cv2.imread(str(frame_path), cv2.IMREAD_COLOR)
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            return None
        if image is None:
            return None
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), record

    def path_of(self, event_id: str, kind: str) -> Path | None:
        """An event's file by kind (frame|overlay|map|record), None when unknown or rotated."""
        if not EVENT_ID.match(event_id):
            return None
        suffix = {"frame": ".jpg", "overlay": "_overlay.jpg", "map": "_map.png", "record": ".json"}
        if kind not in suffix:
            return None
        path = self.folder / f"{event_id}{suffix[kind]}"
        return path if path.is_file() else None
