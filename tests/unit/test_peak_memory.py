"""The fit's peak-memory figure is its own: a reset starts the count afresh."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# in a process of its own: in the test run's process, freed memory is reused without new pages
SCRIPT = """
import json
import numpy as np
from edgead.runtime.memory import peak_mb, reset_peak
big = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
before = peak_mb()
del big
reset = reset_peak()
after = peak_mb()
again = np.ones(100 * 2**20 // 8)
print(json.dumps([before, reset, after, peak_mb()]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs: Linux")
def test_a_reset_forgets_an_earlier_peak():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    ).stdout
    before, reset, after, again = json.loads(out.splitlines()[-1])
    assert reset
    assert before - after >= 250, (before, after)
    assert again >= after + 90, (after, again)
