"""Operator feedback: scored frames confirmed good or defective, kept for recalibration.

The operator marks a frame (the one on the live view, by its sequence number, or a saved
anomaly, by its event id) as good or defective. The frame is written losslessly as PNG to
``OUT/<stream>/confirmed/good/`` or ``.../defective/`` beside a JSON record (score, verdict,
threshold, bundle revision, when), atomically; marking a frame again moves it. From the
confirmations the stream shows the live false-reject rate (confirmed good parts the verdict
rejected) and detection rate (confirmed defective parts it caught), and
``edgead calibrate BUNDLE OUT/<stream>/confirmed/good`` sets a new threshold on the line's own
good parts. The counts are read back at start, so they survive a restart.

Frames are kept in memory only for the last ``keep`` scored frames (what an operator can see
on the live view when clicking); an event's frame is read from its saved JPEG.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgead.bundle.io import write_file_atomic
from edgead.serve.recorder import EventRecorder

LABELS = ("good", "defective")


class FeedbackError(Exception):
    """A confirmation that cannot be taken (unknown frame, bad label): said to the client."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class _Confirmed:
    label: str
    flagged: bool
    name: str  # file stem in the label's folder


class FeedbackStore:
    """Confirmed frames of one stream, and the live rates they give."""

    def __init__(self, folder: str | Path, keep: int = 16):
        self.folder = Path(folder)
        self.keep = keep
        self._recent: OrderedDict[int, tuple[np.ndarray, dict]] = OrderedDict()
        self._confirmed: dict[str, _Confirmed] = {}  # by file stem
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        for label in LABELS:
            for record in sorted((self.folder / label).glob("*.json")):
                try:
                    data = json.loads(record.read_text())
                except (OSError, ValueError):
                    continue  # a half-written record: its frame is not counted
                if (record.with_suffix(".png")).is_file():
                    self._confirmed[record.stem] = _Confirmed(
                        label, data.get("verdict") == "anomalous", record.stem
                    )

    def remember(self, seq: int, image: np.ndarray, entry: dict) -> None:
        """Keep a scored frame for a while (called for every published frame)."""
        with self._lock:
            self._recent[seq] = (image, entry)
            while len(self._recent) > self.keep:
                self._recent.popitem(last=False)

    def recent(self, seq: int) -> tuple[np.ndarray, dict] | None:
        with self._lock:
            return self._recent.get(seq)

    def confirm(self, label: str, image: np.ndarray, entry: dict, extra: dict) -> dict:
        """Write the frame and its record under ``label``; returns the record."""
        if label not in LABELS:
            raise FeedbackError(f"label {label!r}: expected 'good' or 'defective'")
        stem = f"{int(entry['captured_at'] * 1000):013d}_{entry['seq']:09d}"
        ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not ok:
            raise FeedbackError("could not encode the frame", 500)
        record = {
            "label": label,
            "confirmed_at": time.time(),
            **{k: entry.get(k) for k in ("stream", "seq", "source", "captured_at", "score")},
            "verdict": entry.get("verdict"),
            "regions": entry.get("regions", []),
            **extra,
        }
        folder = self.folder / label
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            before = self._confirmed.get(stem)
            write_file_atomic(folder / f"{stem}.png", png.tobytes())
            write_file_atomic(folder / f"{stem}.json", json.dumps(record, indent=1).encode())
            if before is not None and before.label != label:  # marked again: moved
                for suffix in (".json", ".png"):
                    (self.folder / before.label / f"{stem}{suffix}").unlink(missing_ok=True)
            self._confirmed[stem] = _Confirmed(label, record["verdict"] == "anomalous", stem)
        return record

    def confirm_seen(
        self, label: str, seq: int | None, event: str | None, recorder: EventRecorder, extra: dict
    ) -> dict:
        """Confirm a recent frame (``seq``) or a saved event (``event``, its JPEG frame)."""
        found = self.recent(seq) if seq is not None else None
        if found is None and event is not None:
            found = recorder.read_event(event)
        if found is None:
            what = f"frame {seq}" if seq is not None else f"event {event}"
            raise FeedbackError(f"{what} is no longer held (confirm a recent frame or event)", 404)
        image, entry = found
        record = self.confirm(label, image, entry, extra)
        return {"confirmed": record, "feedback": self.rates()}

    def rates(self) -> dict:
        """Confirmed counts and the live false-reject and detection rates from them."""
        with self._lock:
            good = [c for c in self._confirmed.values() if c.label == "good"]
            bad = [c for c in self._confirmed.values() if c.label == "defective"]
        false_rejects = sum(c.flagged for c in good)
        detected = sum(c.flagged for c in bad)
        return {
            "folder": str(self.folder),
            "confirmed_good": len(good),
            "false_rejects": false_rejects,
            "live_false_reject_rate": false_rejects / len(good) if good else None,
            "confirmed_defective": len(bad),
            "detected": detected,
            "live_detection_rate": detected / len(bad) if bad else None,
        }
