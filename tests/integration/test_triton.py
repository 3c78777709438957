"""Bundles served by a real Triton Inference Server (the nvidia-pytriton wheel's tritonserver,
CPU, Python backend), queried with tritonclient over HTTP and gRPC.

The server runs its Python models in an environment with numpy<2 (tools/triton-env.sh; the
wheel's stub garbles tensors under numpy 2). Where the wheel or that environment is missing,
the server tests skip and say which; the repository tests (configs parsed with Triton's own
model-config protobuf, the ensemble's wiring checked against the ONNX graph) still run.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="the Triton tests need the triton extra")

import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from edgead.errors import EdgeadError
from edgead.triton.repository import TritonOptions, export_triton

pytestmark = pytest.mark.timeout(300)
OUTPUTS = ("SCORE", "NORMALIZED_SCORE", "ANOMALOUS", "MAP")


@pytest.fixture(scope="module")
def bundles(fitted) -> dict[str, Path]:
    return {"patchcore": fitted.bundle("patchcore"), "padim": fitted.bundle("padim")}


@pytest.fixture(scope="module")
def images(synthetic_data: Path) -> list[tuple[Path, np.ndarray]]:
    from edgead.data.images import read_image

    paths = sorted((synthetic_data / "test").glob("*/*.png"))
    return [(p, read_image(p)) for p in paths]


@pytest.fixture(scope="module")
def reference(bundles, images) -> dict[str, list]:
    """The runtime's predictions of every test image, per bundle."""
    from edgead.runtime import Pipeline

    out = {}
    for name, bundle in bundles.items():
        # what the models serve by default (edgead_backend, edgead_precision), not the
        # bundle's measured default, which depends on the machine
        with Pipeline(bundle, backend="onnxruntime", precision="fp32") as pipe:
            out[name] = [pipe.predict([im])[0] for _, im in images]
    return out


@pytest.fixture(scope="module")
def python_repo(bundles, tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("triton") / "repo"
    models = export_triton(
        [bundles["patchcore"], bundles["padim"]],
        repo,
        TritonOptions(form="python", max_batch=8, max_queue_delay_us=20000, threads=1),
    )
    assert models == ["patchcore", "padim"]
    return repo


@pytest.fixture(scope="module")
def server(python_repo, tmp_path_factory):
    from edgead.triton.local import ENV_VAR, LocalTriton

    # the server's numpy<2 environment: $EDGEAD_TRITON_ENV, else the checkout's .triton-env
    # (tools/triton-env.sh), else this interpreter's (refused, with the reason, under numpy 2)
    local = Path(__file__).resolve().parents[2] / ".triton-env"
    env = os.environ.get(ENV_VAR) or (local if local.is_dir() else None)
    try:
        triton = LocalTriton(python_repo, env, log=tmp_path_factory.mktemp("tlog") / "server.log")
    except EdgeadError as exc:
        pytest.skip(f"no local Triton server here: {exc}")
    triton.start()
    try:
        yield triton
    finally:
        code = triton.stop()
        assert code == 0, triton.output()[-3000:]


def http_infer(url: str, model: str, batch: np.ndarray):
    client = httpclient.InferenceServerClient(url)
    try:
        inp = httpclient.InferInput("IMAGE", list(batch.shape), "UINT8")
        inp.set_data_from_numpy(batch, binary_data=True)
        outs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in OUTPUTS]
        r = client.infer(model, [inp], outputs=outs)
        return {n: r.as_numpy(n) for n in OUTPUTS}
    finally:
        client.close()


def grpc_infer(url: str, model: str, batch: np.ndarray):
    client = grpcclient.InferenceServerClient(url)
    try:
        inp = grpcclient.InferInput("IMAGE", list(batch.shape), "UINT8")
        inp.set_data_from_numpy(batch)
        r = client.infer(model, [inp])
        return {n: r.as_numpy(n) for n in OUTPUTS}
    finally:
        client.close()


