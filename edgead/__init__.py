"""edgead: industrial visual anomaly detection, from good images to a verified edge bundle.

Importing ``edgead`` (and ``edgead.runtime``, ``edgead.bundle``, ``edgead.data``,
``edgead.metrics``) never imports torch; the PyTorch side lives in ``edgead.models`` and
``edgead.export``.
"""

__version__ = "0.1.0"
