"""The web side of ``edgead serve`` (FastAPI on uvicorn).

Routes of each stream, under ``/streams/{name}/`` (and at the root for the first stream):
the live page; ``stream.mjpg`` the overlay as MJPEG; ``api/status``; ``api/events`` and
``api/events/{id}/{frame|overlay|map|record}``; ``POST api/predict`` (one image, multipart
field ``file`` or the raw bytes as the body); ``POST api/feedback`` (an operator's
confirmation of a recent frame or an event: ``{"label": "good"|"defective", "seq": N}`` or
``{"label": ..., "event": ID}``). At the root: ``POST /api/reload`` (a new bundle revision
without a restart), ``/`` (the overview of every stream
when there are several), ``/api/status`` (every stream), ``/metrics`` (Prometheus, labelled by
stream and bundle), ``/healthz``. With a token, every request must carry it:
``Authorization: Bearer T``, or ``?token=T`` (the page passes it on to its stream and API calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from importlib import resources
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edgead.errors import EdgeadError, ImageDecodeError
from edgead.serve.feedback import FeedbackError
from edgead.serve.service import Service, Stream
from edgead.serve.uploads import predict_upload

log = logging.getLogger("edgead.serve")

MAX_UPLOAD_BYTES = 20 << 20
BOUNDARY = "edgeadframe"


class UploadTooLargeError(Exception):
    pass


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"error": f"upload larger than the limit of {limit:,} bytes"}, 413)


class Guard:
    """ASGI middleware: the token check, and the upload byte limit.

    Written as plain ASGI (not BaseHTTPMiddleware) so the MJPEG stream is not buffered, and so
    the byte limit applies while the body streams in, with or without a Content-Length.
    """

    def __init__(self, app, token: str | None, max_upload_bytes: int):
        self.app = app
        self.token = token
        self.max_upload_bytes = max_upload_bytes

    def _authorized(self, scope) -> bool:
        if not self.token:
            return True
        headers = dict(scope.get("headers") or [])
        given = ""
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if not self._authorized(scope):
            response = JSONResponse(
                {"error": "missing or wrong token (Authorization: Bearer ... or ?token=)"}, 401
            )
            return await response(scope, receive, send)
        if scope["method"] in ("POST", "PUT"):
            headers = dict(scope.get("headers") or [])
            declared = headers.get(b"content-length")
            if (
                declared is not None
                and declared.isdigit()
                and int(declared) > self.max_upload_bytes
            ):
                return await _too_large(self.max_upload_bytes)(scope, receive, send)
            received = 0
            limit = self.max_upload_bytes

            async def limited_receive():
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise UploadTooLargeError
                return message

            return await self.app(scope, limited_receive, send)
        return await self.app(scope, receive, send)


def _page(name: str) -> str:
    return resources.files("edgead.serve").joinpath(f"static/{name}").read_text("utf-8")


def create_app(
    service: Service,
    token: str | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    manage_service: bool = True,
) -> FastAPI:
    """The app around a service; with ``manage_service`` it starts and stops it (lifespan).

    Every stream has its page and API under ``/streams/{name}/``; the root's ``stream.mjpg``,
    ``api/events`` and ``api/predict`` are the first stream's (all there is with one stream),
    ``/`` is the overview when there are several streams, and ``/api/status`` lists every
    stream (with one stream, its whole status at the top level as well).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_service:
            service.start()
        try:
            yield
        finally:
            service.begin_stop()
            if manage_service:
                await run_in_threadpool(service.stop)

    app = FastAPI(title="edgead serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(Guard, token=token, max_upload_bytes=max_upload_bytes)
    stream_page = _page("index.html")
    overview_page = _page("overview.html")

    def stream_of(name: str) -> Stream:
        stream = service.by_name.get(name)
        if stream is None:
            raise HTTPException(404, f"no stream {name!r} (streams: {', '.join(service.by_name)})")
        return stream

    @app.exception_handler(UploadTooLargeError)
    async def too_large(request: Request, exc: UploadTooLargeError) -> JSONResponse:
        return _too_large(max_upload_bytes)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        page = stream_page if len(service.streams) == 1 else overview_page
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/healthz")
    async def healthz() -> dict:
        states = {s.name: s.capture.state for s in service.streams}
        body = {"ok": not service.stopping, "streams": states}
        if len(service.streams) == 1:
            body["source"] = states[service.first.name]
        return body

    @app.get("/api/status")
    async def status() -> dict:
        return service.status()

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- one stream's routes: at /streams/{name}/..., and at the root for the first stream ----
    def events(stream: Stream) -> dict:
        return {"stream": stream.name, "events": stream.events(), **stream.recorder.stats()}

    def event_file(stream: Stream, event_id: str, kind: str) -> FileResponse:
        path = stream.recorder.path_of(event_id, kind)
        if path is None:
            raise HTTPException(404, f"no {kind} for event {event_id} (unknown or rotated away)")
        return FileResponse(path)

    def mjpeg(stream: Stream) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            seen = -1  # the latest overlay at once (frames are drawn only while watched)
            stream.viewers += 1
            try:
                while not service.stopping:
                    seq, jpeg = stream.latest_jpeg()
                    if jpeg is None or seq == seen:
                        # polling costs nothing next to a frame, and needs no thread per viewer
                        await asyncio.sleep(0.02)
                        continue
                    seen = seq
                    header = (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n"
                    )
                    yield header.encode() + jpeg + b"\r\n"
            finally:
                stream.viewers -= 1

        return StreamingResponse(
            parts(),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers={"Cache-Control": "no-store"},
        )

    async def predict(stream: Stream, request: Request) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        name = "upload"
        if content_type.startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_fields=4)
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                return JSONResponse({"error": "multipart upload without a 'file' part"}, 400)
            name = upload.filename or name
            data = await upload.read()
            await form.close()
        else:
            data = await request.body()
            name = request.query_params.get("name", name)
        try:
            result = await run_in_threadpool(predict_upload, stream, data, name)
        except ImageDecodeError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(result)

    async def feedback(stream: Stream, request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or ("seq" in body) == ("event" in body):
            return JSONResponse(
                {
                    "error": 'expected JSON {"label": "good"|"defective", "seq": N} or '
                    '{"label": ..., "event": ID}'
                },
                400,
            )
        seq = body.get("seq")
        if seq is not None and not isinstance(seq, int):
            return JSONResponse({"error": f"seq {seq!r}: expected a frame number"}, 400)
        try:
            result = await run_in_threadpool(
                stream.confirm, str(body.get("label")), seq, body.get("event")
            )
        except FeedbackError as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        return JSONResponse(result)

    @app.post("/api/reload")
    async def reload(request: Request) -> JSONResponse:
        """Load a new bundle revision without a restart: {"bundle": NAME, "path": DIR}, both
        optional (default: every bundle, each from its own folder)."""
        try:
            body = await request.json() if await request.body() else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return JSONResponse({"error": 'expected JSON {"bundle": NAME, "path": DIR}'}, 400)
        try:
            done = await run_in_threadpool(service.reload, body.get("bundle"), body.get("path"))
        except KeyError as exc:
            return JSONResponse({"error": str(exc.args[0])}, 404)
        except (ValueError, EdgeadError) as exc:
            return JSONResponse({"error": f"not reloaded, still serving the old one: {exc}"}, 409)
        return JSONResponse({"reloaded": done})

    @app.post("/api/feedback")
    async def root_feedback(request: Request) -> JSONResponse:
        return await feedback(service.first, request)

    @app.post("/streams/{name}/api/feedback")
    async def stream_feedback(name: str, request: Request) -> JSONResponse:
        return await feedback(stream_of(name), request)

    @app.get("/api/events")
    async def root_events() -> dict:
        return events(service.first)

    @app.get("/api/events/{event_id}/{kind}")
    async def root_event_file(event_id: str, kind: str) -> FileResponse:
        return event_file(service.first, event_id, kind)

    @app.get("/stream.mjpg")
    async def root_stream() -> StreamingResponse:
        return mjpeg(service.first)

    @app.post("/api/predict")
    async def root_predict(request: Request) -> JSONResponse:
        return await predict(service.first, request)

    @app.get("/streams/{name}")
    async def stream_index_redirect(name: str) -> RedirectResponse:
        stream_of(name)
        return RedirectResponse(f"{name}/", 307)

    @app.get("/streams/{name}/", response_class=HTMLResponse)
    async def stream_index(name: str) -> HTMLResponse:
        stream_of(name)
        return HTMLResponse(stream_page, headers={"Cache-Control": "no-store"})

    @app.get("/streams/{name}/api/status")
    async def stream_status(name: str) -> dict:
        return service.stream_status(stream_of(name))

    @app.get("/streams/{name}/api/events")
    async def stream_events(name: str) -> dict:
        return events(stream_of(name))

    @app.get("/streams/{name}/api/events/{event_id}/{kind}")
    async def stream_event_file(name: str, event_id: str, kind: str) -> FileResponse:
        return event_file(stream_of(name), event_id, kind)

    @app.get("/streams/{name}/stream.mjpg")
    async def stream_mjpeg(name: str) -> StreamingResponse:
        return mjpeg(stream_of(name))

    @app.post("/streams/{name}/api/predict")
    async def stream_predict(name: str, request: Request) -> JSONResponse:
        return await predict(stream_of(name), request)

    return app
