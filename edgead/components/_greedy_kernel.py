"""The pruned greedy k-center loop as a numba kernel (see ``coreset.py`` for the method and
why it is hand-written). Imported only when a CPU coreset runs: numba compiles it on first use
and caches the machine code next to this file (or in NUMBA_CACHE_DIR)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=True, cache=True)
def _cell_radii(x, offsets, seeds):
    """Per cell its radius; per point its distance to its cell's seed."""
    cells = len(offsets) - 1
    radius = np.zeros(cells, np.float32)
    to_seed = np.empty(len(x), np.float32)
    for b in prange(cells):
        worst = 0.0
        for j in range(offsets[b], offsets[b + 1]):
            d2 = 0.0
            for k in range(x.shape[1]):
                t = x[j, k] - seeds[b, k]
                d2 += t * t
            to_seed[j] = np.sqrt(d2)
            worst = max(worst, d2)
        radius[b] = np.sqrt(worst)
    return radius, to_seed


@njit(fastmath=True, cache=True)
def _reachable(offsets, seeds, radius, upper, c, cells_out, dz_out):
    """The cells that centre ``c`` may bring closer (the others are skipped whole):
    |x - c| >= |c - z| - |x - z| >= dz - R, and a cell whose every member is already within
    that bound cannot change. A small slack keeps rounding from skipping a cell that a tie
    could reach. Returns how many cells and how many points they hold."""
    n_cells = 0
    n_points = 0
    dim = seeds.shape[1]
    for b in range(len(offsets) - 1):
        lo, hi = offsets[b], offsets[b + 1]
        if lo == hi:
            continue
        dz = 0.0
        for k in range(dim):
            t = c[k] - seeds[b, k]
            dz += t * t
        dz = np.sqrt(dz)
        if dz - radius[b] - 1e-4 * (dz + radius[b]) > upper[b]:
            continue
        cells_out[n_cells] = b
        dz_out[n_cells] = dz
        n_cells += 1
        n_points += hi - lo
    return n_cells, n_points


@njit(fastmath=True, inline="always")
def _update_cell(x, offsets, min_d, upper, arg_upper, c, b, dz, to_seed):
    """Members of cell ``b`` brought closer by centre ``c`` (``dz`` from the cell's seed).
    Per member the same bound as per cell: |x - c| >= |dz - |x - z||; a member already
    nearer its pick than that is not measured (most of them, late in the run)."""
    lo, hi = offsets[b], offsets[b + 1]
    best = -1.0
    arg = lo
    for j in range(lo, hi):
        gap = abs(dz - to_seed[j]) - 1e-4 * (dz + to_seed[j])
        if gap <= 0.0 or gap * gap < min_d[j]:
            d2 = 0.0
            for k in range(x.shape[1]):
                t = x[j, k] - c[k]
                d2 += t * t
            if d2 < min_d[j]:
                min_d[j] = d2
        if min_d[j] > best:
            best = min_d[j]
            arg = j
    upper[b] = np.sqrt(best)
    arg_upper[b] = arg


@njit(fastmath=True, cache=True)
def _update_serial(x, offsets, min_d, upper, arg_upper, c, cells, n_cells, dzs, to_seed):
    for i in range(n_cells):
        _update_cell(x, offsets, min_d, upper, arg_upper, c, cells[i], dzs[i], to_seed)


@njit(parallel=True, fastmath=True, cache=True)
def _update_parallel(x, offsets, min_d, upper, arg_upper, c, cells, n_cells, dzs, to_seed):
    for i in prange(n_cells):
        _update_cell(x, offsets, min_d, upper, arg_upper, c, cells[i], dzs[i], to_seed)


@njit(cache=True)
def _argmax(upper, arg_upper):
    best = -1.0
    arg = 0
    for b in range(len(upper)):
        if upper[b] > best:
            best = upper[b]
            arg = arg_upper[b]
    return arg


# Points to update from which a pick runs on all threads. Each parallel region ends in a
# barrier: with another process on the cores a descheduled thread holds every pick up for a
# time slice (tire's 16,464 picks went from 5.3 s to 58 s beside one busy process when every
# pick ran parallel). Only the first picks, which touch many points, are worth the barrier.
# Tire, 2 cores, quiet / beside one busy process: all serial 8.1 / 9.7 s; from 5,000 points
# 5.6 / 14.2 s; from 20,000 points 7.1 / 13.3 s (the least loss of the parallel settings).
PARALLEL_FROM = 20_000


@njit(cache=True)
def _cell_upper(offsets, min_d):
    """Per cell: the largest distance of a member to its nearest pick, and that member."""
    cells = len(offsets) - 1
    upper = np.full(cells, -1.0, np.float32)  # empty cells are never picked
    arg_upper = offsets[:-1].copy()
    for b in range(cells):
        best = -1.0
        for j in range(offsets[b], offsets[b + 1]):
            if min_d[j] > best:
                best = min_d[j]
                arg_upper[b] = j
        if best >= 0.0:
            upper[b] = np.sqrt(best)
    return upper, arg_upper


def greedy_cells(x, offsets, seeds, n_select, start, threads: int | None = None, min_d=None):
    """Greedy k-center picks over ``x`` (rows sorted by cell); returns row indices of ``x``
    and each row's squared distance to its nearest pick.

    ``min_d``: squared distances of the rows to picks made before (an upper bound is enough:
    a row counted farther than it is may be picked in vain, never missed); the greedy then
    goes on from them, and ``start`` is ignored (the first pick is the farthest row)."""
    import numba

    if threads is not None:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    cells = len(offsets) - 1
    radius, to_seed = _cell_radii(x, offsets, seeds)
    if min_d is None:
        min_d = np.full(len(x), np.inf, np.float32)
        upper = np.full(cells, np.inf, np.float32)
        upper[offsets[1:] == offsets[:-1]] = -1.0  # empty cells are never picked
        arg_upper = offsets[:-1].copy()
        idx = start
    else:
        min_d = np.ascontiguousarray(min_d, dtype=np.float32)
        upper, arg_upper = _cell_upper(offsets, min_d)
        idx = _argmax(upper, arg_upper)
    picks = np.empty(n_select, np.int64)
    cells_buf = np.empty(cells, np.int64)
    dz_buf = np.empty(cells, np.float32)
    parallel = numba.get_num_threads() > 1
    for i in range(n_select):
        picks[i] = idx
        c = x[idx]
        n_cells, n_points = _reachable(offsets, seeds, radius, upper, c, cells_buf, dz_buf)
        update = _update_parallel if parallel and n_points >= PARALLEL_FROM else _update_serial
        update(x, offsets, min_d, upper, arg_upper, c, cells_buf, n_cells, dz_buf, to_seed)
        idx = _argmax(upper, arg_upper)
    return picks, min_d
