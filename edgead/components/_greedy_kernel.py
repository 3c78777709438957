"""The pruned greedy k-center loop as a numba kernel (see ``coreset.py`` for the method and
why it is hand-written). Imported only when a CPU coreset runs: numba compiles it on first use
and caches the machine code next to this file (or in NUMBA_CACHE_DIR)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=True, cache=True)
def _cell_radii(x, offsets, seeds):
    cells = len(offsets) - 1
    radius = np.zeros(cells, np.float32)
    for b in prange(cells):
        worst = 0.0
        for j in range(offsets[b], offsets[b + 1]):
            d2 = 0.0
            for k in range(x.shape[1]):
                t = x[j, k] - seeds[b, k]
                d2 += t * t
            worst = max(worst, d2)
        radius[b] = np.sqrt(worst)
    return radius


@njit(parallel=True, fastmath=True, cache=True)
def _pick(x, offsets, seeds, radius, min_d, upper, arg_upper, c):
    """Fold centre ``c`` into the points' nearest-centre distances, cell by cell, skipping
    the cells that the triangle inequality proves it cannot reach."""
    cells = len(offsets) - 1
    dim = x.shape[1]
    for b in prange(cells):
        lo, hi = offsets[b], offsets[b + 1]
        if lo == hi:
            continue
        dz = 0.0
        for k in range(dim):
            t = c[k] - seeds[b, k]
            dz += t * t
        dz = np.sqrt(dz)
        # |x - c| >= |c - z| - |x - z| >= dz - R; a small slack keeps rounding from skipping
        # a cell that a tie could reach
        if dz - radius[b] - 1e-4 * (dz + radius[b]) > upper[b]:
            continue
        best = -1.0
        arg = lo
        for j in range(lo, hi):
            d2 = 0.0
            for k in range(dim):
                t = x[j, k] - c[k]
                d2 += t * t
            if d2 < min_d[j]:
                min_d[j] = d2
            if min_d[j] > best:
                best = min_d[j]
                arg = j
        upper[b] = np.sqrt(best)
        arg_upper[b] = arg


@njit(cache=True)
def _argmax(upper, arg_upper):
    best = -1.0
    arg = 0
    for b in range(len(upper)):
        if upper[b] > best:
            best = upper[b]
            arg = arg_upper[b]
    return arg


def greedy_cells(x, offsets, seeds, n_select, start):
    """Greedy k-center picks over ``x`` (rows sorted by cell); returns row indices of ``x``."""
    cells = len(offsets) - 1
    radius = _cell_radii(x, offsets, seeds)
    min_d = np.full(len(x), np.inf, np.float32)
    upper = np.full(cells, np.inf, np.float32)
    upper[offsets[1:] == offsets[:-1]] = -1.0  # empty cells are never picked
    arg_upper = offsets[:-1].copy()
    picks = np.empty(n_select, np.int64)
    idx = start
    for i in range(n_select):
        picks[i] = idx
        _pick(x, offsets, seeds, radius, min_d, upper, arg_upper, x[idx])
        idx = _argmax(upper, arg_upper)
    return picks
