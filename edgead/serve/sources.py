"""Frame sources for ``edgead serve``: a camera, a video file, an RTSP/HTTP stream or a folder.

A source is opened, read frame by frame and closed. Reading distinguishes three outcomes that
the capture loop treats differently:

- a frame (RGB uint8, HxWx3);
- :class:`FrameError`: this one frame is bad (a corrupt image in a folder, an empty or
  malformed decode); it is reported and skipped, the source stays open;
- :class:`SourceLostError`: the source is gone (camera unplugged, stream dropped, file removed, end
  of a video that is not looped); the capture loop closes it and reconnects with backoff.

``read`` may also return ``None`` for "no frame yet" (a watched folder with nothing new).
OpenCV's VideoCapture (FFmpeg/V4L2/GStreamer underneath) does the decoding; nothing here
parses a container or a protocol.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from pathlib import Path

import cv2
import numpy as np

from edgead.data.images import IMAGE_SUFFIXES, read_image, to_rgb8
from edgead.errors import EdgeadError, ImageDecodeError


class SourceLostError(EdgeadError):
    """The source cannot deliver frames (now); reconnecting may help.

    ``end_of_stream``: a video file reached its end (not a fault: it is replayed or stops).
    """

    def __init__(self, message: str, end_of_stream: bool = False):
        super().__init__(message)
        self.end_of_stream = end_of_stream


class FrameError(EdgeadError):
    """One frame could not be used; the next one may be fine."""


class FrameSource(ABC):
    """One place frames come from. Not thread-safe: one capture thread owns it.

    ``live``: frames that are not scored in time are stale (a camera, a stream): the queue
    drops the oldest. Files are not frames: a folder, or a video not marked live, is scored
    whole, the capture waiting for inference instead of dropping.
    """

    kind = ""
    live = True

    def __init__(self, target: str):
        self.target = target

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.target}"

    @abstractmethod
    def open(self) -> None:
        """Open the source; raise SourceLostError when it is not there."""

    @abstractmethod
    def read(self) -> tuple[str, np.ndarray] | None:
        """The next ``(frame id, RGB frame)``, None for "nothing yet"; or raise as above."""

    @abstractmethod
    def close(self) -> None: ...

    @property
    def frame_interval(self) -> float:
        """Seconds between frames to pace reading at (0: as fast as frames come)."""
        return 0.0

    def keep_state(self, folder: Path) -> None:  # noqa: B027 (most sources keep nothing)
        """Where a source that must not repeat itself across restarts keeps what it did."""

    def done(self, source_id: str) -> None:  # noqa: B027
        """A frame of this source was scored (or reported bad): it is finished with."""


def _checked_frame(frame: np.ndarray | None, where: str) -> np.ndarray:
    if frame is None or not isinstance(frame, np.ndarray) or frame.size == 0:
        raise FrameError(f"{where}: empty frame")
    if frame.ndim not in (2, 3) or min(frame.shape[:2]) < 8:
        raise FrameError(f"{where}: malformed frame of shape {frame.shape}")
    try:
        return to_rgb8(frame, where)
    except ImageDecodeError as exc:
        raise FrameError(str(exc)) from exc


class CaptureSource(FrameSource):
    """A cv2.VideoCapture: camera index, video file or stream URL.

    A video file is replayed at its own frame rate (it stands in for a camera) unless ``fps`` is
    given (0: as fast as it decodes); at its end it is reopened when ``loop`` is set, otherwise
    the source is lost for good (``ended``). A camera or stream that stops delivering frames is
    lost and reconnected by the capture loop.
    """

    # consecutive failed reads of a live camera/stream before it counts as lost
    MAX_FAILED_READS = 5

    def __init__(
        self,
        target: str,
        kind: str,
        fps: float | None = None,
        loop: bool = False,
        live: bool | None = None,
    ):
        super().__init__(target)
        self.kind = kind
        self.fps = fps
        self.loop = loop
        # cameras and streams are live; a video file is scored frame by frame unless it
        # stands in for a camera (--live)
        self.live = kind != "video" if live is None else live
        self.ended = False
        self._cap: cv2.VideoCapture | None = None
        self._native_fps = 0.0
        self._frame = 0
        self._failed = 0

    def open(self) -> None:
        if self.kind == "video" and not Path(self.target).is_file():
            raise SourceLostError(f"{self.target}: video file not found")
        arg: int | str = int(self.target) if self.kind == "camera" else self.target
        cap = cv2.VideoCapture(arg)
        if not cap.isOpened():
            cap.release()
            raise SourceLostError(f"{self.name}: cannot open (not connected, or no decoder for it)")
        self._cap = cap
        self._native_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._failed = 0

    def read(self) -> tuple[str, np.ndarray] | None:
        if self._cap is None:
            raise SourceLostError(f"{self.name}: not open")
        ok, frame = self._cap.read()
        if not ok:
            if self.kind == "video":
                # end of the file (or it was truncated under us): replay it or stop
                self.close()
                if not self.loop:
                    self.ended = True
                raise SourceLostError(f"{self.target}: end of video", end_of_stream=True)
            self._failed += 1
            if self._failed >= self.MAX_FAILED_READS:
                self.close()
                raise SourceLostError(f"{self.name}: no frame in {self._failed} reads")
            raise FrameError(f"{self.name}: frame could not be read")
        self._failed = 0
        self._frame += 1
        return f"{self.kind}#{self._frame}", _checked_frame(
            frame, f"{self.name} frame {self._frame}"
        )

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    @property
    def frame_interval(self) -> float:
        if self.fps is not None:
            return 1.0 / self.fps if self.fps > 0 else 0.0
        if self.kind == "video" and self._native_fps > 0:
            return 1.0 / self._native_fps
        return 0.0


class FolderSource(FrameSource):
    """A watched folder ("hot folder"): every image in it, in name order, then each new one.

    Files are not frames: every file is scored, once, in order, however long inference takes
    (the capture waits; nothing is dropped). A file that cannot be decoded is a FrameError
    naming it. A file still being written is skipped until its size has stayed the same for
    one poll. With ``keep_state``, the names of finished files are appended to
    ``folder_done.txt`` there, so a restart goes on where the last run stopped.
    """

    kind = "folder"
    live = False
    STATE_NAME = "folder_done.txt"

    def __init__(self, target: str, fps: float | None = None, poll: float = 0.2):
        super().__init__(target)
        self.fps = fps
        self.poll = poll
        self._seen: set[str] = set()
        self._sizes: dict[str, int] = {}
        self._pending: list[Path] = []
        self._state: Path | None = None

    def keep_state(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._state = folder / self.STATE_NAME
        if self._state.is_file():
            self._seen |= set(self._state.read_text().splitlines())

    def done(self, source_id: str) -> None:
        if self._state is None:
            return
        with open(self._state, "a") as f:  # one short line per file: an append is atomic
            f.write(Path(source_id).name + "\n")

    def open(self) -> None:
        if not Path(self.target).is_dir():
            raise SourceLostError(f"{self.target}: folder not found")

    def _scan(self) -> None:
        try:
            entries = sorted(Path(self.target).iterdir())
        except OSError as exc:
            raise SourceLostError(
                f"{self.target}: cannot list folder ({exc.strerror or exc})"
            ) from exc
        for path in entries:
            key = path.name
            if key in self._seen or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if self._sizes.get(key) == size:  # unchanged since the last poll: complete
                self._seen.add(key)
                self._sizes.pop(key, None)
                self._pending.append(path)
            else:
                self._sizes[key] = size

    def read(self) -> tuple[str, np.ndarray] | None:
        if not self._pending:
            self._scan()
            if not self._pending:
                time.sleep(self.poll)
                self._scan()
            if not self._pending:
                return None
        path = self._pending.pop(0)
        try:
            return str(path), read_image(path)
        except ImageDecodeError as exc:
            self.done(str(path))  # reported: finished with, not retried after a restart
            raise FrameError(str(exc)) from exc

    def close(self) -> None:
        pass

    @property
    def frame_interval(self) -> float:
        return 1.0 / self.fps if self.fps else 0.0


_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def make_source(
    camera: str | None = None,
    video: str | None = None,
    rtsp: str | None = None,
    folder: str | None = None,
    fps: float | None = None,
    loop: bool = False,
    live: bool | None = None,
) -> FrameSource:
    """Exactly one of camera / video / rtsp / folder; ``live`` marks a video as a camera."""
    given = {
        k: v
        for k, v in {"camera": camera, "video": video, "rtsp": rtsp, "folder": folder}.items()
        if v is not None
    }
    if len(given) != 1:
        raise EdgeadError(
            "give exactly one source: --camera N, --video FILE, --rtsp URL or --folder DIR"
        )
    kind, target = next(iter(given.items()))
    if kind == "camera":
        if not str(target).isdigit():
            raise EdgeadError(f"--camera {target}: expected a device index such as 0")
        return CaptureSource(str(target), "camera", fps)
    if kind == "rtsp":
        if not _URL.match(target):
            raise EdgeadError(f"--rtsp {target}: expected a URL such as rtsp://host:554/stream")
        return CaptureSource(target, "stream", fps)
    if kind == "video":
        return CaptureSource(target, "video", fps, loop, live)
    return FolderSource(target, fps)
