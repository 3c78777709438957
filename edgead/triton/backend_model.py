"""The Python-backend models of an edgead Triton repository.

Triton loads each model's ``1/model.py``, a two-line file that imports one of the classes
below as ``TritonPythonModel``; the edgead runtime (torch-free) does the work:

- :class:`BundleModel`: image in, verdict out: decode (or take pixels), preprocess, graph,
  scorer, post-processing; the whole runtime in one model (CPU or GPU servers);
- :class:`PreprocessModel` and :class:`ScorerModel`: the two Python steps of the ensemble
  form, around the graph that Triton's onnxruntime or TensorRT backend runs.

Triton's dynamic batcher hands ``execute`` several requests at once; their images are scored
as one batch. A request that cannot be used (a corrupt image, a wrong shape) gets an error
response of its own; the others are answered, and the model keeps serving.

``triton_python_backend_utils`` exists only inside Triton's Python stub: it is imported when
a model is initialized, so this module imports anywhere (its pure parts have unit tests).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgead.errors import EdgeadError, ImageDecodeError

if TYPE_CHECKING:
    from edgead.runtime.settings import RuntimeSettings

OUTPUTS = ("SCORE", "NORMALIZED_SCORE", "ANOMALOUS", "MAP")
MIN_SIDE = 8  # smaller images are refused: no camera frame is this small


class RequestError(ValueError):
    """This request cannot be scored; the message is the error response's text."""


def images_of(
    image: np.ndarray | None, encoded: np.ndarray | None, where: str = "request"
) -> list[np.ndarray]:
    """The RGB uint8 images of one request: IMAGE pixels ([n, H, W, 3] uint8) or ENCODED
    files ([n, 1] bytes: PNG, JPEG, BMP, TIFF, WebP), exactly one of the two."""
    from edgead.data.images import decode_image

    if (image is None) == (encoded is None):
        raise RequestError(f"{where}: give exactly one input, IMAGE (uint8 pixels) or ENCODED")
    if image is not None:
        if image.dtype != np.uint8:
            raise RequestError(f"{where}: IMAGE must be uint8, got {image.dtype}")
        if image.ndim != 4 or image.shape[-1] != 3:
            raise RequestError(
                f"{where}: IMAGE must be [batch, height, width, 3] RGB, got {list(image.shape)}"
            )
        if min(image.shape[1:3]) < MIN_SIDE:
            raise RequestError(
                f"{where}: IMAGE of {image.shape[2]}x{image.shape[1]} pixels is too small "
                f"(at least {MIN_SIDE}x{MIN_SIDE})"
            )
        return [np.ascontiguousarray(im) for im in image]
    images = []
    for k, item in enumerate(encoded.reshape(-1)):
        data = item if isinstance(item, bytes) else bytes(item)
        try:
            images.append(decode_image(data, f"{where} ENCODED[{k}]"))
        except ImageDecodeError as exc:
            raise RequestError(str(exc)) from exc
    return images


def outputs_of(results: list) -> dict[str, np.ndarray]:
    """The response tensors for a request's results (Predictions, in order)."""
    nan = float("nan")
    return {
        "SCORE": np.array([[r.image_score] for r in results], np.float32),
        "NORMALIZED_SCORE": np.array(
            [[nan if r.normalized_score is None else r.normalized_score] for r in results],
            np.float32,
        ),
        # no threshold in the bundle: nothing is called anomalous (the score still comes back)
        "ANOMALOUS": np.array([[r.label == "anomalous"] for r in results], np.bool_),
        "MAP": np.stack([r.anomaly_map.astype(np.float32, copy=False) for r in results]),
    }


def parameters(args: dict) -> dict[str, str]:
    config = json.loads(args["model_config"])
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def bundle_path(args: dict, params: dict[str, str]) -> Path:
    """The bundle folder, relative to the model's version folder (``1/bundle``) or the
    repository (``@repo/...``, for models that share one copy)."""
    model_dir = Path(args["model_repository"])
    rel = params.get("edgead_bundle", "bundle")
    if rel.startswith("@repo/"):
        return model_dir.parent / rel[len("@repo/") :]
    return model_dir / str(args.get("model_version", "1")) / rel


