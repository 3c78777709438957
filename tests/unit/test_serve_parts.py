"""The parts of `edgead serve` that need no model: queue, backoff, events, uploads, exposure."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="edgead serve needs the serve extra")

from edgead.errors import EdgeadError, ImageDecodeError
from edgead.serve.capture import Backoff, Frame, FrameQueue
from edgead.serve.recorder import EventRecorder
from edgead.serve.server import check_exposure, is_loopback
from edgead.serve.sources import FolderSource, FrameError, make_source
from edgead.serve.uploads import decode_upload


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming a huge image, with a tiny IDAT: a pixel bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def frame(seq: int) -> Frame:
    return Frame(seq, f"f{seq}", np.zeros((8, 8, 3), np.uint8), 0.0)


def test_queue_drops_the_oldest_frame_and_counts_it():
    q = FrameQueue(maxsize=2)
    assert [q.put(frame(i)) for i in range(5)] == [False, False, True, True, True]
    assert q.dropped == 3
    assert [q.get(0.01).seq for _ in range(2)] == [3, 4]
    assert q.get(0.01) is None


def test_backoff_doubles_up_to_its_cap_and_resets():
    b = Backoff(0.5, 3.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next() == 0.5


def _save(rec: EventRecorder, value: float) -> str:
    rgb = np.full((32, 32, 3), 100, np.uint8)
    amap = np.linspace(0, value, 32 * 32, dtype=np.float32).reshape(32, 32)
    event = rec.save(rgb, rgb[:, :, ::-1].copy(), amap, (0.0, 4.0), {"score": value})
    assert event is not None
    return event


def test_recorder_writes_complete_events_and_rotates_by_count(tmp_path: Path):
    rec = EventRecorder(tmp_path, max_events=3)
    ids = [_save(rec, v) for v in (1.0, 2.0, 3.0, 4.0, 5.0)]
    records = sorted(tmp_path.glob("*.json"))
    assert [p.stem for p in records] == ids[2:]
    assert len(list(tmp_path.iterdir())) == 3 * 4  # nothing else left behind
    record = json.loads(records[-1].read_text())
    assert record["score"] == 5.0
    saved_map = cv2.imread(str(tmp_path / record["files"]["map"]), cv2.IMREAD_UNCHANGED)
    assert saved_map.dtype == np.uint16
    # the 16-bit map and its scale give back the map (top value 5.0 is clipped to the scale's 4.0)
    restored = saved_map.astype(np.float32) / 65535 * 4.0
    assert restored.max() == pytest.approx(4.0, abs=1e-3)
    assert rec.stats()["rotated"] == 2
    assert rec.path_of(ids[0], "overlay") is None  # rotated away
    assert rec.path_of(ids[-1], "overlay") is not None
    assert rec.path_of("../../etc/passwd", "record") is None


def test_recorder_rotates_by_bytes_and_keeps_limits_across_restarts(tmp_path: Path):
    rec = EventRecorder(tmp_path, max_events=100)
    one = _save(rec, 1.0)
    size = rec.stats()["bytes_on_disk"]
    (tmp_path / "half-written.jpg.tmp").write_bytes(b"x")  # as a crash would leave it
    rec2 = EventRecorder(tmp_path, max_events=100, max_bytes=int(size * 2.5))
    assert rec2.stats()["events_on_disk"] == 1
    assert not list(tmp_path.glob("*.tmp"))
    for v in (2.0, 3.0, 4.0):
        _save(rec2, v)
    assert rec2.stats()["bytes_on_disk"] <= size * 2.5
    assert rec2.stats()["events_on_disk"] == 2
    assert rec2.path_of(one, "record") is None


def test_uploads_are_checked_before_decoding():
    _, buf = cv2.imencode(".png", np.full((40, 50, 3), 7, np.uint8))
    image = decode_upload(buf.tobytes(), "part.png")
    assert image.shape == (40, 50, 3)
    with pytest.raises(ImageDecodeError, match=r"bomb.png: .*over the limit"):
        decode_upload(png_header_only(100_000, 100_000), "bomb.png")
    with pytest.raises(ImageDecodeError, match=r"junk.bin: not a readable image"):
        decode_upload(b"\x00garbage" * 100, "junk.bin")
    with pytest.raises(ImageDecodeError, match=r"empty upload"):
        decode_upload(b"", "nothing.png")
    with pytest.raises(ImageDecodeError, match=r"wide.png: 9000x8000 pixels is over the limit"):
        decode_upload(png_header_only(9000, 8000), "wide.png")
    truncated = buf.tobytes()[: len(buf) // 2]
    with pytest.raises(ImageDecodeError, match=r"truncated.png"):
        decode_upload(truncated, "truncated.png")


def test_exposure_needs_a_token_off_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    check_exposure("127.0.0.1", None)
    check_exposure("0.0.0.0", "secret")
    with pytest.raises(EdgeadError, match=r"--host 0.0.0.0 .* set a token"):
        check_exposure("0.0.0.0", None)


def test_source_choice_is_validated():
    with pytest.raises(EdgeadError, match=r"exactly one source"):
        make_source(camera="0", video="a.avi")
    with pytest.raises(EdgeadError, match=r"device index"):
        make_source(camera="front")
    with pytest.raises(EdgeadError, match=r"expected a URL"):
        make_source(rtsp="camera-1")


def test_folder_source_reports_a_corrupt_file_and_reads_the_rest(tmp_path: Path):
    good = np.full((32, 32, 3), 90, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), good)
    (tmp_path / "b.png").write_bytes(b"not a png at all")
    cv2.imwrite(str(tmp_path / "c.png"), good)
    source = FolderSource(str(tmp_path), poll=0.01)
    source.open()
    got, errors = [], []
    for _ in range(5):
        try:
            item = source.read()
        except FrameError as exc:
            errors.append(str(exc))
            continue
        if item is not None:
            got.append(Path(item[0]).name)
    assert got == ["a.png", "c.png"]
    assert len(errors) == 1 and "b.png: not a readable image" in errors[0]


def test_files_are_not_frames_their_queue_waits_instead_of_dropping():
    import threading
    import time

    q = FrameQueue(maxsize=2, drop_oldest=False)
    assert not q.put(frame(1)) and not q.put(frame(2))
    done = threading.Event()

    def third():
        q.put(frame(3))
        done.set()

    threading.Thread(target=third, daemon=True).start()
    time.sleep(0.3)
    assert not done.is_set()  # waiting for room, not dropping
    assert q.get(0.01).seq == 1
    assert done.wait(2) and q.dropped == 0
    assert [q.get(0.01).seq for _ in range(2)] == [2, 3]
    stop = threading.Event()
    stop.set()
    q.put(frame(4))
    q.put(frame(5))
    assert q.put(frame(6), stop) is False and len(q) == 2  # a stop ends the wait


def test_a_folder_source_goes_on_where_the_last_run_stopped(tmp_path: Path):
    folder = tmp_path / "in"
    folder.mkdir()
    _, png = cv2.imencode(".png", np.zeros((16, 16, 3), np.uint8))
    for i in range(3):
        (folder / f"{i}.png").write_bytes(png.tobytes())
    (folder / "0b.png").write_bytes(b"not an image")  # reported, not retried later
    state = tmp_path / "state"
    first = FolderSource(str(folder), poll=0.01)
    first.keep_state(state)
    first.open()
    seen = []
    for _ in range(4):
        try:
            item = first.read()
        except FrameError:
            continue  # reported; finished with all the same
        seen.append(item[0])
        first.done(item[0])
        if len(seen) == 2:
            break  # "crash" after two scored files
    again = FolderSource(str(folder), poll=0.01)
    again.keep_state(state)
    again.open()
    rest = []
    while (item := again.read()) is not None:
        rest.append(Path(item[0]).name)
    assert [Path(s).name for s in seen] == ["0.png", "1.png"] and rest == ["2.png"]
    assert not first.live and make_source(video="x.avi").live is False
    assert make_source(video="x.avi", live=True).live and make_source(camera="0").live
