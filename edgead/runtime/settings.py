"""How a bundle is run: one frozen record that the CLI, the serve config and the Triton model
build alike and hand whole to the Pipeline (and to bench, compare, parity and calibrate)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgead.runtime.regions import VerdictRules

GRAY_POLICIES = ("auto", "reject", "convert", "accept")
DEFAULT_RULES = VerdictRules()


@dataclass(frozen=True)
class RuntimeSettings:
    """Where and how the bundle runs; the defaults are what `edgead run BUNDLE` does."""

    # onnxruntime, openvino, tensorrt, torch, or auto (the bundle's measured default)
    backend: str = "auto"
    device: str | None = None  # the backend's device: cpu, cuda, cuda:1, gpu, npu ...
    precision: str = "auto"  # fp32, fp16, int8, or auto (the bundle's measured default)
    # where kNN scorers search their memory banks (edgead.runtime.search.SEARCHES); auto: on
    # the GPU when the backend runs on one, else what export measured fastest on the CPU
    search: str = "auto"
    threads: int | None = None  # the backend's intra-op threads; None: the usable cores
    batch: int = 1  # images per graph run
    threshold: float | None = None  # overrides the bundle's calibrated image threshold
    rules: VerdictRules = DEFAULT_RULES  # region rules of the verdict
    gray: str = "auto"  # a grayscale image into a colour model (or the reverse)
    public_key: str | None = None  # the bundle must carry a signature by this key

    def __post_init__(self) -> None:
        if self.gray not in GRAY_POLICIES:
            raise ValueError(f"gray policy {self.gray!r}: one of {', '.join(GRAY_POLICIES)}")
        if self.batch < 1:
            raise ValueError(f"batch {self.batch}: 1 or more")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads {self.threads}: 1 or more (or none: the usable cores)")
        if isinstance(self.public_key, Path):
            object.__setattr__(self, "public_key", str(self.public_key))

    def replace(self, **changes: Any) -> RuntimeSettings:
        """These settings with ``changes`` (field names only: a wrong name is a TypeError)."""
        return dataclasses.replace(self, **changes) if changes else self

    @classmethod
    def of(cls, settings: RuntimeSettings | None = None, **changes: Any) -> RuntimeSettings:
        """``settings`` (default: the defaults) with ``changes``."""
        if settings is not None and not isinstance(settings, RuntimeSettings):
            raise TypeError(
                f"settings: expected a RuntimeSettings, got {settings!r} (name the field: "
                "backend=..., precision=...)"
            )
        return (settings or cls()).replace(**changes)
