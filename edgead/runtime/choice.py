"""``--backend auto --precision auto``: the backend and precision recorded in the bundle
(``edgead.export.runtime_choice`` measures them where the bundle is exported or quantized)."""

from __future__ import annotations

import importlib.util
import logging

from edgead.bundle import roles
from edgead.bundle.manifest import Manifest

log = logging.getLogger(__name__)

# the instruction sets that change INT8 arithmetic (u8 x s8 products saturate in 16 bits
# without VNNI; AMX tiles): an INT8 graph that held parity on a CPU with one set may not on
# a CPU with another. Measured (PatchCore, tire, NNCF, same settings): on an AMD EPYC with
# AVX2 only the INT8 graph passed on onnxruntime and OpenVINO; on an AMD EPYC with AVX-512
# VNNI OpenVINO's INT8 features were 21% (mean) from FP32 against onnxruntime's 6.5%, and
# image ROCAUC fell 78.7 -> 34.8.
INT8_ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def instruction_sets() -> list[str]:
    """The CPU features that decide what INT8 and FP16 gain (Linux; empty elsewhere)."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in flags]
    except OSError:
        pass
    return []


def int8_machine_note(gated_on: dict | None, here: list[str] | None = None) -> str | None:
    """None where this CPU has the INT8 instruction sets the INT8 graph was gated with (or
    the graph records none, or was gated on a GPU); else a sentence saying what differs."""
    if not gated_on or "isa" not in gated_on:
        return None
    there = {f for f in gated_on.get("isa", []) if f in INT8_ISA}
    here_set = {f for f in (instruction_sets() if here is None else here) if f in INT8_ISA}
    if there == here_set:
        return None
    return (
        f"the INT8 graph held parity on {gated_on.get('cpu') or 'another CPU'} "
        f"({', '.join(sorted(there)) or 'no INT8 instruction sets'}); this CPU has "
        f"{', '.join(sorted(here_set)) or 'none of them'}, and INT8 arithmetic differs "
        "between them"
    )


def installed(backend: str) -> bool:
    """Whether ``backend``'s Python package is importable here."""
    return importlib.util.find_spec(backend) is not None


def resolve_auto(manifest: Manifest, backend: str, precision: str) -> tuple[str, str]:
    """``auto`` backend/precision -> the bundle's recorded choice where its backend is
    installed here, else onnxruntime FP32; given values pass through."""
    choice = manifest.runtime or {}
    if backend == "auto":
        backend = choice.get("backend", "onnxruntime")
        if not installed(backend):
            log.info("the bundle's default backend %s is not installed here: onnxruntime", backend)
            backend = "onnxruntime"
        if precision == "int8" and manifest.has_artifact(roles.ONNX_INT8):
            # INT8 asked for by name: a backend its gate passed on, the recorded one first
            gate = manifest.artifact(roles.ONNX_INT8).meta.get("gate") or {}
            passed = [b for b, g in gate.items() if g.get("passed") and installed(b)]
            if passed and backend not in passed:
                backend = passed[0]
    if precision == "auto":
        precision = choice.get("precision", "fp32") if backend == choice.get("backend") else "fp32"
        if precision == "int8" and manifest.has_artifact(roles.ONNX_INT8):
            note = int8_machine_note(manifest.artifact(roles.ONNX_INT8).meta.get("gated_on"))
            if note:
                log.warning("%s: running FP32 (`--precision int8` runs it anyway)", note)
                precision = "fp32"
    return backend, precision
