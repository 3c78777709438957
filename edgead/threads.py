"""One thread setting for every library that keeps a thread pool (no torch import here).

onnxruntime, faiss (OpenMP), the BLAS libraries (numpy's OpenBLAS and faiss's own), numba and,
where it is already loaded, torch each start as many threads as the machine has cores, and by
default their idle threads spin-wait for the next parallel region. On a 2-core machine two
such pools fight: numpy's BLAS right after a faiss search took 5.6 ms for what takes 1.1 ms
alone, and the same faiss search took 107 ms on a quiet machine and 1,200 ms with two other
jobs on the cores. So: one count for all (``--threads``, default the cores this process may
use), and passive waiting where the library allows it (OpenMP: ``OMP_WAIT_POLICY=PASSIVE``,
read when the OpenMP runtime loads, hence set at ``import edgead``; onnxruntime: its
``allow_spinning`` session option, set in its backend).
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)


def passive_waiting() -> None:
    """Ask OpenMP runtimes loaded from now on to sleep, not spin, between parallel regions."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_configured: int | None = None


def configure(threads: int | None = None) -> int:
    """Apply one thread count to every pool that is loaded or loadable; returns it."""
    global _configured
    n = max(1, int(threads)) if threads else usable_cores()
    passive_waiting()
    from threadpoolctl import threadpool_limits

    try:
        import faiss  # first: it brings its own OpenBLAS and OpenMP, limited below

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    threadpool_limits(n)  # BLAS and OpenMP pools of the libraries loaded so far
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if "torch" in sys.modules:  # never imported here: the runtime stays torch-free
        torch = sys.modules["torch"]
        torch.set_num_threads(n)
    _configured = n
    log.debug("threads: %d for onnxruntime, faiss, BLAS, numba and torch", n)
    return n


def configured() -> int:
    """The count ``configure`` set, else the usable cores (backends size their pools by it)."""
    return _configured or usable_cores()


_BLAS = None


def blas():
    """threadpoolctl's view of the loaded BLAS libraries, found once (finding them costs ~1 ms);
    ``blas().limit(limits=1, user_api="blas")`` runs a block of products on one BLAS thread."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS
