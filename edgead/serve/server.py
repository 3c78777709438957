"""``edgead serve``: load the bundle (refusing a broken one), start the service and the server.

uvicorn handles SIGINT and SIGTERM: it stops accepting connections, the live streams end (they
watch ``service.closing``), and the app's shutdown stops capture, finishes the frame in flight,
flushes anomalous frames to disk and closes the model.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from edgead.errors import EdgeadError
from edgead.runtime.pipeline import Pipeline
from edgead.runtime.settings import RuntimeSettings
from edgead.serve.app import MAX_UPLOAD_BYTES, create_app
from edgead.serve.service import ServeOptions, Service
from edgead.serve.sources import FrameSource

log = logging.getLogger("edgead.serve")

TOKEN_ENV = "EDGEAD_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise EdgeadError(
            f"--host {host} makes the camera feed and API reachable from other machines: "
            f"set a token with --token or ${TOKEN_ENV} (every request must then carry it)"
        )


class _Server(uvicorn.Server):
    """uvicorn's server, telling the service first when a signal asks it to stop.

    uvicorn re-raises a caught SIGINT/SIGTERM once it has shut down, so that the process dies
    of it; edgead's stop is an orderly one instead (summary printed, exit status 0), so the
    signal is recorded here and not handed back.
    """

    def __init__(self, config: uvicorn.Config, service: Service):
        super().__init__(config)
        self.service = service
        self.stopped_by: str | None = None

    def handle_exit(self, sig: int, frame: object) -> None:
        self.service.begin_stop()
        self.stopped_by = signal.Signals(sig).name
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    # how the bundle runs; with --config, the threads and the public key of every bundle
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)


def checked_token(settings: ServeSettings) -> str | None:
    """--token or $EDGEAD_TOKEN; refuses a non-loopback host without one (before any loading)."""
    token = settings.token or os.environ.get(TOKEN_ENV) or None
    check_exposure(settings.host, token)
    return token


def _run(service: Service, settings: ServeSettings, token: str | None, what: str) -> Service:
    app = create_app(service, token, settings.max_upload_bytes)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
    )
    log.info(
        "serving %s on http://%s:%d/%s",
        what,
        settings.host,
        settings.port,
        "?token=..." if token else "",
    )
    server = _Server(config, service)

    def give_up() -> None:  # every source failed: nothing left to serve
        server.should_exit = True

    service.on_all_failed = give_up
    server.run()
    if not server.started:
        raise EdgeadError(f"could not listen on {settings.host}:{settings.port} (port in use?)")
    if server.stopped_by:
        log.info("%s received: stopped in order", server.stopped_by)
    elif service.failed and len(service.failed) == len(service.streams):
        reasons = "; ".join(f"{name}: {why}" for name, why in service.failed.items())
        raise EdgeadError(f"no source can deliver frames, stopped: {reasons}")
    return service


def serve(
    bundle: str | Path,
    source: FrameSource,
    out_dir: str | Path,
    settings: ServeSettings,
    options: ServeOptions | None = None,
) -> Service:
    """One bundle on one source; runs until SIGINT/SIGTERM; returns the stopped service."""
    token = checked_token(settings)
    pipeline = Pipeline(bundle, settings.runtime)
    service = Service.single(pipeline, source, out_dir, options)
    what = f"{pipeline.bundle.root} ({pipeline.describe()}) from {source.name}"
    return _run(service, settings, token, what)


def build_service(
    config_path: str | Path,
    out_dir: str | Path,
    runtime: RuntimeSettings | None = None,
    options: ServeOptions | None = None,
) -> Service:
    """The streams of a config file, each bundle loaded once (all checked before any starts);
    ``runtime`` gives what the file does not (threads, the public key).

    Events of stream S go to OUT/S/events."""
    from edgead.serve.config import bundle_settings, load_config, resolve_bundles
    from edgead.serve.service import BundleRunner, Stream
    from edgead.serve.sources import make_source

    config_path = Path(config_path)
    config = load_config(config_path)
    base = config_path.resolve().parent
    bundles = resolve_bundles(config, base)
    from edgead.runtime.drift import DriftSettings

    o = dataclasses.replace(
        options or ServeOptions(),
        max_wait_ms=config.batching.max_wait_ms,
        drift=DriftSettings(**config.drift.model_dump()),
    )
    rt = config.runtime
    from edgead.serve.sinks import sink_specs

    shared = sink_specs(config.sinks, f"{config_path}: sinks", base, {x.name for x in o.sinks})
    sinks = {}
    for i, s in enumerate(config.streams):
        taken = {spec.name for spec in [*o.sinks, *shared]}
        own = sink_specs(s.sinks, f"{config_path}: streams[{i}].sinks", base, taken)
        sinks[s.name] = [*o.sinks, *shared, *own]
    from edgead.serve.gates import make_gate

    gates = {
        s.name: make_gate(s.gate, f"{config_path}: streams[{i}].gate", base)
        for i, s in enumerate(config.streams)
        if s.gate is not None
    }
    sources = {}
    for s in config.streams:
        try:
            sources[s.name] = make_source(
                None if s.camera is None else str(s.camera),
                None if s.video is None else str(base / s.video),
                s.rtsp,
                None if s.folder is None else str(base / s.folder),
                s.fps,
                s.loop,
                s.live,
            )
        except EdgeadError as exc:
            raise EdgeadError(f"{config_path}: stream {s.name}: {exc}") from exc
    runners: dict[str, BundleRunner] = {}
    try:
        for name, b in bundles.items():
            try:
                pipeline = Pipeline(b.path, bundle_settings(b, rt, runtime))
            except EdgeadError as exc:
                raise EdgeadError(f"{config_path}: bundle {name}: {exc}") from exc
            max_batch = config.batching.max_batch
            if max_batch == "auto":
                max_batch = 8 if pipeline.backend.on_gpu else 1
            runners[name] = BundleRunner(name, pipeline, max_batch, o.max_wait_ms)
        streams = [
            Stream(
                s.name,
                sources[s.name],
                runners[s.bundle],
                Path(out_dir) / s.name,
                o,
                s.threshold,
                sinks[s.name],
                gates.get(s.name),
            )
            for s in config.streams
        ]
    except BaseException:
        for r in runners.values():
            r.close()
        raise
    return Service(list(runners.values()), streams)


def serve_config(
    config_path: str | Path,
    out_dir: str | Path,
    settings: ServeSettings,
    options: ServeOptions | None = None,
) -> Service:
    """Many streams from a config file; runs until SIGINT/SIGTERM; returns the stopped service."""
    token = checked_token(settings)
    service = build_service(config_path, out_dir, settings.runtime, options)
    what = (
        f"{len(service.streams)} streams on {len(service.runners)} bundles "
        f"({', '.join(r.name for r in service.runners)}) from {config_path}"
    )
    return _run(service, settings, token, what)
