"""EfficientAD and PUAD pieces: network shapes, teacher weights files, map normalization,
the FP16 graph, and PUAD's Mahalanobis distance in torch and in the runtime scorer."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgead.detectors.efficientad.model import (  # noqa: E402
    AutoEncoder,
    EfficientAdConfig,
    EfficientAdGraph,
    EfficientAdModel,
    load_teacher,
    map_size,
    pdn,
)
from edgead.errors import EdgeadError  # noqa: E402
from edgead.runtime.scorers.efficientad import EfficientAdScorer  # noqa: E402


@pytest.mark.parametrize("size", ["small", "medium"])
def test_pdn_maps_256_pixels_to_the_papers_56_grid(size):
    x = torch.zeros(1, 3, 256, 256)
    with torch.no_grad():
        assert pdn(size, 384)(x).shape == (1, 384, 56, 56)
        assert pdn(size, 768)(x).shape == (1, 768, 56, 56)
    assert map_size((256, 256)) == (56, 56)


@pytest.mark.parametrize("side", [64, 128, 256])
def test_autoencoder_output_matches_the_pdn_grid(side):
    grid = map_size((side, side))
    ae = AutoEncoder(384, (side, side), grid).eval()
    with torch.no_grad():
        assert ae(torch.zeros(1, 3, side, side)).shape == (1, 384, *grid)
    # the paper's decoder sizes at 256
    if side == 256:
        sizes = [m.size for m in ae.decoder if isinstance(m, torch.nn.Upsample)]
        assert sizes == [(3, 3), (8, 8), (15, 15), (32, 32), (63, 63), (127, 127), (56, 56)]


def test_autoencoder_refuses_sizes_it_cannot_encode():
    with pytest.raises(EdgeadError, match="multiples of 32"):
        AutoEncoder(384, (100, 100), (20, 20))


@pytest.mark.parametrize("size", ["small", "medium"])
def test_published_teacher_layouts_load(tmp_path, size):
    """nn.Sequential keys (the public reproduction) and anomalib's conv1.. names both load."""
    source = pdn(size, 384)
    plain = tmp_path / f"teacher_{size}.pth"
    torch.save(source.state_dict(), plain)
    convs = [k for k in source.state_dict() if k.endswith(".weight")]
    renamed = {}
    for key, value in source.state_dict().items():
        index, param = key.split(".")
        number = [c.split(".")[0] for c in convs].index(index) + 1
        renamed[f"model.teacher.conv{number}.{param}"] = value
    anomalib = tmp_path / f"pretrained_teacher_{size}.pth"
    torch.save(renamed, anomalib)
    for path in (plain, anomalib):
        teacher = pdn(size, 384)
        load_teacher(teacher, path, size)
        for a, b in zip(teacher.state_dict().values(), source.state_dict().values(), strict=True):
            assert torch.equal(a, b)


def test_teacher_file_that_does_not_fit_is_refused(tmp_path):
    wrong = tmp_path / "teacher_medium.pth"
    torch.save(pdn("medium", 384).state_dict(), wrong)
    with pytest.raises(EdgeadError, match=r"teacher_medium.pth: does not fit a small teacher"):
        load_teacher(pdn("small", 384), wrong, "small")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(EdgeadError, match=r"junk.pth: not a PyTorch state dict"):
        load_teacher(pdn("small", 384), junk, "small")
    with pytest.raises(EdgeadError, match="file not found"):
        load_teacher(pdn("small", 384), tmp_path / "absent.pth", "small")


def small_model(puad: bool = False) -> EfficientAdModel:
    torch.manual_seed(0)
    return EfficientAdModel(EfficientAdConfig(image_size=(64, 64), puad=puad)).eval()


def test_quantile_normalization_maps_q_start_to_0_and_q_end_to_0_1():
    model = small_model()
    model.quantiles.copy_(torch.tensor([2.0, 4.0, 10.0, 30.0]))
    grid = model.map_size
    st = torch.full((1, 1, *grid), 4.0)  # q_st_end
    ae = torch.full((1, 1, *grid), 10.0)  # q_ae_start
    amap = model.combine(st, ae, (64, 64))
    # 0.5 * 0.1 + 0.5 * 0.0 inside; the padded border is 0 before upsampling
    assert float(amap[0, 32, 32]) == pytest.approx(0.05, abs=1e-6)
    assert float(amap[0, 0, 0]) < 0.05


def test_fp16_graph_keeps_the_fp32_arithmetic_close():
    model = small_model()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        full = EfficientAdGraph(model)(x)
        half = EfficientAdGraph(model, half=True)(x)
    assert all(h.dtype == torch.float32 for h in half)
    for f, h in zip(full, half, strict=True):
        assert float((f - h).abs().max()) <= 0.02 * float(f.abs().max()) + 1e-6


def test_puad_mahalanobis_agrees_in_torch_numpy_and_by_definition():
    model = small_model(puad=True)
    rng = np.random.default_rng(0)
    d = model.pooled_dim
    feats = rng.normal(size=(400, d)) @ rng.normal(size=(d, d)) * 0.1
    mean = feats.mean(0)
    cov = np.cov(feats, rowvar=False) + 0.5 * np.eye(d)
    whitening = np.linalg.inv(np.linalg.cholesky(cov))
    model.puad_mean.copy_(torch.from_numpy(mean))
    model.puad_whitening.copy_(torch.from_numpy(whitening))
    probe = rng.normal(size=(3, d))
    by_definition = np.sqrt(
        np.einsum("bi,ij,bj->b", probe - mean, np.linalg.inv(cov), probe - mean)
    )
    in_torch = model.mahalanobis(torch.from_numpy(probe)).numpy()
    scorer = EfficientAdScorer({"puad": {"dim": d}}, mean, whitening)
    np.testing.assert_allclose(in_torch, by_definition, rtol=1e-9)
    np.testing.assert_allclose(scorer.mahalanobis(probe), by_definition, rtol=1e-9)