def threads_for(params: dict[str, str], config: dict, cores: int) -> int:
    """Threads per instance: ``edgead_threads``, else the cores shared among the CPU
    instances of this model (each instance is a process of its own: N instances each using
    every core would fight over them)."""
    given = int(params.get("edgead_threads") or 0)
    if given > 0:
        return given
    cpu_instances = sum(
        int(g.get("count", 1))
        for g in config.get("instance_group", [])
        if g.get("kind", "KIND_CPU") in ("KIND_CPU", "KIND_AUTO")
    )
    return max(1, cores // max(1, cpu_instances))


def settings_of(args: dict, params: dict[str, str], threads: int) -> RuntimeSettings:
    """The RuntimeSettings of the model's ``edgead_*`` parameters and its instance's device."""
    from edgead.runtime.settings import RuntimeSettings

    return RuntimeSettings(
        backend=params.get("edgead_backend", "onnxruntime"),
        device=device_of(args),
        precision=params.get("edgead_precision", "fp32"),
        search=params.get("edgead_search", "auto"),
        threads=threads,
    )


def device_of(args: dict) -> str | None:
    if args.get("model_instance_kind") == "GPU":
        return f"cuda:{args.get('model_instance_device_id', 0)}"
    return None


class _Base:
    def _respond(self, requests: list, handle) -> list:
        import triton_python_backend_utils as pb_utils

        responses = []
        for k, request in enumerate(requests):
            try:
                tensors = handle(request, k)
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[pb_utils.Tensor(n, v) for n, v in tensors.items()]
                    )
                )
            except (RequestError, EdgeadError) as exc:
                error = pb_utils.TritonError(str(exc))
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
            except Exception as exc:  # anything else: this request fails, the model serves on
                error = pb_utils.TritonError(f"request {k}: {exc.__class__.__name__}: {exc}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
        return responses


class BundleModel(_Base):
    """The whole edgead runtime as one Python-backend model."""

    def initialize(self, args: dict) -> None:
        from edgead.runtime.pipeline import Pipeline
        from edgead.threads import usable_cores

        params = parameters(args)
        config = json.loads(args["model_config"])
        threads = threads_for(params, config, usable_cores())
        self.pipeline = Pipeline(bundle_path(args, params), settings_of(args, params, threads))

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils

        # decode every request first; a bad one is answered with its error, the rest batched
        decoded: list[list[np.ndarray] | RequestError] = []
        for k, request in enumerate(requests):
            image = pb_utils.get_input_tensor_by_name(request, "IMAGE")
            encoded = pb_utils.get_input_tensor_by_name(request, "ENCODED")
            try:
                decoded.append(
                    images_of(
                        None if image is None else image.as_numpy(),
                        None if encoded is None else encoded.as_numpy(),
                        f"request {k}",
                    )
                )
            except RequestError as exc:
                decoded.append(exc)
        good = [d for d in decoded if not isinstance(d, RequestError)]
        try:  # the usable requests' images as one batch, split back per request
            flat = self.pipeline.predict([im for d in good for im in d]) if good else []
            bounds = itertools.accumulate((len(d) for d in good), initial=0)
            scored = iter([flat[a:b] for a, b in itertools.pairwise(bounds)])
        except Exception:  # one request's image may be at fault: each is scored alone below
            scored = None

        def handle(request, k):
            d = decoded[k]
            if isinstance(d, RequestError):
                raise d
            return outputs_of(next(scored) if scored is not None else self.pipeline.predict(d))

        return self._respond(requests, handle)

    def finalize(self) -> None:
        self.pipeline.close()


class PreprocessModel(_Base):
    """Ensemble step 1: IMAGE (uint8 pixels) -> the graph's input tensor."""

    def initialize(self, args: dict) -> None:
        from edgead.bundle.io import open_bundle

        params = parameters(args)
        bundle = open_bundle(bundle_path(args, params))
        self.spec = bundle.manifest.input
        self.output = params.get("edgead_output", bundle.manifest.graph.input_name)
        self.dtype = np.float16 if params.get("edgead_precision") == "fp16" else np.float32

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils

        from edgead.runtime.preprocess import preprocess_batch

        def handle(request, k):
            image = pb_utils.get_input_tensor_by_name(request, "IMAGE")
            images = images_of(None if image is None else image.as_numpy(), None, f"request {k}")
            batch = preprocess_batch(images, self.spec)
            return {self.output: batch.astype(self.dtype, copy=False)}

        return self._respond(requests, handle)


class ScorerModel(_Base):
    """Ensemble step 3: the graph's outputs -> score, normalized score, verdict, map."""

    def initialize(self, args: dict) -> None:
        from edgead.bundle.io import open_bundle
        from edgead.runtime.scorers.base import load_scorer
        from edgead.runtime.search import resolve_search

        params = parameters(args)
        self.bundle = open_bundle(bundle_path(args, params))
        m = self.bundle.manifest
        host = m.scorer.host_search
        on_gpu = device_of(args) is not None
        search = settings_of(args, params, 1).search
        self.scorer = load_scorer(self.bundle, resolve_search(search, on_gpu, host))
        self.inputs = list(m.graph.output_names)
        self.norm = m.normalization

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils

        from edgead.runtime.pipeline import finish, judged

        def handle(request, k):
            outputs = {}
            for name in self.inputs:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is None:
                    raise RequestError(f"request {k}: graph output {name} missing")
                outputs[name] = tensor.as_numpy().astype(np.float32, copy=False)
            scores, maps = finish(self.bundle.manifest.postprocess, self.scorer.run(outputs))
            return outputs_of(judged(scores, maps, self.norm))

        return self._respond(requests, handle)
