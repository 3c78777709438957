"""The torch backend: every detector's torch.export program scores like the PyTorch model
(parity on the synthetic set) on the CPU here; its CUDA path (FP16 autocast, channels_last,
CUDA graphs) runs where a GPU is."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgead.errors import BackendError, BundleError  # noqa: E402
from edgead.models.registry import DETECTORS, get_detector  # noqa: E402
from edgead.runtime import Pipeline  # noqa: E402
from edgead.runtime.parity import run_parity  # noqa: E402
from edgead.workflows import export_model  # noqa: E402

get_detector("patchcore")
NAMES = sorted(DETECTORS)
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="the torch backend's CUDA path needs a CUDA GPU"
)


@pytest.fixture(scope="module")
def torch_bundles(fitted, tmp_path_factory):
    root = tmp_path_factory.mktemp("torch_bundles")
    return {name: export_model(fitted.model(name), root / name, torch_graph=True) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_torch_program_passes_parity_on_the_cpu(torch_bundles, name, synthetic_data):
    report = run_parity(torch_bundles[name], synthetic_data, backend="torch", device="cpu")
    assert report.passed, report.table()
    rows = {r.check.split(" (")[0]: r for r in report.rows}
    assert rows["image ROCAUC"].ok and rows["per-image score"].ok, report.table()


def test_torch_and_onnxruntime_agree_image_by_image(torch_bundles, synthetic_data):
    from edgead.data.images import read_image

    images = [read_image(p) for p in sorted((synthetic_data / "test").glob("*/*.png"))[:4]]
    with (
        Pipeline(torch_bundles["patchcore"], "torch", "cpu") as t,
        Pipeline(torch_bundles["patchcore"]) as o,
    ):
        a, b = t.predict(images), o.predict(images)
        assert t.backend.describe() == "torch[cpu]"
    np.testing.assert_allclose([p.image_score for p in a], [p.image_score for p in b], rtol=1e-4)


def test_fp16_on_the_cpu_is_refused_not_run_as_fp32(torch_bundles):
    with pytest.raises(BackendError, match="FP16 runs on CUDA only"):
        Pipeline(torch_bundles["padim"], "torch", "cpu", precision="fp16")


def test_bundle_without_the_program_says_how_to_add_it(fitted):
    with pytest.raises(BundleError, match="--torch-graph"):
        Pipeline(fitted.bundle("padim"), "torch", "cpu")


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("name", ["patchcore", "efficientad"])
def test_cuda_graphs_fp16_score_like_fp32(torch_bundles, name, synthetic_data):
    for precision in ("fp32", "fp16"):
        report = run_parity(
            torch_bundles[name], synthetic_data, backend="torch", device="cuda", precision=precision
        )
        assert report.passed, report.table()
