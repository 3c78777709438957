"""edgead: industrial visual anomaly detection, from good images to a verified edge bundle.

Importing ``edgead`` (and ``edgead.runtime``, ``edgead.bundle``, ``edgead.data``,
``edgead.metrics``) never imports torch; the PyTorch side lives in ``edgead.models`` and
``edgead.export``.
"""

__version__ = "0.1.0"

from edgead.threads import passive_waiting as _passive_waiting

# OpenMP reads its wait policy when it loads (faiss, torch, numba): idle threads sleep rather
# than spin against the other libraries' pools (edgead/threads.py)
_passive_waiting()
