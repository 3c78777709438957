"""Resumable training: atomic checkpoints with optimizer, scheduler and random-number states."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path

import torch

from edgead.bundle.io import write_file_atomic
from edgead.detectors.efficientad.config import EfficientAdConfig
from edgead.errors import EdgeadError

log = logging.getLogger(__name__)


def fingerprint(config: EfficientAdConfig, train: list[Path]) -> str:
    """What a checkpoint must agree on to be resumed: the settings and the training files."""
    settings = {
        k: v
        for k, v in config.to_dict().items()
        if k not in ("checkpoint", "checkpoint_every", "batch_size")
    }
    text = json.dumps([settings, [str(p) for p in train]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Checkpoints:
    def __init__(self, path: str | None, every: int, print_id: str):
        self.path = Path(path) if path else None
        self.every = max(1, every)
        self.id = print_id

    def load(self) -> dict | None:
        if self.path is None or not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a torn file cannot happen (atomic), a foreign one can
            raise EdgeadError(f"{self.path}: unreadable checkpoint ({exc}); delete it") from exc
        if state.get("fingerprint") != self.id:
            raise EdgeadError(
                f"{self.path}: checkpoint of a run with other settings or training images; "
                "delete it, or give another --checkpoint"
            )
        return state

    def due(self, step: int, total: int) -> bool:
        return self.path is not None and (step % self.every == 0 or step == total)

    def save(self, state: dict) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save({**state, "fingerprint": self.id}, buffer)
        write_file_atomic(self.path, buffer.getvalue())


def _rng_state(generator: torch.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "generator": generator.get_state()}


def _set_rng_state(generator: torch.Generator, state: dict) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])


# -- teacher distillation -----------------------------------------------------------------------
