"""Greedy k-center coreset (PatchCore, Roth et al. 2022, Alg. 1), exact and fast.

The greedy picks, again and again, the point farthest from everything picked so far. Written
naively each pick streams the whole (N, d) matrix: 16,464 picks over 164,640 x 128 patches
took 57 s on two cores, and the cost grows with N^2. Two exact ways around that, chosen by
where the features are:

- **CUDA**: the plain greedy on the GPU with no host synchronisation per pick (the next
  centre is indexed by the argmax tensor itself), so picks queue up as fast as kernels launch.
- **CPU**: the same picks with triangle-inequality pruning (the idea of Elkan's k-means). The
  points are grouped into cells (nearest of ``cells`` seed points, one matrix product); each
  cell keeps its seed ``z``, its radius ``R`` (farthest member from ``z``) and ``U``, the
  largest distance of a member to its nearest picked centre. A new centre ``c`` cannot bring
  any member closer than ``|c - z| - R``; where that is ``>= U`` the cell is skipped whole.
  Late in the run almost every cell is skipped. The loop is a numba kernel: no library
  offers a k-center greedy (faiss, scikit-learn and torch have none), and a Python loop over
  cells costs more than the arithmetic it saves.

Both return the same picks as the naive loop up to floating-point ties (a test replays the
definition). Distances are taken in a Gaussian random projection to ``projection_dim``
(Johnson-Lindenstrauss) as before; None keeps the full dimension.
"""

from __future__ import annotations

import itertools
import logging
import math
import time

import numpy as np
import torch

log = logging.getLogger(__name__)


def project(features: torch.Tensor, projection_dim: int | None, seed: int) -> torch.Tensor:
    """The features in the seeded Gaussian random projection the greedy measures in."""
    x = features.float()
    if projection_dim is not None and projection_dim < x.shape[1]:
        generator = torch.Generator().manual_seed(seed)
        proj = torch.randn(x.shape[1], projection_dim, generator=generator) / projection_dim**0.5
        x = x @ proj.to(x.device)
    return x


def first_pick(n: int, seed: int) -> int:
    """The seeded start point of the greedy."""
    return int(torch.randint(n, (1,), generator=torch.Generator().manual_seed(seed + 1)))


