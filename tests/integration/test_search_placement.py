"""`--search`: PatchCore and SPADE bundles score the same whether their memory banks are searched
by faiss or by the torch matrix-product search (on the CPU here; on CUDA with FP16 products
where a GPU is), and the reports say which search ran."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from edgead.bundle.io import open_bundle  # noqa: E402
from edgead.cli import main  # noqa: E402
from edgead.data.images import read_image  # noqa: E402
from edgead.runtime import Pipeline  # noqa: E402
from edgead.runtime.parity import run_parity  # noqa: E402
from edgead.runtime.scorers.base import read_index  # noqa: E402
from edgead.runtime.scorers.knn import KnnScorer  # noqa: E402
from edgead.runtime.search import FaissSearch, TorchSearch  # noqa: E402


def sample_images(synthetic_data, n=6):
    return [read_image(p) for p in sorted((synthetic_data / "test").glob("*/*.png"))[:n]]


@pytest.mark.parametrize("name", ["patchcore", "spade"])
def test_torch_search_scores_like_faiss(fitted, name, synthetic_data):
    images = sample_images(synthetic_data)
    bundle = fitted.bundle(name)
    with Pipeline(bundle, search="faiss") as f, Pipeline(bundle, search="torch-cpu") as t:
        assert f.describe().endswith("search faiss") and t.describe().endswith("search torch-cpu")
        a, b = f.predict(images), t.predict(images)
    np.testing.assert_allclose([p.image_score for p in b], [p.image_score for p in a], rtol=1e-5)
    for p, q in zip(a, b, strict=True):
        np.testing.assert_allclose(q.anomaly_map, p.anomaly_map, rtol=1e-4, atol=1e-5)


def test_reweighting_reads_the_bank_through_either_search(fitted, synthetic_data):
    bundle = open_bundle(fitted.bundle("patchcore"))
    p = bundle.manifest.scorer.params
    index = read_index(bundle, bundle.manifest.graph.output_shapes[p.output][-1])
    with Pipeline(bundle) as pipe:
        outputs = pipe.backend.infer(
            {
                pipe.input_name: np.stack(
                    [pipe_input(pipe, im) for im in sample_images(synthetic_data)]
                )
            }
        )
    scorers = [
        KnnScorer(FaissSearch(index), p.output, True, 9),
        KnnScorer(TorchSearch(index.reconstruct_n(0, index.ntotal), "cpu"), p.output, True, 9),
    ]
    a, b = (s.run(outputs) for s in scorers)
    np.testing.assert_allclose(b.image_scores, a.image_scores, rtol=2e-5)
    plain = KnnScorer(FaissSearch(index), p.output, False, 9).run(outputs)
    # Eq. 7's weight, 1 - softmax over the neighbourhood: near 1 at these distances, not 1
    weights = a.image_scores / plain.image_scores
    assert np.all(weights <= 1) and np.any(weights < 1 - 1e-6), weights


def pipe_input(pipe, image):
    from edgead.runtime.preprocess import preprocess

    return preprocess(image, pipe.spec)


def test_parity_and_bench_report_the_search(fitted, synthetic_data, tmp_path):
    bundle = fitted.bundle("patchcore")
    report = run_parity(bundle, synthetic_data, search="torch-cpu", precision="fp32")
    assert report.passed and report.backend.endswith("search torch-cpu fp32"), report.table()
    out = tmp_path / "bench"
    result = CliRunner().invoke(
        main,
        [
            *("bench", str(bundle), "--search", "torch-cpu", "--iterations", "3"),
            *("--warmup", "1", "--batch", "1", "--format", "json", "--out", str(out)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "bench.json").read_text())["backend"].endswith("search torch-cpu")


def test_gpu_search_asked_for_without_a_gpu_is_refused_clearly(fitted):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: torch-cuda is available")
    result = CliRunner().invoke(
        main, ["bench", str(fitted.bundle("patchcore")), "--search", "torch-cuda"]
    )
    assert result.exit_code != 0
    assert "sees no CUDA GPU" in result.output


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU search needs a CUDA GPU")
@pytest.mark.parametrize("name", ["patchcore", "spade"])
def test_gpu_search_passes_parity(fitted, name, synthetic_data):
    report = run_parity(fitted.bundle(name), synthetic_data, search="torch-cuda")
    assert report.passed, report.table()
