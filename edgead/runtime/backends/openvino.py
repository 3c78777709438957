"""OpenVINO backend: the bundle's ONNX graphs on Intel CPUs, GPUs and NPUs.

OpenVINO reads the ONNX graphs directly (no second file to keep in step). Its CPU plugin
lowers the inference precision to bf16 by default on CPUs that have it, which moved the patch
embeddings of the tire bundle by 12% on a Xeon with AMX: the precision is therefore always
pinned, f32 for the fp32 and int8 graphs (the int8 graph's quantized layers run in int8
whatever the hint; the hint governs the rest), f16 for the fp16 graph where the device has
FP16 arithmetic and f32 elsewhere.
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
        self.inference_precision = self._pinned_precision(core, base, ov)
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
        self._inputs = {
            port.get_any_name(): TensorMeta(
                np.dtype(port.get_element_type().to_dtype()),
                tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape()),
            )
            for port in self.compiled.inputs
        }
        self._outputs = [port.get_any_name() for port in self.compiled.outputs]

    def _pinned_precision(self, core, device: str, ov):
        """f32, or f16 for the fp16 graph where the device computes in FP16."""
        if self.precision != "fp16" or device in ("AUTO", "HETERO", "MULTI"):
            return ov.Type.f32
        try:
            capabilities = core.get_property(device, "OPTIMIZATION_CAPABILITIES")
        except Exception:  # a device that does not say: the safe choice
            return ov.Type.f32
        return ov.Type.f16 if "FP16" in capabilities else ov.Type.f32

    def deactivate_impl(self) -> None:
        del self.request, self.compiled

    def input_metadata(self) -> dict[str, TensorMeta]:
        return self._inputs

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.request.infer(feed)  # copies of the outputs (share_outputs=False)
        return {
            name: np.asarray(results[port])
            for name, port in zip(self._outputs, self.compiled.outputs, strict=True)
        }

    def describe(self) -> str:
        return f"openvino[{self.device_name} {self.inference_precision.get_type_name()}]"
