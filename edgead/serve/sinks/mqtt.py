"""The MQTT sink (paho-mqtt)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path

from edgead.serve.sinks.base import Sink


class MqttSink(Sink):
    """Publishes each message at QoS 1 to a topic made from a template (``{stream}``,
    ``{verdict}``, ``{bundle}``, ``{revision}``) and waits for the broker's PUBACK."""

    kind = "mqtt"

    def __init__(
        self,
        name: str,
        spool_path: str | Path,
        host: str,
        port: int = 1883,
        topic: str = "edgead/{stream}/verdict",
        qos: int = 1,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: dict | None = None,
        timeout: float = 5.0,
        **kwargs,
    ):
        super().__init__(name, spool_path, **kwargs)
        self.host, self.port, self.topic, self.qos = host, port, topic, qos
        self.client_id = client_id or f"edgead-{name}-{os.getpid()}"
        self.username, self.password, self.tls = username, password, tls
        self.timeout = timeout
        self._client = None

    def describe(self) -> str:
        return f"mqtt{'s' if self.tls else ''}://{self.host}:{self.port} {self.topic}"

    def connect(self) -> None:
        import paho.mqtt.client as mqtt

        connected = threading.Event()
        outcome: dict = {}

        def on_connect(client, userdata, flags, reason_code, properties):
            outcome["rc"] = reason_code
            connected.set()

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True
        )
        client.on_connect = on_connect
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls is not None:
            client.tls_set(
                ca_certs=self.tls.get("ca_certs"),
                certfile=self.tls.get("certfile"),
                keyfile=self.tls.get("keyfile"),
            )
        client.connect(self.host, self.port, keepalive=30)
        client.loop_start()
        self._client = client
        if not connected.wait(self.timeout):
            raise ConnectionError(f"no CONNACK from {self.host}:{self.port} in {self.timeout} s")
        if outcome["rc"].is_failure:
            raise ConnectionError(f"broker refused the connection: {outcome['rc']}")

    def _deliver_rows(self, rows: list[tuple[int, str]]) -> int:
        # instead of the base's one-by-one ``deliver``: publish the batch, then wait for the
        # PUBACKs in order (one round trip per batch)
        import paho.mqtt.client as mqtt

        infos = []
        for row_id, body in rows:
            message = json.loads(body)
            topic = self.topic.format(
                stream=message["stream"],
                verdict=message["verdict"],
                bundle=message["bundle"].get("name", ""),
                revision=message["bundle"].get("revision", ""),
            )
            info = self._client.publish(topic, body, qos=self.qos)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                infos.append((row_id, None))
                break
            infos.append((row_id, info))
        last = None
        for row_id, info in infos:
            if info is not None:
                with contextlib.suppress(RuntimeError, ValueError):  # not queued: no wait
                    info.wait_for_publish(self.timeout)
            if info is None or not info.is_published():
                exc = ConnectionError(f"no PUBACK from {self.host}:{self.port}")
                exc.delivered = last  # type: ignore[attr-defined]
                raise exc
            self.sent += 1
            last = row_id
        return last

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
