"""Detector configs: dataclasses that round-trip through JSON (tuples become lists)."""

from __future__ import annotations

import dataclasses
from typing import Any


class ConfigMixin:
    """to_dict / from_dict for a dataclass config whose tuple fields are stored as lists."""

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(d) - set(names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown settings {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
