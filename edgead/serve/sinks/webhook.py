"""The HTTP webhook sink (urllib3)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from edgead.serve.sinks.base import Sink


class WebhookSink(Sink):
    """POSTs each message as JSON; a 2xx is an acknowledgement, a 408/429/5xx or a network
    error is retried (in order, with backoff), any other 4xx is a refusal (counted, skipped:
    the receiver will not take it however often it is sent)."""

    kind = "webhook"

    def __init__(
        self,
        name: str,
        spool_path: str | Path,
        url: str,
        timeout: float = 5.0,
        headers: dict | None = None,
        **kwargs,
    ):
        super().__init__(name, spool_path, **kwargs)
        self.url, self.timeout, self.headers = url, timeout, headers or {}
        self._client = None

    def describe(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}{parts.path}"

    def connect(self) -> None:
        # urllib3, not httpx: a third of the CPU per request (0.45 vs 0.79 ms measured on this
        # 2-core machine with keep-alive), and the sink sends every verdict
        import urllib3

        parts = urlsplit(self.url)
        pool = (
            urllib3.HTTPSConnectionPool if parts.scheme == "https" else urllib3.HTTPConnectionPool
        )
        self._client = pool(
            parts.hostname,
            parts.port or (443 if parts.scheme == "https" else 80),
            maxsize=1,
            timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
            retries=False,  # retried in order by the sink itself, from the spool
        )
        self._path = parts.path + (f"?{parts.query}" if parts.query else "") or "/"
        self._headers = {"Content-Type": "application/json", **self.headers}

    def deliver(self, counter: int, message: dict) -> bool:
        body = json.dumps(message, separators=(",", ":")).encode()
        response = self._client.request("POST", self._path, body=body, headers=self._headers)
        code = response.status
        if 200 <= code < 300:
            return True
        if code in (408, 429) or code >= 500:
            raise ConnectionError(f"HTTP {code} from {self.describe()}")
        self._error(f"HTTP {code} from {self.describe()}: message {message['frame_id']} refused")
        return False

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