def check(result: dict, k: int, ref) -> None:
    """Parity with the runtime: the tolerances of `edgead parity` (scores rel 1e-4, maps within
    1e-4 of their range), and the same verdict."""
    assert result["SCORE"][k, 0] == pytest.approx(ref.image_score, rel=1e-4, abs=1e-5)
    span = float(ref.anomaly_map.max() - ref.anomaly_map.min()) or 1.0
    assert np.abs(result["MAP"][k] - ref.anomaly_map).max() <= 1e-4 * span
    assert bool(result["ANOMALOUS"][k, 0]) == (ref.label == "anomalous")
    if ref.normalized_score is None:
        assert np.isnan(result["NORMALIZED_SCORE"][k, 0])
    else:
        assert result["NORMALIZED_SCORE"][k, 0] == pytest.approx(ref.normalized_score, abs=1e-5)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_concurrent_clients_get_the_runtimes_scores_and_maps(server, images, reference, protocol):
    infer, url = (
        (http_infer, server.http_url) if protocol == "http" else (grpc_infer, server.grpc_url)
    )
    jobs = [(model, k) for model in ("patchcore", "padim") for k in range(len(images))]
    with ThreadPoolExecutor(8) as pool:  # 8 clients at once: the dynamic batcher sees batches
        results = list(pool.map(lambda j: infer(url, j[0], images[j[1]][1][None]), jobs))
    for (model, k), result in zip(jobs, results, strict=True):
        check(result, 0, reference[model][k])


def test_dynamic_batching_scores_requests_together(server, images):
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        before = client.get_inference_statistics("patchcore")["model_stats"][0]
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda k: http_infer(server.http_url, "patchcore", images[k % 4][1][None]),
                    range(16),
                )
            )
        after = client.get_inference_statistics("patchcore")["model_stats"][0]
    finally:
        client.close()
    requests = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert requests == 16
    assert executions < requests, "every request ran alone: no dynamic batching"


def test_a_batch_and_encoded_files_score_like_the_runtime(server, images, reference):
    batch = np.stack([im for _, im in images[:3]])
    check_all = http_infer(server.http_url, "patchcore", batch)
    for k in range(3):
        check(check_all, k, reference["patchcore"][k])
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        files = np.array([[p.read_bytes()] for p, _ in images[:2]], dtype=np.object_)
        inp = grpcclient.InferInput("ENCODED", list(files.shape), "BYTES")
        inp.set_data_from_numpy(files)
        r = client.infer("patchcore", [inp])
        result = {n: r.as_numpy(n) for n in OUTPUTS}
    finally:
        client.close()
    for k in range(2):
        check(result, k, reference["patchcore"][k])


def test_bad_input_gets_an_error_and_the_server_goes_on(server, images, reference):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    image = images[0][1]

    def infer(name: str, array: np.ndarray, dtype: str):
        inp = grpcclient.InferInput(name, list(array.shape), dtype)
        inp.set_data_from_numpy(array)
        return client.infer("patchcore", [inp])

    try:
        with pytest.raises(InferenceServerException, match=r"(?i)data.?type|FP32|UINT8"):
            infer("IMAGE", image[None].astype(np.float32), "FP32")  # wrong dtype
        with pytest.raises(InferenceServerException, match=r"(?i)shape|dims"):
            infer("IMAGE", np.zeros((1, 64, 64, 4), np.uint8), "UINT8")  # 4 channels
        with pytest.raises(InferenceServerException, match="too small"):
            infer("IMAGE", np.zeros((1, 4, 64, 3), np.uint8), "UINT8")
        corrupt = np.array([[b"\x89PNG\r\n\x1a\n cut short"]], dtype=np.object_)
        with pytest.raises(InferenceServerException, match="not a readable image"):
            infer("ENCODED", corrupt, "BYTES")
        both = [
            grpcclient.InferInput("IMAGE", [1, *image.shape], "UINT8"),
            grpcclient.InferInput("ENCODED", [1, 1], "BYTES"),
        ]
        both[0].set_data_from_numpy(image[None])
        both[1].set_data_from_numpy(np.array([[images[0][0].read_bytes()]], dtype=np.object_))
        with pytest.raises(InferenceServerException, match="exactly one input"):
            client.infer("patchcore", both)
        with pytest.raises(InferenceServerException, match="request has 0 inputs"):
            client.infer("patchcore", [])  # refused by Triton itself
        assert client.is_server_live() and client.is_model_ready("patchcore")
        r = infer("IMAGE", image[None], "UINT8")  # and the next good request is answered
        check({n: r.as_numpy(n) for n in OUTPUTS}, 0, reference["patchcore"][0])
    finally:
        client.close()
    assert server.alive()


