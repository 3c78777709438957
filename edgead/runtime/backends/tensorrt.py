"""TensorRT backend: a bundle's engine on the GPU.

Device memory goes through cuda-python (``cuda.bindings.runtime``), NVIDIA's maintained
binding of the CUDA runtime API: it ships with the CUDA wheels torch and TensorRT already
pull in, unlike pycuda, which compiles against a local CUDA toolkit. Device buffers for the
profile's largest batch and page-locked host buffers are allocated once and reused;
``execute_async_v3`` runs on the backend's own stream; ``synchronize`` waits on that stream,
so stage timers measure the same thing as on the CPU backends.

CUDA graphs, as TensorRT's developer guide describes them: calls run ``execute_async_v3``
(which also updates the context's state for their input shape) until a shape comes twice in a
row; then the engine's launch is captured into a CUDA graph, and later calls at that shape
replay it. A graph is tied to the shape and context state it was captured with, so one graph is
kept, for the last shape; a shape change runs plainly and captures again when it repeats. An
engine whose launch cannot be captured runs plainly (logged once). ``EDGEAD_TRT_CUDA_GRAPHS=0``
turns capture off.

Not exercised here: this project's CI and development machines have no GPU. The tests run
these paths wherever a GPU and TensorRT exist and skip with that reason elsewhere.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Any

import numpy as np

from edgead.errors import BackendError
from edgead.runtime.backends.base import Backend, TensorMeta, register_backend

log = logging.getLogger(__name__)


def _check(result: Any) -> Any:
    """cuda-python returns (err, *values): raise on error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendError(f"CUDA error {int(err)} ({err})")
    return values[0] if len(values) == 1 else tuple(values)


