"""Gating from the line without a network: a stream pauses while the line stands (a camera's
frames dropped and counted, a folder's files held, nothing of them lost), the line-state
values, the --gate URL, and a gate that cannot be read leaves the stream scoring."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("pydantic", reason="the gates' config needs the serve extra")

from edgead.errors import EdgeadError
from edgead.serve.capture import CaptureThread, FrameQueue
from edgead.serve.gates import Gate, gate_from_url
from edgead.serve.sources import FrameSource


class Counting(FrameSource):
    """Numbered frames, as fast as asked (live: a camera; not live: files)."""

    kind = "test"

    def __init__(self, live: bool, n: int | None = None):
        super().__init__("counting")
        self.live, self.n, self.i = live, n, 0

    def open(self):
        pass

    def read(self):
        if self.n is not None and self.i >= self.n:
            time.sleep(0.01)
            return None
        self.i += 1
        time.sleep(0.002)
        return f"frame-{self.i}", np.zeros((16, 16, 3), np.uint8)

    def close(self):
        pass


class Switch(Gate):
    def __init__(self):
        super().__init__()
        self.connected = True


def drain(q: FrameQueue, seconds: float) -> list[str]:
    got, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        frame = q.get(timeout=0.05)
        if frame is not None:
            got.append(frame.source_id)
    return got


def run_capture(source, gate, plan):
    """Run a capture thread through ``plan``: (line running?, seconds) steps; the frames the
    queue delivered in each step."""
    q = FrameQueue(4, drop_oldest=source.live)
    thread = CaptureThread(source, q)
    thread.gate = gate
    thread.start()
    steps = []
    try:
        for running, seconds in plan:
            gate._value(running)
            steps.append((drain(q, seconds), thread.snapshot()))
    finally:
        thread.stop()
        thread.join(5)
    return steps


def test_a_camera_pauses_while_the_line_stands_its_frames_dropped_and_counted():
    gate = Switch()
    steps = run_capture(Counting(live=True), gate, [(True, 0.3), (False, 0.5), (True, 0.3)])
    (before, _), (paused, during), (after, end) = steps
    assert before and after
    assert len(paused) <= 4, paused  # at most what was queued before the line stopped
    assert during["state"] == "paused" and during["paused_frames"] > 20, during
    assert end["state"] == "live"


def test_a_folder_waits_for_the_line_and_loses_nothing():
    gate = Switch()
    steps = run_capture(Counting(live=False, n=60), gate, [(True, 0.05), (False, 0.6), (True, 1.5)])
    seen = [f for got, _ in steps for f in got]
    assert seen == [f"frame-{i}" for i in range(1, 61)]  # every file, in order, once
    assert steps[1][1]["paused_frames"] == 0
    assert len(steps[1][0]) <= 6  # only what was read before the line stopped


@pytest.mark.parametrize(
    ("value", "running"),
    [
        (b"running", True),
        (b"STOPPED", False),
        (b" 1 ", True),
        (b"0", False),
        (True, True),
        (False, False),
        (0, False),
        (2.5, True),
        ("off", False),
        ("On", True),
    ],
)
def test_line_state_values(value, running):
    gate = Switch()
    gate._value(not running)  # from the other state
    gate._value(value)
    assert gate.running is running and gate() is running


def test_an_unknown_value_is_ignored_and_an_unread_gate_scores():
    gate = Switch()
    gate._value(b"stopped")
    gate._value(b"maintenance")
    assert gate.running is False and "unknown line state" in gate.stats()["last_error"]
    gate.connected = False  # its broker or server went away
    assert gate() is True and gate.stats()["scoring"] is True


def test_custom_values():
    gate = Gate(run_values=("AUTO",), stop_values=("MANUAL", "ESTOP"))
    gate.connected = True
    gate._value(b"estop")
    assert gate() is False
    gate._value(b"1")  # not one of this line's words
    assert gate() is False
    gate._value(b"auto")
    assert gate() is True


def test_gate_urls():
    assert gate_from_url("mqtt://plc.local/plant/line%201/state") == {
        "type": "mqtt",
        "host": "plc.local",
        "port": 1883,
        "topic": "plant/line 1/state",
    }
    assert gate_from_url("opc.tcp://plc:4840/srv#ns=2;s=Line1.Running") == {
        "type": "opcua",
        "url": "opc.tcp://plc:4840/srv",
        "node": "ns=2;s=Line1.Running",
    }
    for bad, why in (
        ("mqtt://plc.local", "expected mqtt://HOST"),
        ("opc.tcp://plc:4840", "#NODEID"),
        ("http://plc/x", "expected mqtt://"),
        ("mqtt://u:p@plc/x", "no credentials on the command line"),
    ):
        with pytest.raises(EdgeadError, match=why):
            gate_from_url(bad)
