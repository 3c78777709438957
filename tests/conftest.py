"""Shared fixtures: a small synthetic MVTec-style category, a fitted PatchCore and its bundle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# the toy detector registers itself: every contract test over the registry includes it
import tests.toy_detector  # noqa: E402, F401


def shared_data() -> Path | None:
    """The real MVTec-layout subsets: $EDGEAD_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("EDGEAD_DATA")
    root = Path(env) if env else REPO.parent / "shared" / "data"
    return root if root.is_dir() else None


def real_category(name: str) -> Path:
    root = shared_data()
    if root is None:
        pytest.skip("real data absent: set EDGEAD_DATA or put the MVTec subsets in ../shared/data")
    path = root / name
    if not (path / "train" / "good").is_dir():
        pytest.skip(f"real data category {name} absent from {root}")
    return path


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgead.data.synthetic import generate

    return generate(
        tmp_path_factory.mktemp("synthetic") / "parts",
        n_train=16,
        n_test_good=6,
        n_test_defect=4,
        size=160,
        seed=1,
    )


SMALL_CONFIGS = {
    "patchcore": {"image_size": (128, 128), "coreset_ratio": 0.1, "batch_size": 8},
    "padim": {"image_size": (128, 128), "batch_size": 8},
    "spade": {"image_size": (128, 128), "k": 10, "gallery_k": 3, "batch_size": 8},
    # a few dozen steps: enough to prove the machinery (export, parity, engines), not to
    # train a good EfficientAD; that takes tens of thousands of steps (README)
    "efficientad": {"image_size": (64, 64), "steps": 40, "teacher_steps": 20, "batch_size": 8},
    "puad": {"image_size": (64, 64), "steps": 40, "teacher_steps": 20, "batch_size": 8},
}


class Fitted:
    """Fits and exports each registered detector once per session, on first use."""

    def __init__(self, data: Path, root: Path):
        self.data, self.root = data, root
        self.saved: dict = {}
        self.bundles: dict[str, Path] = {}

    def model(self, name: str):
        if name not in self.saved:
            from edgead.detectors.registry import get_detector
            from edgead.workflows import fit_detector

            # a detector without an entry fits with its own defaults (the toy detector)
            config = get_detector(name).config_cls(**SMALL_CONFIGS.get(name, {}))
            self.saved[name] = fit_detector(name, self.data, config, quiet=True)
        return self.saved[name]

    def bundle(self, name: str) -> Path:
        if name not in self.bundles:
            from edgead.workflows import export_model

            self.bundles[name] = export_model(self.model(name), self.root / name)
        return self.bundles[name]


@pytest.fixture(scope="session")
def fitted(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Fitted:
    pytest.importorskip("torch")
    return Fitted(synthetic_data, tmp_path_factory.mktemp("detectors"))


@pytest.fixture(scope="session")
def saved_patchcore(fitted: Fitted):
    return fitted.model("patchcore")


@pytest.fixture(scope="session")
def patchcore_bundle(fitted: Fitted) -> Path:
    return fitted.bundle("patchcore")


def rewrite_manifest(path: Path, manifest: dict) -> None:
    """Write a changed manifest as a (buggy) writer would: with a digest that matches it, so
    that the check under test, not the digest check, decides."""
    import json

    from edgead.bundle.integrity import manifest_digest

    manifest = {**manifest, "digest": manifest_digest(manifest)}
    path.write_text(json.dumps(manifest, indent=2))


def shuffle_conv_weights(model, seed: int = 0):
    """The ONNX ``model`` with every 4-D FP32 weight's values shuffled, in place: a graph that
    fails any parity gate."""
    import numpy as np
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.ndim == 4:
            shuffled = rng.permutation(w.ravel()).reshape(w.shape)
            init.CopyFrom(numpy_helper.from_array(shuffled, init.name))
    return model


@pytest.fixture(scope="session")
def quantized(fitted, synthetic_data, tmp_path_factory):
    """The PatchCore bundle with an INT8 graph gated on onnxruntime only. The toy model's
    four defect images make AUPRO and ranks coarse, and INT8 arithmetic differs between CPUs
    (on a 2-core AVX2 EPYC without VNNI image ROCAUC went 100 -> 98.6, AUPRO -1.3): the gate is
    held to the tolerances this bundle's manifest sets (3 points, rho >= 0.95), which also
    shows that it reads them."""
    import json
    import shutil

    pytest.importorskip("nncf", reason="INT8 quantization needs `pip install 'edgead[openvino]'`")
    from edgead.export.quantize import Int8Settings, add_int8_graph

    root = tmp_path_factory.mktemp("int8") / "patchcore"
    shutil.copytree(fitted.bundle("patchcore"), root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["parity"] |= {"int8_rocauc_points": 3.0, "int8_rank": 0.95}
    rewrite_manifest(root / "manifest.json", manifest)
    meta = add_int8_graph(root, synthetic_data, Int8Settings(images=8, backends=("onnxruntime",)))
    return root, meta


def tensorrt_flavour() -> str | None:
    """Which TensorRT module builds engines here ("tensorrt" or "tensorrt-rtx"), or None."""
    from edgead.errors import EdgeadError
    from edgead.runtime.backends.trt_support import tensorrt_module

    try:
        return tensorrt_module()[1]
    except EdgeadError:
        return None


TRT_FLAVOUR = tensorrt_flavour()
needs_trt_builder = pytest.mark.skipif(
    TRT_FLAVOUR is None, reason="no TensorRT or TensorRT-RTX installed (pip install 'edgead[trt]')"
)
