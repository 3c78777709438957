"""The torch backend: every detector's torch.export program scores like the PyTorch model
(parity on the synthetic set) on the CPU here; its CUDA path (FP16 autocast, channels_last,
CUDA graphs) runs where a GPU is."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgead.detectors.registry import detector_names  # noqa: E402
from edgead.errors import BackendError, BundleError  # noqa: E402
from edgead.runtime import Pipeline  # noqa: E402
from edgead.runtime.parity import run_parity  # noqa: E402
from edgead.workflows import export_model  # noqa: E402
from tests.conftest import rewrite_manifest  # noqa: E402

NAMES = detector_names()
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
        Pipeline(torch_bundles["patchcore"], backend="torch", device="cpu") as t,
        Pipeline(torch_bundles["patchcore"], backend="onnxruntime", precision="fp32") as o,
    ):
        a, b = t.predict(images), o.predict(images)
        assert t.backend.describe() == "torch[cpu]"
    np.testing.assert_allclose([p.image_score for p in a], [p.image_score for p in b], rtol=1e-4)


def test_fp16_program_runs_on_the_cpu_and_scores_like_onnxruntime_fp16(
    torch_bundles, synthetic_data
):
    """The FP16 program is the FP16 ONNX graph's module: real FP16 arithmetic, CPU included."""
    report = run_parity(
        torch_bundles["patchcore"], synthetic_data, backend="torch", device="cpu", precision="fp16"
    )
    assert report.passed, report.table()
    with Pipeline(
        torch_bundles["patchcore"], backend="torch", device="cpu", precision="fp16"
    ) as pipe:
        assert not pipe.backend.autocast
        assert pipe.backend.path.name == "graph_fp16.pt2"


@pytest.fixture(scope="module")
def fp32_program_only(torch_bundles, tmp_path_factory):
    """A bundle as written before the FP16 program existed: the FP32 program alone."""
    from edgead.bundle.io import open_bundle

    root = tmp_path_factory.mktemp("old_bundle") / "patchcore"
    shutil.copytree(torch_bundles["patchcore"], root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["role"] != "torch_graph_fp16"]
    (root / "graph_fp16.pt2").unlink()
    rewrite_manifest(root / "manifest.json", manifest)
    open_bundle(root)
    return root


def test_autocast_fallback_on_the_cpu_is_refused_not_run_as_fp32(fp32_program_only):
    with pytest.raises(BackendError, match="autocast FP16 runs on CUDA only"):
        Pipeline(fp32_program_only, backend="torch", device="cpu", precision="fp16")


def test_autocast_runs_programs_that_cast_to_fp32():
    """torch.export guards every .float() with a dtype assertion that autocast trips; the
    backend drops those assertions for its autocast path (CPU autocast in bfloat16 shows it)."""
    from torch import nn

    from edgead.runtime.backends.torch_backend import drop_metadata_asserts

    class CastsUp(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.conv(x).float().sum(1)

    program = torch.export.export(CastsUp().eval(), (torch.randn(1, 3, 4, 4),))
    module = program.module()
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(RuntimeError, match="dtype"):
        module(torch.randn(1, 3, 4, 4))
    drop_metadata_asserts(module)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert module(torch.randn(1, 3, 4, 4)).dtype == torch.float32


@pytest.fixture(scope="module")
def graph_search_bundle(fitted, tmp_path_factory):
    out = tmp_path_factory.mktemp("graph_search") / "patchcore"
    return export_model(fitted.model("patchcore"), out, search="graph", torch_graph=True)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_in_graph_search_program_passes_parity_on_the_cpu(
    graph_search_bundle, synthetic_data, precision
):
    report = run_parity(
        graph_search_bundle, synthetic_data, backend="torch", device="cpu", precision=precision
    )
    assert report.passed, report.table()


def test_bundle_without_the_program_says_how_to_add_it(fitted):
    with pytest.raises(BundleError, match="--torch-graph"):
        Pipeline(fitted.bundle("padim"), backend="torch", device="cpu")


def fp16_rows_pass(report) -> None:
    """FP16 on the 18 synthetic images: golden outputs and every image's score within the FP16
    tolerances. One swapped pair moves ROCAUC by 1.4 points there (SPADE on an H100 did that);
    the FP16 ROCAUC tolerance is checked on the real data."""
    rows = {r.check.split(" (")[0]: r for r in report.rows}
    for check, row in rows.items():
        if check.startswith("golden") or check == "per-image score":
            assert row.ok, report.table()


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_cuda_graphs_fp16_score_like_fp32(torch_bundles, name, synthetic_data):
    fp32 = run_parity(
        torch_bundles[name], synthetic_data, backend="torch", device="cuda", precision="fp32"
    )
    assert fp32.passed, fp32.table()
    fp16_rows_pass(
        run_parity(
            torch_bundles[name], synthetic_data, backend="torch", device="cuda", precision="fp16"
        )
    )


@needs_cuda
@pytest.mark.gpu
def test_cuda_in_graph_search_and_autocast_fallback(
    graph_search_bundle, fp32_program_only, synthetic_data
):
    for bundle in (graph_search_bundle, fp32_program_only):
        fp32 = run_parity(bundle, synthetic_data, backend="torch", device="cuda")
        assert fp32.passed, fp32.table()
        fp16_rows_pass(
            run_parity(bundle, synthetic_data, backend="torch", device="cuda", precision="fp16")
        )


def test_pipeline_uint8_path_scores_like_the_float_path(fitted, synthetic_data, monkeypatch):
    """The pipeline's uint8 route (what the CUDA backend takes), run on the CPU by a backend
    that normalizes like the device does: the same scores as the float32 route."""
    from edgead.data.images import read_image
    from edgead.runtime.backends.onnxruntime import OnnxRuntimeBackend

    class NormalizesItself(OnnxRuntimeBackend):
        takes_uint8 = True

        def infer_uint8(self, images, scale, offset):
            x = images.transpose(0, 3, 1, 2).astype(np.float32)
            x = x * scale[None, :, None, None] + offset[None, :, None, None]
            return self.infer({"input": np.ascontiguousarray(x)})

    images = [read_image(p) for p in sorted((synthetic_data / "test").glob("*/*.png"))[:5]]
    bundle = fitted.bundle("patchcore")
    with Pipeline(bundle, backend="onnxruntime", precision="fp32") as plain:
        want = plain.predict(images)
    monkeypatch.setitem(
        __import__("edgead.runtime.backends.base", fromlist=["BACKENDS"]).BACKENDS,
        "onnxruntime",
        NormalizesItself,
    )
    with Pipeline(bundle, backend="onnxruntime", precision="fp32") as pipe:
        assert pipe.backend.takes_uint8
        got = pipe.predict(images)
    assert [p.image_score for p in got] == [p.image_score for p in want]
