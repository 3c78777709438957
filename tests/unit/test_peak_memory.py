"""The fit's peak-memory figure is its own: a reset starts the count afresh."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edgead.runtime.memory import peak_mb, reset_peak


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs: Linux")
def test_a_reset_forgets_an_earlier_peak():
    big = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
    before = peak_mb()
    del big
    assert reset_peak()
    after = peak_mb()
    assert before - after >= 250, (before, after)
    again = np.ones(100 * 2**20 // 8)
    assert peak_mb() >= after + 90
    del again
