"""Gating from the line: the line's own state (running or stopped) pauses a stream.

While a line stands, its camera still sees the belt: those frames are not parts, and scored
they would fill the drift window and the counts with what is not production. A gate reads the
line's state from the line's systems and pauses the stream's capture while it says stopped
(a camera's frames are read and dropped, counted as ``paused_frames``; a folder or video file
waits unread, so nothing of it is lost):

- MQTT: a topic the PLC publishes the line state to (retained, as line states usually are);
  payloads ``1 true running run on`` mean running, ``0 false stopped stop off paused``
  stopped (case-insensitive; ``run_values`` and ``stop_values`` change them); others are
  logged and ignored.
- OPC UA: a variable read every ``poll_s`` (Boolean, a number: non-zero, or a string as
  above).

A gate that cannot be read (its broker or server down, a value it does not know) leaves the
stream **scoring**: a part that passes uninspected costs more than a few idle frames in the
drift window. Once connected, ``initial`` (running) holds until the first state arrives.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from urllib.parse import unquote, urlsplit

from edgead.errors import EdgeadError

log = logging.getLogger("edgead.serve")

RUN_VALUES = ("1", "true", "running", "run", "on")
STOP_VALUES = ("0", "false", "stopped", "stop", "off", "paused")


class Gate:
    """The line's state as last read; ``__call__`` answers whether the stream may score."""

    kind = "gate"

    def __init__(
        self,
        initial: bool = True,
        run_values: tuple[str, ...] = RUN_VALUES,
        stop_values: tuple[str, ...] = STOP_VALUES,
    ):
        self.initial = initial
        self.run_values = tuple(v.lower() for v in run_values)
        self.stop_values = tuple(v.lower() for v in stop_values)
        self.running = initial
        self.connected = False
        self.changes = 0
        self.last_value: str | None = None
        self.last_change: float | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def __call__(self) -> bool:
        # unreadable: score (module docstring)
        return self.running or not self.connected

    def _value(self, raw) -> None:
        """A state read from the line: set running or stopped, or log an unknown value."""
        if isinstance(raw, bool):
            running: bool | None = raw
        elif isinstance(raw, (int, float)):
            running = raw != 0
        else:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            text = text.strip().lower()
            running = (
                True if text in self.run_values else False if text in self.stop_values else None
            )
        with self._lock:
            self.last_value = str(raw)[:64]
            if running is None:
                self.last_error = f"unknown line state {self.last_value!r}: ignored"
                log.warning("gate %s: %s", self.describe(), self.last_error)
                return
            if running != self.running:
                self.running = running
                self.changes += 1
                self.last_change = time.time()
                log.info("gate %s: the line %s", self.describe(), "runs" if running else "stands")

    def describe(self) -> str:
        return self.kind

    def start(self) -> None:
        """Begin reading the line's state (a thread of its own)."""

    def stop(self) -> None:
        self._stop.set()

    def stats(self) -> dict:
        with self._lock:
            return {
                "type": self.kind,
                "target": self.describe(),
                "connected": self.connected,
                "line_running": self.running,
                "scoring": self(),
                "last_value": self.last_value,
                "changes": self.changes,
                "last_change": self.last_change,
                "last_error": self.last_error,
            }


class MqttGate(Gate):
    """The line state from an MQTT topic (paho-mqtt; reconnects by itself)."""

    kind = "mqtt"

    def __init__(self, host: str, port: int, topic: str, username=None, password=None, **kw):
        super().__init__(**kw)
        self.host, self.port, self.topic = host, port, topic
        self.username, self.password = username, password
        self._client = None

    def describe(self) -> str:
        return f"mqtt://{self.host}:{self.port}/{self.topic}"

    def start(self) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, clean_session=True)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)

        def on_connect(c, userdata, flags, reason_code, properties):
            if reason_code.is_failure:
                self.last_error = f"broker refused: {reason_code}"
                return
            self.connected = True
            c.subscribe(self.topic, qos=1)

        def on_disconnect(c, userdata, flags, reason_code, properties):
            if self.connected:
                log.warning("gate %s: disconnected; the stream scores meanwhile", self.describe())
            self.connected = False

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = lambda c, u, msg: self._value(msg.payload)
        client.reconnect_delay_set(0.5, 10)
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()  # paho's own thread reconnects after a loss
        self._client = client

    def stop(self) -> None:
        super().stop()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()


