"""OpenVINO backend: the bundle's ONNX graphs on Intel CPUs, GPUs and NPUs.

OpenVINO reads the ONNX graphs directly (no second file to keep in step). The inference
precision is always pinned to f32, so that each graph computes in the precision it was
written in and gated at: the CPU plugin's default lowers it to bf16 on CPUs that have bf16
(the tire bundle's patch embeddings moved by 12% on a Xeon with AMX), and an f16 hint on the
FP16 graph forced its FP32 islands to f16 as well (tire: image ROCAUC 78.67 -> 43.77, every
good part rejected). The INT8 graph's quantized layers run in int8 whatever the hint.
"""

from __future__ import annotations

import numpy as np

from edgead.errors import BackendError
from edgead.runtime.backends.base import Backend, TensorMeta, register_backend

INSTALL = "the openvino backend needs `pip install 'edgead[openvino]'`"


@register_backend("openvino")
class OpenVinoBackend(Backend):
    def activate_impl(self) -> None:
        try:
            import openvino as ov
            import openvino.properties as props
            import openvino.properties.hint as hints
        except ImportError as exc:
            raise BackendError(INSTALL) from exc

        core = ov.Core()
        device = (self.device or "CPU").upper()
        available = core.available_devices
        base = device.split(":")[0].split(".")[0]
        if (
            base not in ("AUTO", "HETERO", "MULTI")
            and device not in available
            and (base not in {d.split(".")[0] for d in available})
        ):
            raise BackendError(
                f"openvino backend: no device {device!r} here; available: "
                f"{', '.join(available) or 'none'} (or AUTO)"
            )
        self.inference_precision = ov.Type.f32
        config = {
            hints.performance_mode: hints.PerformanceMode.LATENCY,
            hints.inference_precision: self.inference_precision,
        }
        if self.threads and base == "CPU":
            config[props.inference_num_threads] = int(self.threads)
        elif base == "CPU":
            from edgead.threads import configured

            config[props.inference_num_threads] = configured()
        try:
            model = core.read_model(str(self.path))
            self.compiled = core.compile_model(model, device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError with its own message
            raise BackendError(f"{self.path}: OpenVINO cannot load the graph ({exc})") from exc
        self.request = self.compiled.create_infer_request()
        self.device_name = device
        # names from the model as read: after compilation a port may carry a fused
        # neighbour's name too (the FP16 graph's input became {'input', '/Cast_output_0'})
        self._inputs = {
            model_port.get_any_name(): TensorMeta(
                np.dtype(port.get_element_type().to_dtype()),
                tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape()),
            )
            for model_port, port in zip(model.inputs, self.compiled.inputs, strict=True)
        }
        self._index = {name: i for i, name in enumerate(self._inputs)}
        self._outputs = [port.get_any_name() for port in model.outputs]

    def deactivate_impl(self) -> None:
        del self.request, self.compiled

    def input_metadata(self) -> dict[str, TensorMeta]:
        return self._inputs

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # The input arrays are read in place (share_inputs): infer is synchronous and the
        # caller holds them until it returns, so the copy into a new OpenVINO tensor that is
        # OpenVINO's default is one pass over the batch saved (benchmarks/openvino_layers.py
        # times both). The outputs are copied here, once: the request's own buffers are
        # overwritten by the next call.
        results = self.request.infer(
            {self._index[k]: v for k, v in feed.items()}, share_inputs=True, share_outputs=True
        )
        return {
            name: np.array(results[port])
            for name, port in zip(self._outputs, self.compiled.outputs, strict=True)
        }

    def describe(self) -> str:
        return f"openvino[{self.device_name} {self.inference_precision.get_type_name()}]"
