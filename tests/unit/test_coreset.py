import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from edgead.models.common import adaptive_pool_matrix, gaussian_blur, k_center_greedy  # noqa: E402


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
