"""``edgead serve``: load the bundle (refusing a broken one), start the service and the server.

uvicorn handles SIGINT and SIGTERM: it stops accepting connections, the live streams end (they
watch ``service.closing``), and the app's shutdown stops capture, finishes the frame in flight,
flushes anomalous frames to disk and closes the model.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from edgead.errors import EdgeadError
from edgead.runtime.pipeline import Pipeline
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
    backend: str = "onnxruntime"
    device: str | None = None
    precision: str = "fp32"
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    search: str = "auto"
    threshold: float | None = None  # the verdict's threshold instead of the bundle's
    threads: int | None = None


def serve(
    bundle: str | Path,
    source: FrameSource,
    out_dir: str | Path,
    settings: ServeSettings,
    options: ServeOptions | None = None,
) -> Service:
    """Run until SIGINT/SIGTERM; returns the stopped service (for its counts)."""
    token = settings.token or os.environ.get(TOKEN_ENV) or None
    check_exposure(settings.host, token)
    pipeline = Pipeline(
        bundle,
        settings.backend,
        settings.device,
        settings.precision,
        settings.search,
        settings.threshold,
        settings.threads,
    )
    service = Service(pipeline, source, out_dir, options)
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
        "serving %s (%s) from %s on http://%s:%d/%s",
        pipeline.bundle.root,
        pipeline.describe(),
        source.name,
        settings.host,
        settings.port,
        "?token=..." if token else "",
    )
    server = _Server(config, service)
    server.run()
    if not server.started:
        raise EdgeadError(f"could not listen on {settings.host}:{settings.port} (port in use?)")
    if server.stopped_by:
        log.info("%s received: stopped in order", server.stopped_by)
    return service