@register_backend("tensorrt")
class TensorRTBackend(Backend):
    def activate_impl(self) -> None:
        from edgead.runtime.backends.trt_support import current_gpu, tensorrt_module

        try:
            from cuda.bindings import runtime as cudart
        except ImportError as exc:
            raise BackendError(
                "the TensorRT backend needs cuda-python: pip install cuda-python"
            ) from exc
        self.cudart = cudart
        trt, flavour = tensorrt_module()
        meta = self.meta or {}
        rebuild = "rebuild it on this machine with `edgead build-engine BUNDLE`"
        if meta.get("tensorrt") and meta["tensorrt"] != flavour:
            raise BackendError(
                f"{self.path}: built with {meta['tensorrt']}, this machine has {flavour}; {rebuild}"
            )
        if meta.get("tensorrt_version") and meta["tensorrt_version"] != trt.__version__:
            raise BackendError(
                f"{self.path}: built with TensorRT {meta['tensorrt_version']}, "
                f"this is {trt.__version__}; {rebuild}"
            )
        gpu = current_gpu()
        if not gpu:
            raise BackendError(f"{self.path}: no CUDA GPU here; use --backend onnxruntime")
        if (
            meta.get("compute_capability")
            and meta["compute_capability"] != gpu["compute_capability"]
        ):
            raise BackendError(
                f"{self.path}: built for compute capability {meta['compute_capability']}, this "
                f"GPU ({gpu['gpu']}) is {gpu['compute_capability']}; {rebuild}"
            )
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise BackendError(f"{self.path}: TensorRT cannot load this engine; {rebuild}")
        self.context = self.engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate())
        self.inputs: dict[str, TensorMeta] = {}
        self.outputs: list[str] = []
        self.max_batch = 1
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            shape = tuple(self.engine.get_tensor_shape(name))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.max_batch = self.engine.get_tensor_profile_shape(name, 0)[2][0]
                self.inputs[name] = TensorMeta(dtype, ("batch", *shape[1:]))
            else:
                self.outputs.append(name)
        self.buffers: dict[str, tuple[int, np.ndarray, int]] = {}
        for name in [*self.inputs, *self.outputs]:
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            shape = (self.max_batch, *tuple(self.engine.get_tensor_shape(name))[1:])
            nbytes = int(np.prod(shape)) * dtype.itemsize
            device = _check(cudart.cudaMalloc(nbytes))
            host_ptr = _check(cudart.cudaMallocHost(nbytes))
            host = np.ctypeslib.as_array((ctypes.c_byte * nbytes).from_address(int(host_ptr)))
            self.buffers[name] = (device, host.view(dtype).reshape(shape), host_ptr)
            self.context.set_tensor_address(name, int(device))
        self.use_graphs = os.environ.get("EDGEAD_TRT_CUDA_GRAPHS", "1") != "0"
        self.graph: tuple[tuple, Any, Any] | None = None  # (input shapes, graph, executable)
        self.shapes: tuple | None = None

    def _drop_graph(self) -> None:
        if self.graph is not None:
            _, graph, executable = self.graph
            self.cudart.cudaGraphExecDestroy(executable)
            self.cudart.cudaGraphDestroy(graph)
            self.graph = None

    def _capture(self, shapes: tuple) -> None:
        """Capture the engine's launch at ``shapes`` (the context ran once at them already)."""
        cudart = self.cudart
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
        try:
            _check(cudart.cudaStreamBeginCapture(self.stream, mode))
            launched = self.context.execute_async_v3(self.stream)
            graph = _check(cudart.cudaStreamEndCapture(self.stream))
            if not launched:
                cudart.cudaGraphDestroy(graph)
                raise BackendError("execute_async_v3 failed during capture")
            self.graph = (shapes, graph, _check(cudart.cudaGraphInstantiate(graph, 0)))
        except BackendError as exc:
            log.warning("%s: CUDA graph capture failed (%s); running without", self.path, exc)
            self.use_graphs = False

    def _execute(self, shapes: tuple) -> None:
        if self.graph is not None and self.graph[0] == shapes:
            _check(self.cudart.cudaGraphLaunch(self.graph[2], self.stream))
            return
        self._drop_graph()
        if not self.context.execute_async_v3(self.stream):
            raise BackendError(f"{self.path}: TensorRT execution failed")
        if self.use_graphs and self.shapes == shapes:  # second call at a shape: capture it
            _check(self.cudart.cudaStreamSynchronize(self.stream))
            self._capture(shapes)
        self.shapes = shapes

    def deactivate_impl(self) -> None:
        self._drop_graph()
        for device, _, host_ptr in self.buffers.values():
            self.cudart.cudaFree(device)
            self.cudart.cudaFreeHost(host_ptr)
        self.cudart.cudaStreamDestroy(self.stream)
        del self.context, self.engine, self.runtime

    def input_metadata(self) -> dict[str, TensorMeta]:
        return self.inputs

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self.cudart
        h2d, d2h = (
            cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
            cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
        )
        batch = next(iter(feed.values())).shape[0]
        if batch > self.max_batch:
            raise BackendError(
                f"{self.path}: batch {batch} > the engine's maximum "
                f"{self.max_batch}; rebuild with --max-batch"
            )
        for name, array in feed.items():
            device, host, _ = self.buffers[name]
            np.copyto(host[:batch], array)
            _check(cudart.cudaMemcpyAsync(device, host.ctypes.data, array.nbytes, h2d, self.stream))
            self.context.set_input_shape(name, array.shape)
        self._execute(tuple((name, array.shape) for name, array in sorted(feed.items())))
        results = {}
        for name in self.outputs:
            device, host, _ = self.buffers[name]
            shape = tuple(self.context.get_tensor_shape(name))
            nbytes = int(np.prod(shape)) * host.dtype.itemsize
            _check(cudart.cudaMemcpyAsync(host.ctypes.data, device, nbytes, d2h, self.stream))
            results[name] = host[: shape[0]]
        _check(cudart.cudaStreamSynchronize(self.stream))
        return {k: v.copy() for k, v in results.items()}

    def synchronize(self) -> None:
        if self.is_active:
            _check(self.cudart.cudaStreamSynchronize(self.stream))

    on_gpu = True

    def describe(self) -> str:
        return f"tensorrt[{(self.meta or {}).get('tensorrt', '?')}]"