def k_center_greedy(
    features: torch.Tensor,
    n_select: int,
    projection_dim: int | None = 128,
    seed: int = 0,
    quiet: bool = True,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Indices of ``n_select`` rows picked by the greedy k-center rule (module docstring).

    ``device``: where the picks run; default: the features' device. CUDA runs the plain
    greedy on the GPU, the CPU the pruned kernel.
    """
    n = features.shape[0]
    if n_select >= n:
        return torch.arange(n)
    device = torch.device(device) if device is not None else features.device
    t0 = time.perf_counter()
    x = project(features.to(device), projection_dim, seed)
    start = first_pick(n, seed)
    if device.type == "cuda":
        picks = _greedy_torch(x, n_select, start)
    else:
        picks = _greedy_pruned(x.cpu().numpy(), n_select, start, seed)[0]
    if not quiet:
        log.info(
            "coreset: %d of %d points in %.1f s (%s)",
            n_select,
            n,
            time.perf_counter() - t0,
            device.type,
        )
    return picks


def chunk_plan(n: int, n_select: int, chunk: int) -> list[tuple[int, int, int]]:
    """(start, stop, picks) per chunk of about ``chunk`` consecutive rows, the picks shared in
    proportion to the rows (largest remainders), summing to ``n_select``."""
    m = max(1, round(n / chunk))
    bounds = [round(i * n / m) for i in range(m + 1)]
    sizes = [b - a for a, b in itertools.pairwise(bounds)]
    exact = [s * n_select / n for s in sizes]
    picks = [int(e) for e in exact]
    for i in sorted(range(m), key=lambda i: exact[i] - picks[i], reverse=True)[
        : n_select - sum(picks)
    ]:
        picks[i] += 1
    return [(a, b, k) for (a, b), k in zip(itertools.pairwise(bounds), picks, strict=True) if k > 0]


def k_center_greedy_chunked(
    features: torch.Tensor,
    n_select: int,
    chunk: int,
    projection_dim: int | None = 128,
    seed: int = 0,
    quiet: bool = True,
    device: str | torch.device | None = None,
    refine: float = 0.0,
) -> torch.Tensor:
    """The greedy per chunk of ``chunk`` consecutive rows (a fit's rows are image-ordered, so a
    chunk is a run of whole images), each picking its share; the picks are the union.

    A composable coreset (the way k-center is distributed): every training patch is within
    its own chunk's covering radius of a pick, so the bank's radius is the largest chunk's;
    the work falls from about N x k to N x k / m for m chunks. ``refine``: the share of the
    picks kept back from the chunks and made by the one greedy over every row, going on from
    the chunks' picks (each row's distance to its own chunk's picks stands in for its distance
    to all: an upper bound, so the farthest rows of the whole are found). What each setting
    gives up against the one greedy, in covering radius and ROCAUC, is measured on real
    features in ``benchmarks/coreset.py``. The projection is drawn once, for all chunks.
    """
    n = features.shape[0]
    if n_select >= n:
        return torch.arange(n)
    n_refine = round(refine * n_select)
    plan = chunk_plan(n, n_select - n_refine, chunk)
    if len(plan) == 1:
        return k_center_greedy(features, n_select, projection_dim, seed, quiet, device)
    t0 = time.perf_counter()
    device = torch.device(device) if device is not None else features.device
    x = project(features.to(device), projection_dim, seed)
    picks = []
    if device.type == "cuda":  # the plain greedy is fast there: chunks only, no refinement
        plan = chunk_plan(n, n_select, chunk)
        for i, (a, b, k) in enumerate(plan):
            picks.append(_greedy_torch(x[a:b], k, first_pick(b - a, seed + i)) + a)
        return torch.cat(picks)
    xn = x.cpu().numpy()
    min_d = np.empty(n, np.float32)
    for i, (a, b, k) in enumerate(plan):
        got, min_d[a:b] = _greedy_pruned(xn[a:b], k, first_pick(b - a, seed + i), seed + i)
        picks.append(got + a)
    if n_refine:
        picks.append(_greedy_pruned(xn, n_refine, 0, seed, min_d)[0])
    if not quiet:
        log.info(
            "coreset: %d of %d points in %.1f s (%d chunks of ~%d, %d picks over all)",
            n_select,
            n,
            time.perf_counter() - t0,
            len(plan),
            chunk,
            n_refine,
        )
    return torch.cat(picks)


# rows of the samples the estimate times (after an untimed warm-up on the first: the kernel's
# threads start); fits of fewer rows than ESTIMATE_FROM get no estimate (their coreset takes
# seconds: tire's 164,640 patches 7-8 s on two cores)
ESTIMATE_ROWS = (25_000, 100_000)
ESTIMATE_FROM = 250_000


def estimate_seconds(
    features: torch.Tensor,
    n_select: int,
    chunk: int = 0,
    projection_dim: int | None = 128,
    seed: int = 0,
    refine: float = 0.0,
    device: str | torch.device | None = None,
) -> dict | None:
    """How long the coreset of ``features`` will take, from a short measured run: the same
    greedy on uniform samples of the rows at the same pick ratio, a power law ``t = a n^b``
    through their times (``b`` held to [1, 2]: the pruned greedy's work grows faster than
    the rows and at most as the naive N x k), applied to each chunk and to the refinement's
    share of the one greedy. The greedy's work depends on how the features spread, which no
    formula over N and k knows; samples of the fit's own features do. Samples a factor 4
    apart: timing noise of 10% moves ``b`` by 0.07, the estimate at 16x the larger sample by
    about 20%. Returns the estimate with its samples, or None when the rows are too few to
    be worth it. How close it comes on real features: ``benchmarks/coreset.py --estimate-only``."""
    n = features.shape[0]
    small, large = ESTIMATE_ROWS
    if n < max(ESTIMATE_FROM, 2 * large) or n_select >= n:
        return None
    t0 = time.perf_counter()
    ratio = n_select / n
    rng = np.random.default_rng(seed)

    def timed_sample(m: int) -> list:
        rows = torch.from_numpy(np.sort(rng.choice(n, m, replace=False)))
        k = max(1, round(ratio * m))
        t = time.perf_counter()
        k_center_greedy(features[rows], k, projection_dim, seed, device=device)
        return [m, k, round(time.perf_counter() - t, 3)]

    timed_sample(small)  # warm-up: the kernel's threads and code, untimed
    samples = [timed_sample(m) for m in ESTIMATE_ROWS]
    (_, _, t1), (_, _, t2) = samples
    exponent = min(2.0, max(1.0, math.log(max(t2, 1e-6) / max(t1, 1e-6)) / math.log(large / small)))

    def one(rows: int) -> float:
        return t2 * (rows / large) ** exponent

    n_refine = round(refine * n_select)
    plan = chunk_plan(n, n_select - n_refine, chunk) if chunk else []
    if len(plan) > 1:
        # each chunk picks its share: (1 - refine) of the ratio; the refinement: the one
        # greedy's last picks, costed as that share of the one greedy
        seconds = (1 - refine) * sum(one(b - a) for a, b, _ in plan) + refine * one(n)
    else:
        seconds = one(n)
    return {
        "seconds": round(seconds, 1),
        "exponent": round(exponent, 3),
        "samples": samples,
        "measured_in_seconds": round(time.perf_counter() - t0, 2),
    }


def _greedy_torch(x: torch.Tensor, n_select: int, start: int) -> torch.Tensor:
    """The plain greedy, every pick on the device; no host round trip until the end."""
    sq = (x * x).sum(1)
    min_dist = torch.full((x.shape[0],), float("inf"), device=x.device)
    selected = torch.empty(n_select, dtype=torch.long, device=x.device)
    idx = torch.tensor(start, device=x.device)
    for i in range(n_select):
        selected[i] = idx
        c = x[idx]
        torch.minimum(min_dist, sq - 2.0 * (x @ c) + (c * c).sum(), out=min_dist)
        idx = torch.argmax(min_dist)
    return selected.cpu()


def cell_count(n: int) -> int:
    """Cells for the pruned greedy: ~2 sqrt(N), so seeding and per-pick bound checks stay cheap
    (measured on tire's 164,640 patches: benchmarks/coreset.py)."""
    return int(min(max(16, 2 * math.sqrt(n)), 4096))


def _cells(x: np.ndarray, cells: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group the points by their nearest of ``cells`` random seed points (one matrix product
    per chunk). Returns the order that sorts points by cell, the cell offsets and the seeds."""
    rng = np.random.default_rng(seed)
    seeds = x[rng.choice(len(x), size=cells, replace=False)]
    seed_sq = (seeds * seeds).sum(1)
    label = np.empty(len(x), np.int64)
    for s in range(0, len(x), 65536):
        chunk = x[s : s + 65536]
        label[s : s + 65536] = np.argmin(seed_sq[None, :] - 2.0 * (chunk @ seeds.T), axis=1)
    order = np.argsort(label, kind="stable")
    offsets = np.searchsorted(label[order], np.arange(cells + 1)).astype(np.int64)
    return order, offsets, seeds


def _greedy_pruned(
    x: np.ndarray, n_select: int, start: int, seed: int, min_d: np.ndarray | None = None
) -> tuple[torch.Tensor, np.ndarray]:
    """The pruned greedy's picks (row indices of ``x``) and each row's squared distance to
    its nearest pick; with ``min_d`` (squared distances to earlier picks), it goes on from
    those picks (``start`` unused)."""
    from edgead.components._greedy_kernel import greedy_cells
    from edgead.threads import configured

    x = np.ascontiguousarray(x, dtype=np.float32)
    order, offsets, seeds = _cells(x, cell_count(len(x)), seed)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    sorted_x = np.ascontiguousarray(x[order])
    picks, sorted_d = greedy_cells(
        sorted_x,
        offsets,
        np.ascontiguousarray(seeds),
        n_select,
        int(inverse[start]),
        configured(),
        None if min_d is None else min_d[order],
    )
    return torch.from_numpy(order[picks]), sorted_d[inverse]


def covering_radius(features: torch.Tensor, selected: torch.Tensor, chunk: int = 4096) -> float:
    """Largest distance from any row of ``features`` to its nearest selected row (full space).

    Per block of rows: one fused product ``|b|^2 - 2 q.b`` (addmm) and its row minimum, |q|^2
    added after the minimum (it is the same for the whole row)."""
    x = features.float()
    bank = x[selected]
    bank_sq = (bank * bank).sum(1)
    worst = 0.0
    for s in range(0, len(x), chunk):
        q = x[s : s + chunk]
        d2 = torch.addmm(bank_sq[None, :], q, bank.T, alpha=-2.0).min(1).values
        worst = max(worst, float((d2 + (q * q).sum(1)).clamp_min(0).max()))
    return worst**0.5
