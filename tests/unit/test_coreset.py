import itertools

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from edgead.components.common import adaptive_pool_matrix, gaussian_blur  # noqa: E402
from edgead.components.coreset import k_center_greedy  # noqa: E402


def test_k_center_greedy_picks_the_farthest_point_each_time():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=g)
    sel = k_center_greedy(x, 12, projection_dim=None, seed=0)
    # replay from the same start: each pick maximises the distance to those already picked
    picked = [int(sel[0])]
    for i in range(1, 12):
        d = torch.cdist(x, x[picked]).min(1).values
        assert int(sel[i]) == int(d.argmax())
        picked.append(int(sel[i]))
    assert len(set(sel.tolist())) == 12


def test_k_center_covers_clusters():
    centres = torch.tensor([[0.0, 0], [100, 0], [0, 100], [100, 100]])
    x = torch.cat([c + torch.randn(50, 2) for c in centres])
    sel = k_center_greedy(x, 4, projection_dim=None)
    assert len({int(i) // 50 for i in sel}) == 4
    assert len(k_center_greedy(x, 1000)) == len(x)


def test_projection_matrix_is_adaptive_average_pooling():
    x = torch.randn(7, 152)
    for out in (64, 100, 152):
        want = F.adaptive_avg_pool1d(x[:, None], out)[:, 0]
        torch.testing.assert_close(x @ adaptive_pool_matrix(152, out).T, want)


def test_torch_blur_matches_opencv():
    import cv2
    import numpy as np

    img = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    got = gaussian_blur(torch.from_numpy(img)[None, None], 4.0)[0, 0].numpy()
    want = cv2.GaussianBlur(img, (33, 33), 4.0, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_bilinear_upsampling_matches_opencv():
    import cv2
    import numpy as np

    img = np.random.default_rng(1).random((28, 28)).astype(np.float32)
    got = F.interpolate(
        torch.from_numpy(img)[None, None], size=(224, 224), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    want = cv2.resize(img, (224, 224), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(got, want, atol=1e-5)


def naive_picks(x: torch.Tensor, n_select: int, start: int) -> list[int]:
    """The definition: each pick is the point farthest from all earlier picks."""
    min_dist = torch.full((len(x),), float("inf"), dtype=torch.float64)
    picks = [start]
    for _ in range(n_select - 1):
        d = ((x.double() - x[picks[-1]].double()) ** 2).sum(1)
        min_dist = torch.minimum(min_dist, d)
        picks.append(int(min_dist.argmax()))
    return picks


def clustered(n_clusters: int = 30, per: int = 400, dim: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, dim, generator=g) * 4
    spread = torch.rand(n_clusters, 1, generator=g) + 0.2
    return torch.cat(
        [c + s * torch.randn(per, dim, generator=g) for c, s in zip(centres, spread, strict=True)]
    )


def test_pruned_greedy_equals_the_definition_on_clustered_points():
    from edgead.components.coreset import first_pick

    x = clustered()
    n = 600  # far past the point where most cells are skipped
    got = k_center_greedy(x, n, projection_dim=None, seed=3, device="cpu").tolist()
    assert got == naive_picks(x, n, first_pick(len(x), 3))


def test_covering_radius_of_the_picks():
    from edgead.components.coreset import covering_radius

    x = clustered(per=100)
    sel = k_center_greedy(x, 200, projection_dim=None)
    want = torch.cdist(x, x[sel]).min(1).values.max()
    assert abs(covering_radius(x, sel) - float(want)) < 1e-3
    # greedy k-center is a 2-approximation: any 200 points cover no better than half of it
    assert covering_radius(x, sel) <= covering_radius(x, torch.arange(200))


@pytest.mark.gpu
def test_cuda_greedy_covers_as_well_as_the_cpu_kernel():
    """The CUDA greedy ranks by |x|^2 - 2 x.c + |c|^2, the CPU kernel by direct differences:
    near-ties resolve differently and the sequences part (on an H100, 34% of 500 picks were
    the same), so the check is the quality: the covering radius."""
    from edgead.components.coreset import covering_radius

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    x = clustered()
    cpu = k_center_greedy(x, 500, projection_dim=16, seed=1, device="cpu")
    gpu = k_center_greedy(x, 500, projection_dim=16, seed=1, device="cuda")
    assert len(set(gpu.tolist())) == 500
    assert covering_radius(x, gpu) <= 1.05 * covering_radius(x, cpu)


def test_chunk_plan_shares_the_picks_in_proportion_and_in_full():
    from edgead.components.coreset import chunk_plan

    plan = chunk_plan(658_560, 65_856, 100_000)
    assert len(plan) == 7 and sum(k for *_, k in plan) == 65_856
    assert plan[0][0] == 0 and plan[-1][1] == 658_560
    assert all(b == a2 for (_, b, _), (a2, _, _) in itertools.pairwise(plan))
    assert chunk_plan(1000, 100, 5000) == [(0, 1000, 100)]
    odd = chunk_plan(1003, 7, 250)
    assert sum(k for *_, k in odd) == 7


def test_the_chunked_coreset_is_each_chunks_greedy_and_covers_within_their_radius():
    from edgead.components.coreset import (
        chunk_plan,
        covering_radius,
        first_pick,
        k_center_greedy_chunked,
    )

    x = clustered(per=100)
    picks = k_center_greedy_chunked(x, 150, chunk=400, projection_dim=None, seed=2)
    plan = chunk_plan(len(x), 150, 400)
    assert len(plan) > 1 and len(picks) == 150 == len(set(picks.tolist()))
    worst = 0.0
    for i, (a, b, k) in enumerate(plan):
        mine = picks[(picks >= a) & (picks < b)]
        assert len(mine) == k  # each chunk's share, from its own rows
        assert (mine - a).tolist() == naive_picks(x[a:b], k, first_pick(b - a, 2 + i))
        worst = max(worst, covering_radius(x[a:b], mine - a))
    assert covering_radius(x, picks) <= worst + 1e-4
    # a share of the picks made over all rows after the chunks: as many picks, no repeats,
    # and the farthest rows of the whole picked first, so the radius does not grow
    refined = k_center_greedy_chunked(x, 150, chunk=400, projection_dim=None, seed=2, refine=0.2)
    assert len(refined) == 150 == len(set(refined.tolist()))
    assert covering_radius(x, refined) <= covering_radius(x, picks) * 1.05
    # one chunk: the one greedy
    one = k_center_greedy_chunked(x, 50, chunk=10_000, projection_dim=None, seed=2)
    assert one.tolist() == k_center_greedy(x, 50, projection_dim=None, seed=2).tolist()


def test_the_estimate_times_two_samples_and_scales_them_to_the_fit():
    from edgead.components.coreset import ESTIMATE_FROM, ESTIMATE_ROWS, estimate_seconds

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(64, 16, generator=g) * 4
    x = centres[torch.randint(64, (ESTIMATE_FROM,), generator=g)]
    x = x + torch.randn(x.shape, generator=g)
    assert estimate_seconds(x[: ESTIMATE_FROM - 1], 1000, projection_dim=None) is None
    one = estimate_seconds(x, ESTIMATE_FROM // 10, projection_dim=None)
    assert [s[:2] for s in one["samples"]] == [[n, n // 10] for n in ESTIMATE_ROWS]
    assert 1.0 <= one["exponent"] <= 2.0
    # the power law through the samples, at the fit's rows
    t2 = one["samples"][1][2]
    expected = t2 * (ESTIMATE_FROM / ESTIMATE_ROWS[1]) ** one["exponent"]
    assert one["seconds"] == pytest.approx(expected, rel=0.02, abs=0.06)
    # chunks: each chunk's share, plus the refinement's share of the one greedy
    chunked = estimate_seconds(x, ESTIMATE_FROM // 10, 100_000, None, refine=0.1)
    t2, b = chunked["samples"][1][2], chunked["exponent"]
    rows = ESTIMATE_FROM // 2  # two chunks of 125,000

    def one_greedy(n):
        return t2 * (n / ESTIMATE_ROWS[1]) ** b

    expected = 0.9 * 2 * one_greedy(rows) + 0.1 * one_greedy(ESTIMATE_FROM)
    assert chunked["seconds"] == pytest.approx(expected, rel=0.02, abs=0.06)
