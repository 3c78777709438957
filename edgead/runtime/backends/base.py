"""Backend runners, after Polygraphy's: public ``activate / infer / deactivate`` check names,
dtypes and shapes; subclasses fill in small ``*_impl`` methods. Runners are context managers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgead.errors import BackendError


@dataclass(frozen=True)
class TensorMeta:
    dtype: np.dtype
    shape: tuple[int | str | None, ...]  # str or None: dynamic


class Backend(ABC):
    """Runs one graph of a bundle. ``name`` is what ``--backend`` takes."""

    name: str = ""

    def __init__(
        self,
        path: Path,
        device: str | None = None,
        meta: dict | None = None,
        precision: str = "fp32",
        threads: int | None = None,
    ):
        self.path = Path(path)
        self.device = device  # None means the backend's default
        self.meta = meta  # the artifact's manifest metadata (engines: TensorRT version, GPU)
        self.precision = precision  # the precision asked for (the artifact's, or autocast's)
        self.threads = threads  # host threads for the backend's own pool; None: the default
        self.is_active = False

    # -- public API -------------------------------------------------------------------------
    def activate(self) -> Backend:
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self) -> Backend:
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.is_active:
            raise BackendError(f"{self.name} backend for {self.path}: call activate() first")
        meta = self.input_metadata()
        if set(feed) != set(meta):
            raise BackendError(
                f"{self.path}: inputs {sorted(feed)} do not match the graph's {sorted(meta)}"
            )
        for name, array in feed.items():
            want = meta[name]
            if array.dtype != want.dtype:
                raise BackendError(
                    f"{self.path}: input {name!r} is {array.dtype}, graph wants {want.dtype}"
                )
            if array.ndim != len(want.shape) or any(
                isinstance(w, int) and w != g for w, g in zip(want.shape, array.shape, strict=True)
            ):
                raise BackendError(
                    f"{self.path}: input {name!r} has shape {array.shape}, graph wants {want.shape}"
                )
        return self.infer_impl(feed)

    # -- uint8 input: backends that normalize on their device ----------------------------------
    @property
    def takes_uint8(self) -> bool:
        """Whether ``infer_uint8`` is the faster way in: resized uint8 (N, H, W, 3) images are
        sent to the device (a quarter of the float32 bytes) and normalized there."""
        return False

    def uint8_buffer(self, n: int, height: int, width: int) -> np.ndarray:
        """Where the host writes a uint8 batch for ``infer_uint8`` (pinned memory on CUDA;
        valid until the next call)."""
        return np.empty((n, height, width, 3), np.uint8)

    def infer_uint8(
        self, images: np.ndarray, scale: np.ndarray, offset: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Run the graph on ``images * scale + offset`` (per channel), NCHW float32."""
        raise BackendError(f"{self.name} backend takes float32 input only")

    def synchronize(self) -> None:  # noqa: B027  (a no-op unless the backend queues device work)
        """Wait for queued device work; stage timers call this at every stage boundary."""

    # -- for subclasses -----------------------------------------------------------------------
    @abstractmethod
    def activate_impl(self) -> None: ...

    @abstractmethod
    def deactivate_impl(self) -> None: ...

    @abstractmethod
    def input_metadata(self) -> dict[str, TensorMeta]: ...

    @abstractmethod
    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def describe(self) -> str:
        return self.name

    @property
    def on_gpu(self) -> bool:
        """Whether the graph runs on a GPU (then ``--search auto`` searches there too)."""
        return False


BACKENDS: dict[str, Callable[..., Backend]] = {}


def register_backend(name: str) -> Callable[[type[Backend]], type[Backend]]:
    def deco(cls: type[Backend]) -> type[Backend]:
        cls.name = name
        BACKENDS[name] = cls
        return cls

    return deco


def create_backend(
    name: str,
    path: Path,
    device: str | None = None,
    meta: dict | None = None,
    precision: str = "fp32",
    threads: int | None = None,
) -> Backend:
    from edgead.runtime import backends as _  # noqa: F401  (registers the built-ins)

    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; available: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name](path, device, meta, precision, threads)