class OpcUaGate(Gate):
    """The line state from an OPC UA variable, read every ``poll_s`` (asyncua)."""

    kind = "opcua"

    def __init__(
        self, url: str, node: str, poll_s: float = 0.2, username=None, password=None, **kw
    ):
        super().__init__(**kw)
        self.url, self.node, self.poll_s = url, node, poll_s
        self.username, self.password = username, password
        self._thread = threading.Thread(target=self._run, name="edgead-gate", daemon=True)

    def describe(self) -> str:
        return f"{self.url} {self.node}"

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from asyncua.sync import Client

        delay = 0.5
        while not self._stop.is_set():
            client = Client(self.url, timeout=max(1.0, self.poll_s * 5))
            if self.username is not None:
                client.set_user(self.username)
                client.set_password(self.password or "")
            try:
                client.connect()
                node = client.get_node(self.node)
                self.connected, delay = True, 0.5
                while not self._stop.is_set():
                    self._value(node.read_value())
                    self._stop.wait(self.poll_s)
            except Exception as exc:  # a lost server or a bad node: score meanwhile, retry
                if self.connected:
                    log.warning("gate %s: %s; the stream scores meanwhile", self.describe(), exc)
                self.last_error = str(exc) or type(exc).__name__
                self.connected = False
            finally:
                with contextlib.suppress(Exception):
                    client.disconnect()
            self._stop.wait(delay)
            delay = min(delay * 2, 10.0)

    def stop(self) -> None:
        super().stop()
        if self._thread.ident is not None:
            self._thread.join(5)


def gate_from_url(url: str | None) -> dict | None:
    """``--gate`` as a gate config: ``mqtt://HOST[:PORT]/TOPIC`` or
    ``opc.tcp://HOST:PORT[/PATH]#NODEID`` (credentials from EDGEAD_GATE_USERNAME/PASSWORD)."""
    if url is None:
        return None
    import os

    parts = urlsplit(url)
    if parts.username or parts.password:
        raise EdgeadError("--gate: no credentials on the command line; set EDGEAD_GATE_USERNAME")
    secret = {}
    if os.environ.get("EDGEAD_GATE_USERNAME"):
        secret = {
            "username": os.environ["EDGEAD_GATE_USERNAME"],
            "password_env": "EDGEAD_GATE_PASSWORD",
        }
    if parts.scheme == "mqtt":
        topic = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not topic:
            raise EdgeadError(f"--gate {url}: expected mqtt://HOST[:PORT]/TOPIC")
        return {
            "type": "mqtt",
            "host": parts.hostname,
            "port": parts.port or 1883,
            "topic": topic,
            **secret,
        }
    if parts.scheme == "opc.tcp":
        if not parts.fragment:
            raise EdgeadError(f"--gate {url}: expected opc.tcp://HOST:PORT[/PATH]#NODEID")
        return {
            "type": "opcua",
            "url": url.split("#", 1)[0],
            "node": unquote(parts.fragment),
            **secret,
        }
    raise EdgeadError(f"--gate {url}: expected mqtt://HOST[:PORT]/TOPIC or opc.tcp://...#NODEID")


def make_gate(config, where: str, base) -> Gate:
    """A gate from its config (``edgead.serve.config.GateConfig``), secrets read; EdgeadError
    naming ``where`` when its package is missing or a secret cannot be read."""
    from pathlib import Path

    from edgead.serve.sinks.build import read_secret, require_package

    require_package(config.type, "gate", where)
    common = {"initial": config.initial == "running"}
    if config.run_values is not None:
        common["run_values"] = tuple(config.run_values)
    if config.stop_values is not None:
        common["stop_values"] = tuple(config.stop_values)
    secret = {"username": config.username, "password": read_secret(config, where, Path(base))}
    if config.type == "mqtt":
        return MqttGate(config.host, config.port, config.topic, **secret, **common)
    return OpcUaGate(config.url, config.node, config.poll_s, **secret, **common)


def flag_gate(url: str | None) -> Gate | None:
    """``--gate URL`` as a gate (checked now; it starts with the stream)."""
    if url is None:
        return None
    from pathlib import Path

    from pydantic import TypeAdapter, ValidationError

    from edgead.serve.config import GateConfig

    try:
        config = TypeAdapter(GateConfig).validate_python(gate_from_url(url))
    except ValidationError as exc:
        raise EdgeadError(f"--gate {url}: {exc.errors()[0]['msg']}") from exc
    return make_gate(config, "--gate", Path.cwd())