# -- the repository, without a server ------------------------------------------------------------
def parse(path: Path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_ensemble_configs_are_triton_configs_wired_to_the_graph(bundles, tmp_path):
    import onnxruntime as ort

    repo = tmp_path / "repo"
    models = export_triton([bundles["patchcore"]], repo, TritonOptions(form="both"))
    assert models == [
        "patchcore",
        "patchcore_preprocess",
        "patchcore_graph",
        "patchcore_scorer",
        "patchcore_ensemble",
    ]
    configs = {m: parse(repo / m / "config.pbtxt") for m in models}
    assert configs["patchcore_graph"].platform == "onnxruntime_onnx"
    graph_file = repo / "patchcore_graph" / "1" / "model.onnx"
    source = bundles["patchcore"] / "graph.onnx"
    assert hashlib.sha256(graph_file.read_bytes()).digest() == (
        hashlib.sha256(source.read_bytes()).digest()
    )
    # the graph's config against the graph itself: run it on one input of the configured dims
    gc = configs["patchcore_graph"]
    session = ort.InferenceSession(str(graph_file), providers=["CPUExecutionProvider"])
    (inp,) = gc.input
    x = np.zeros([1, *inp.dims], np.float32)
    outputs = session.run(None, {inp.name: x})
    names = [o.name for o in session.get_outputs()]
    assert [o.name for o in gc.output] == names
    for o, y in zip(gc.output, outputs, strict=True):
        assert list(y.shape[1:]) == list(o.dims), o.name
    assert [o.name for o in configs["patchcore_scorer"].input] == names
    ens = configs["patchcore_ensemble"]
    assert ens.platform == "ensemble"
    produced = {i.name for i in ens.input}
    for step in ens.ensemble_scheduling.step:
        step_config = configs[step.model_name]
        assert set(step.input_map) == {i.name for i in step_config.input}
        assert set(step.output_map) <= {o.name for o in step_config.output}
        assert set(step.input_map.values()) <= produced, step.model_name
        produced |= set(step.output_map.values())
    assert {o.name for o in ens.output} <= produced
    for m in ("patchcore_preprocess", "patchcore_scorer"):
        assert configs[m].parameters["edgead_bundle"].string_value == "@repo/patchcore/1/bundle"
        assert "TritonPythonModel" in (repo / m / "1" / "model.py").read_text()


def test_export_checks_before_writing_and_lands_whole(bundles, tmp_path):
    out = tmp_path / "repo"
    with pytest.raises(EdgeadError, match="repeat"):
        export_triton([bundles["patchcore"], bundles["patchcore"]], out)
    assert not out.exists()
    with pytest.raises(EdgeadError, match="no fp16 TensorRT engine"):
        export_triton(
            [bundles["patchcore"]],
            out,
            TritonOptions(form="ensemble", graph="tensorrt", precision="fp16"),
        )
    assert not out.exists() and not list(tmp_path.glob(".repo.*"))  # nothing half-written
    export_triton([bundles["patchcore"]], out, TritonOptions(form="python"))
    with pytest.raises(EdgeadError, match="exists and is not empty"):
        export_triton([bundles["padim"]], out)
    export_triton([bundles["padim"]], out, TritonOptions(form="python"), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["padim"]
