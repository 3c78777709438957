"""torch backend: the bundle's torch.export program (``edgead export ... --torch-graph``) on a
CUDA GPU without TensorRT, or on the CPU.

FP16 runs the bundle's FP16 program (``torch_graph_fp16``: the module of the FP16 ONNX graph,
FP32 islands included), on CUDA or, slowly, on the CPU. Bundles written before that program
existed run their FP32 program under CUDA autocast instead. The program's metadata assertions
(which autocast's casts trip, as CUDA trips their device checks) are dropped.

On CUDA: channels_last memory layout; one CUDA graph captured per batch shape, replayed with
static input and output buffers; images go up as resized uint8 from pinned host memory and are
normalized inside the graph (``takes_uint8``). torch is imported on activation only: the
runtime stays importable without it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from edgead.errors import BackendError
from edgead.runtime.backends.base import Backend, TensorMeta, register_backend


@register_backend("torch")
class TorchBackend(Backend):
    def activate_impl(self) -> None:
        try:
            import torch
        except ImportError as exc:
            raise BackendError("the torch backend needs torch: pip install 'edgead[fit]'") from exc
        self.torch = torch
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError("torch backend: no CUDA device here (use --device cpu)")
        if device != "cpu" and not device.startswith("cuda"):
            raise BackendError(f"torch backend: unknown device {device!r} (cpu or cuda)")
        self.torch_device = torch.device(device)
        meta = self.meta or {}
        # an FP32 program asked to run FP16: autocast (a bundle without the FP16 program)
        self.autocast = self.precision == "fp16" and meta.get("precision") != "fp16"
        if self.autocast and self.torch_device.type != "cuda":
            raise BackendError(
                f"{self.path}: this bundle has no FP16 torch program and autocast FP16 runs on "
                "CUDA only; on the CPU use --precision fp32, --backend onnxruntime (whose FP16 "
                "graph runs on the CPU), or re-export with --torch-graph"
            )
        try:
            program = torch.export.load(str(self.path))
        except Exception as exc:  # torch raises several types for a foreign or broken file
            raise BackendError(
                f"{self.path}: torch {torch.__version__} cannot load this program "
                f"(written by torch {meta.get('torch', '?')}): {exc}; re-export with --torch-graph"
            ) from exc
        self.module = program.module().to(self.torch_device)
        # torch.export guards casts with assertions of the dtype and device seen at export
        # (CPU): they fail on CUDA and under autocast, and guard nothing the runtime needs
        drop_metadata_asserts(self.module)
        self.cuda = self.torch_device.type == "cuda"
        if self.cuda:
            # FP32 means FP32: cuDNN's default TF32 convolutions moved PatchCore's embedding
            # by 6e-3 (relative) on an H100 and failed FP32 parity
            torch.backends.cudnn.allow_tf32 = self.precision != "fp32"
            torch.backends.cuda.matmul.allow_tf32 = self.precision != "fp32"
            self.module = self.module.to(memory_format=torch.channels_last)
            self.stream = torch.cuda.Stream(self.torch_device)
        self.output_names = list(meta.get("outputs") or [])
        self._inputs = {"input": TensorMeta(np.dtype(np.float32), ("batch", 3, None, None))}
        self._graphs: dict[tuple, Any] = {}

    def deactivate_impl(self) -> None:
        self._graphs.clear()
        del self.module

    def input_metadata(self) -> dict[str, TensorMeta]:
        return self._inputs

    def _autocast(self):
        if self.autocast:
            return self.torch.autocast("cuda", dtype=self.torch.float16)
        return contextlib.nullcontext()

    def _run(self, x):
        with self.torch.inference_mode(), self._autocast():
            out = self.module(x)
        return [out] if isinstance(out, self.torch.Tensor) else list(out)

    def _captured(self, shape: tuple[int, ...], dtype, prepare):
        """A CUDA graph for this input shape and dtype, with its static buffers (captured once).
        ``prepare`` maps the static input to the program's float32 NCHW input inside the graph.
        """
        torch = self.torch
        key = (shape, dtype)
        if key not in self._graphs:
            static_in = torch.zeros(shape, dtype=dtype, device=self.torch_device)
            with torch.cuda.stream(self.stream):
                for _ in range(2):  # warm-up on the side stream, as CUDA graphs require
                    self._run(prepare(static_in))
            self.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                static_out = self._run(prepare(static_in))
            host = torch.empty(shape, dtype=dtype).pin_memory()
            self._graphs[key] = (graph, static_in, static_out, host)
        return self._graphs[key]

    def _replay(self, captured) -> list:
        torch = self.torch
        graph, static_in, static_out, host = captured
        with torch.cuda.stream(self.stream):
            static_in.copy_(host, non_blocking=True)
            graph.replay()
            outputs = [o.float().to("cpu", non_blocking=True) for o in static_out]
        self.stream.synchronize()
        return outputs

    def _named(self, outputs: list) -> dict[str, np.ndarray]:
        names = self.output_names or [f"output{i}" for i in range(len(outputs))]
        return {n: o.float().numpy() for n, o in zip(names, outputs, strict=True)}

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        array = next(iter(feed.values()))
        if not self.cuda:
            return self._named(self._run(torch.from_numpy(array)))
        channels_last = torch.channels_last
        captured = self._captured(
            tuple(array.shape), torch.float32, lambda x: x.contiguous(memory_format=channels_last)
        )
        captured[3].numpy()[...] = array
        return self._named(self._replay(captured))

    # uint8 in, normalized on the GPU inside the captured graph: a quarter of the bytes over
    # PCIe and no float32 pass over the batch on the host
    @property
    def takes_uint8(self) -> bool:
        return self.cuda

    def _uint8_graph(self, shape: tuple[int, ...], scale: np.ndarray, offset: np.ndarray):
        torch = self.torch
        s = torch.from_numpy(np.ascontiguousarray(scale, np.float32)).to(self.torch_device)
        o = torch.from_numpy(np.ascontiguousarray(offset, np.float32)).to(self.torch_device)
        s, o = s[None, :, None, None], o[None, :, None, None]
        # NHWC uint8 -> NCHW float32 view with channels_last strides, as the CPU's
        # preprocess computes it: uint8 * scale (FP32), then + offset
        return self._captured(shape, torch.uint8, lambda x: x.permute(0, 3, 1, 2).float() * s + o)

    def uint8_buffer(self, n: int, height: int, width: int) -> np.ndarray:
        if not self.cuda:
            return super().uint8_buffer(n, height, width)
        key = ((n, height, width, 3), self.torch.uint8)
        if key in self._graphs:
            return self._graphs[key][3].numpy()
        return super().uint8_buffer(n, height, width)  # first call at this shape: captured next

    def infer_uint8(
        self, images: np.ndarray, scale: np.ndarray, offset: np.ndarray
    ) -> dict[str, np.ndarray]:
        if not self.cuda:
            raise BackendError("torch backend: uint8 input runs on CUDA only")
        captured = self._uint8_graph(tuple(images.shape), scale, offset)
        host = captured[3].numpy()
        if host.ctypes.data != images.ctypes.data:  # not written into the pinned buffer
            host[...] = images
        return self._named(self._replay(captured))

    def synchronize(self) -> None:
        if getattr(self, "cuda", False):
            self.stream.synchronize()

    @property
    def on_gpu(self) -> bool:
        return self.cuda

    def describe(self) -> str:
        kind = "cuda graphs, channels_last" if self.cuda else "cpu"
        if self.autocast:
            kind += ", autocast fp16"
        return f"torch[{kind}]"


def drop_metadata_asserts(module) -> None:
    """Remove the ``_assert_tensor_metadata`` checks that torch.export puts before ``.to(dtype)``
    casts. They pin the dtype and device seen at export: on CUDA a program exported on the CPU
    fails them ("Tensor device mismatch"), and so does autocast, where a tensor the program
    expects in FP32 arrives in FP16 ("Tensor dtype mismatch"). The casts themselves stay."""
    import torch

    target = torch.ops.aten._assert_tensor_metadata.default
    for gm in module.modules():
        if not isinstance(gm, torch.fx.GraphModule):
            continue
        nodes = [n for n in gm.graph.nodes if n.op == "call_function" and n.target is target]
        for node in nodes:
            gm.graph.erase_node(node)
        if nodes:
            gm.recompile()
