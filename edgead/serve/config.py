"""``edgead serve --config streams.yaml`` (or .toml): many sources, each mapped to a bundle.

    bundles:                     # optional: names for bundles, and per-bundle runtime settings
      tire: {path: bundles/patchcore_tire, precision: fp16}
    streams:
      - name: line1
        video: clips/line1.avi   # exactly one of camera / video / rtsp / folder
        loop: true
        bundle: tire             # a name from bundles:, or a bundle folder
      - name: line2
        camera: 0
        bundle: bundles/padim_bottle
        threshold: 3.1           # this stream's verdict threshold (default: the bundle's)
    batching: {max_batch: auto, max_wait_ms: 10}   # auto: 8 on a GPU, 1 on a CPU
    runtime: {backend: onnxruntime, precision: fp32, search: auto, min_region_area: 0}
    drift: {window: 500, min_parts: 100, check_every: 25, psi_limit: 0.2}
    sinks:                       # every stream's verdicts to the line (a stream may add its own)
      - {type: mqtt, host: 127.0.0.1, port: 1883, topic: "edgead/{stream}/verdict"}
      - {type: webhook, url: "http://mes.local/edgead"}
      - type: opcua
        url: opc.tcp://plc.local:4840
        nodes: {verdict: "ns=2;s=Line1.Reject", counter: "ns=2;s=Line1.Count"}

    streams:
      - name: line1
        camera: 0
        bundle: tire
        gate: {type: mqtt, host: 127.0.0.1, topic: plant/line1/state}   # pauses while it stands

Secrets are never written in the config: ``password_env``/``password_file`` (MQTT, OPC UA)
and ``headers_env`` (webhook) name an environment variable or a file that holds them.

Relative paths are relative to the config file. The file is checked whole before anything is
loaded (pydantic: unknown keys, wrong types, a stream without a source, duplicate names), and
every error names the file and the key at fault.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (Jetson images): the same parser, from PyPI
    import tomli as tomllib

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgead.errors import EdgeadError
from edgead.runtime.settings import RuntimeSettings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuntimeConfig(_Strict):
    backend: str = "auto"
    device: str | None = None
    precision: Literal["auto", "fp32", "fp16", "int8"] = "auto"
    search: str = "auto"
    min_region_area: int = Field(default=0, ge=0)  # regions smaller (original pixels) dropped
    require_region: bool = False  # anomalous only with a region left


class BundleConfig(_Strict):
    path: str
    backend: str | None = None
    device: str | None = None
    precision: Literal["auto", "fp32", "fp16", "int8"] | None = None
    search: str | None = None
    threshold: float | None = None  # the verdict's threshold for every stream of this bundle
    min_region_area: int | None = Field(default=None, ge=0)
    require_region: bool | None = None


# what an OPC UA sink can write (edgead.serve.sinks.OpcUaSink)
OPCUA_FIELDS = (
    "verdict",
    "anomalous",
    "score",
    "normalized_score",
    "threshold",
    "regions",
    "frame_id",
    "counter",
)


class _SinkBase(_Strict):
    name: str | None = None  # default: the type (made unique per stream)
    queue: int = Field(default=1000, ge=1, le=1_000_000)  # in memory, ahead of the spool
    spool_max: int = Field(default=100_000, ge=1)  # messages on disk; then the oldest dropped
    timeout: float = Field(default=5.0, gt=0, le=300)
    backoff_max: float = Field(default=5.0, gt=0, le=3600)


class _Secret(_Strict):
    username: str | None = None
    password_env: str | None = None  # the name of an environment variable holding it
    password_file: str | None = None  # a file holding it (first line)


class TlsConfig(_Strict):
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None


class MqttSinkConfig(_SinkBase, _Secret):
    type: Literal["mqtt"]
    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    topic: str = "edgead/{stream}/verdict"  # {stream}, {verdict}, {bundle}, {revision}
    qos: Literal[0, 1, 2] = 1
    client_id: str | None = None
    tls: TlsConfig | None = None

    @model_validator(mode="after")
    def _topic(self) -> MqttSinkConfig:
        try:
            self.topic.format(stream="s", verdict="v", bundle="b", revision="r")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"topic {self.topic!r}: unknown placeholder {exc} (use {{stream}}, {{verdict}}, "
                "{bundle}, {revision})"
            ) from exc
        if any(c in self.topic for c in "#+"):
            raise ValueError(f"topic {self.topic!r}: '#' and '+' are for subscribing")
        return self


class WebhookSinkConfig(_SinkBase):
    type: Literal["webhook"]
    url: str
    headers_env: dict[str, str] = Field(default_factory=dict)  # header -> environment variable

    @model_validator(mode="after")
    def _url(self) -> WebhookSinkConfig:
        if not re.match(r"^https?://[^/\s]+", self.url):
            raise ValueError(f"url {self.url!r}: expected http:// or https://")
        if "@" in self.url.split("/")[2]:
            raise ValueError("url: credentials in the URL; put them in headers_env")
        return self


class OpcUaSinkConfig(_SinkBase, _Secret):
    type: Literal["opcua"]
    url: str
    nodes: dict[str, str] = Field(min_length=1)  # field -> node id, e.g. "ns=2;s=Line1.Score"

    @model_validator(mode="after")
    def _check(self) -> OpcUaSinkConfig:
        if not self.url.startswith("opc.tcp://"):
            raise ValueError(f"url {self.url!r}: expected opc.tcp://HOST:PORT")
        unknown = sorted(set(self.nodes) - set(OPCUA_FIELDS))
        if unknown:
            raise ValueError(
                f"nodes: unknown field(s) {', '.join(unknown)}; choose from "
                + ", ".join(OPCUA_FIELDS)
            )
        return self


SinkConfig = Annotated[
    MqttSinkConfig | WebhookSinkConfig | OpcUaSinkConfig, Field(discriminator="type")
]


class _GateBase(_Strict):
    initial: Literal["running", "stopped"] = "running"  # until the first state arrives
    run_values: list[str] | None = None  # payloads/strings meaning running (default: 1 true ...)
    stop_values: list[str] | None = None


class MqttGateConfig(_GateBase, _Secret):
    type: Literal["mqtt"]
    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    topic: str


class OpcUaGateConfig(_GateBase, _Secret):
    type: Literal["opcua"]
    url: str
    node: str  # e.g. "ns=2;s=Line1.Running"
    poll_s: float = Field(default=0.2, ge=0.02, le=60)

    @model_validator(mode="after")
    def _url(self) -> OpcUaGateConfig:
        if not self.url.startswith("opc.tcp://"):
            raise ValueError(f"url {self.url!r}: expected opc.tcp://HOST:PORT")
        return self


GateConfig = Annotated[MqttGateConfig | OpcUaGateConfig, Field(discriminator="type")]


class StreamConfig(_Strict):
    name: str
    bundle: str
    camera: int | None = Field(default=None, ge=0)
    video: str | None = None
    rtsp: str | None = None
    folder: str | None = None
    fps: float | None = Field(default=None, ge=0)
    loop: bool = False
    live: bool | None = None  # a video as a camera (drop-oldest); cameras and streams are
    threshold: float | None = None
    sinks: list[SinkConfig] = Field(default_factory=list)  # in addition to the top-level ones
    gate: GateConfig | None = None  # the line's state pauses this stream (edgead.serve.gates)

    @model_validator(mode="after")
    def _one_source(self) -> StreamConfig:
        given = [k for k in ("camera", "video", "rtsp", "folder") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"stream {self.name!r}: give exactly one of camera, video, rtsp, folder "
                f"(got {', '.join(given) or 'none'})"
            )
        if not _NAME.match(self.name):
            raise ValueError(
                f"stream name {self.name!r}: letters, digits, '_', '.', '-' (it is used in "
                "URLs, metric labels and folder names)"
            )
        return self


class BatchingConfig(_Strict):
    # "auto": 8 for a bundle whose backend runs on a GPU, 1 on a CPU. Measured on the 2-core
    # CPU (benchmarks/streams.py): batches of 8 scored no more frames/s than single frames
    # (the CPU backend's batch throughput equals its single-image rate) and doubled the frame
    # age; on an H100 a batch of 64 scored 3.9x the frames/s of single images (README, GPU).
    max_batch: int | Literal["auto"] = Field(default="auto")
    max_wait_ms: float = Field(default=10.0, ge=0, le=5000)


class DriftConfig(_Strict):
    """The drift checks of every stream (edgead.runtime.drift; the defaults are measured)."""

    window: int = Field(default=500, ge=1)
    min_parts: int = Field(default=100, ge=1)
    check_every: int = Field(default=25, ge=1)
    psi_limit: float = Field(default=0.2, gt=0)
    alpha: float = Field(default=0.001, gt=0, lt=0.5)
    median_limit: float = Field(default=0.5, gt=0)

    @model_validator(mode="after")
    def _window(self) -> DriftConfig:
        if self.min_parts > self.window:
            raise ValueError(f"drift.min_parts {self.min_parts} is over drift.window")
        return self


class ServeConfig(_Strict):
    streams: list[StreamConfig] = Field(min_length=1)
    bundles: dict[str, str | BundleConfig] = Field(default_factory=dict)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    sinks: list[SinkConfig] = Field(default_factory=list)  # for every stream

    @model_validator(mode="after")
    def _batch_range(self) -> ServeConfig:
        b = self.batching.max_batch
        if b != "auto" and not 1 <= b <= 256:
            raise ValueError(f"batching.max_batch: {b} is not 'auto' or 1 to 256")
        return self

    @model_validator(mode="after")
    def _unique(self) -> ServeConfig:
        seen: set[str] = set()
        for s in self.streams:
            if s.name in seen:
                raise ValueError(f"stream name {s.name!r} is used twice")
            seen.add(s.name)
        return self


def _read(path: Path) -> dict:
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise EdgeadError(f"{path}: a config is .yaml, .yml or .toml (got {suffix or 'none'})")
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeadError(f"{path}: cannot read the config ({exc})") from exc
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise EdgeadError(f"{path}: not valid TOML ({exc})") from exc
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise EdgeadError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise EdgeadError(f"{path}: expected a mapping with a 'streams' list at the top")
    return data


def _where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top)"


def load_config(path: str | Path) -> ServeConfig:
    """Parse and check a streams config; EdgeadError naming the file and each key at fault."""
    path = Path(path)
    data = _read(path)
    try:
        return ServeConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise EdgeadError(f"{path}: {problems}") from exc


def resolve_bundles(config: ServeConfig, base: Path) -> dict[str, BundleConfig]:
    """Each distinct bundle once, by name: the named ones, then bundle folders given directly
    (named after their folder, made unique). Raises when a folder does not exist."""
    named: dict[str, BundleConfig] = {}
    for name, entry in config.bundles.items():
        if not _NAME.match(name):
            raise EdgeadError(f"bundles.{name}: letters, digits, '_', '.', '-'")
        b = BundleConfig(path=entry) if isinstance(entry, str) else entry
        named[name] = b.model_copy(update={"path": str((base / b.path).resolve())})
    by_path = {b.path: n for n, b in named.items()}
    for s in config.streams:
        if s.bundle in named:
            continue
        full = str((base / s.bundle).resolve())
        if full in by_path:
            s.bundle = by_path[full]
            continue
        stem = Path(full).name or "bundle"
        name, k = stem, 2
        while name in named:
            name, k = f"{stem}-{k}", k + 1
        named[name] = BundleConfig(path=full)
        by_path[full] = name
        s.bundle = name
    for name, b in named.items():
        if not Path(b.path).is_dir():
            raise EdgeadError(f"bundles.{name}: {b.path} is not a bundle folder")
    used = {s.bundle for s in config.streams}
    return {n: b for n, b in named.items() if n in used}


def bundle_settings(
    b: BundleConfig, rt: RuntimeConfig, given: RuntimeSettings | None = None
) -> RuntimeSettings:
    """How one bundle of the file runs: its own entries over the file's ``runtime:`` section,
    over ``given`` (the command line's threads and public key)."""
    from edgead.runtime.regions import VerdictRules

    return RuntimeSettings.of(
        given,
        backend=b.backend or rt.backend,
        device=b.device or rt.device,
        precision=b.precision or rt.precision,
        search=b.search or rt.search,
        threshold=b.threshold,
        rules=VerdictRules(
            rt.min_region_area if b.min_region_area is None else b.min_region_area,
            rt.require_region if b.require_region is None else b.require_region,
        ),
    )
