"""Sinks from the serve config and from the single-stream flags: checked, secrets read."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edgead.errors import EdgeadError
from edgead.serve.sinks.base import Sink
from edgead.serve.sinks.mqtt import MqttSink
from edgead.serve.sinks.opcua import OpcUaSink
from edgead.serve.sinks.webhook import WebhookSink


@dataclass
class SinkSpec:
    """A sink as configured, its secrets read and its files checked: made per stream."""

    cls: type[Sink]
    name: str
    kwargs: dict

    def make(self, folder: str | Path) -> Sink:
        """The sink of one stream; its spool is ``folder/spool/<name>.sqlite``."""
        return self.cls(self.name, Path(folder) / "spool" / f"{self.name}.sqlite", **self.kwargs)


# the package each kind of sink sends with (the ``line`` extra)
_NEEDS = {"mqtt": "paho", "webhook": "urllib3", "opcua": "asyncua"}


def require_package(kind: str, what: str, where: str) -> None:
    """EdgeadError naming ``where`` when the package a ``kind`` of sink or gate sends or
    reads with (the ``line`` extra) is not installed: said at start, not at the first verdict."""
    import importlib.util

    module = _NEEDS[kind]
    if importlib.util.find_spec(module) is None:
        raise EdgeadError(
            f"{where}: the {kind} {what} needs the {module} package: pip install 'edgead[line]'"
        )


def read_secret(config, where: str, base: Path) -> str | None:
    """A config's password from ``password_env`` or ``password_file`` (None without)."""
    if config.password_env is not None:
        value = os.environ.get(config.password_env)
        if value is None:
            raise EdgeadError(f"{where}.password_env: {config.password_env} is not set")
        return value
    if config.password_file is not None:
        path = base / config.password_file
        try:
            return path.read_text("utf-8").splitlines()[0] if path.stat().st_size else ""
        except (OSError, UnicodeDecodeError) as exc:
            raise EdgeadError(f"{where}.password_file: cannot read {path} ({exc})") from exc
    return None


def sink_specs(
    configs: list, where: str, base: Path, taken: set[str] | None = None
) -> list[SinkSpec]:
    """Each sink config checked and resolved (secrets from the environment or files, TLS files
    present); EdgeadError naming ``where`` and the key at fault. Nothing connects yet: a
    receiver that is down at start is not an error (the spool holds its messages)."""
    specs: list[SinkSpec] = []
    used = taken if taken is not None else set()  # names already given to the stream's sinks
    for i, c in enumerate(configs):
        at = f"{where}[{i}]"
        require_package(c.type, "sink", at)
        name = c.name or c.type
        k = 2
        while name in used:
            name, k = f"{c.name or c.type}-{k}", k + 1
        used.add(name)
        common = {
            "queue_size": c.queue,
            "spool_max": c.spool_max,
            "backoff_max": c.backoff_max,
            "timeout": c.timeout,
        }
        if c.type == "mqtt":
            tls = None
            if c.tls is not None:
                tls = {}
                for key in ("ca_certs", "certfile", "keyfile"):
                    value = getattr(c.tls, key)
                    if value is not None:
                        path = base / value
                        if not path.is_file():
                            raise EdgeadError(f"{at}.tls.{key}: {path} is not a file")
                        tls[key] = str(path)
            kwargs = dict(
                host=c.host,
                port=c.port,
                topic=c.topic,
                qos=c.qos,
                client_id=c.client_id,
                username=c.username,
                password=read_secret(c, at, base),
                tls=tls,
            )
            specs.append(SinkSpec(MqttSink, name, {**common, **kwargs}))
        elif c.type == "webhook":
            headers = {}
            for header, env in c.headers_env.items():
                if env not in os.environ:
                    raise EdgeadError(f"{at}.headers_env.{header}: {env} is not set")
                headers[header] = os.environ[env]
            specs.append(SinkSpec(WebhookSink, name, {**common, "url": c.url, "headers": headers}))
        else:
            kwargs = dict(
                url=c.url, nodes=c.nodes, username=c.username, password=read_secret(c, at, base)
            )
            specs.append(SinkSpec(OpcUaSink, name, {**common, **kwargs}))
    return specs


def flag_sinks(
    mqtt: str | None,
    mqtt_topic: str | None,
    webhook: str | None,
    opcua: str | None,
    opcua_nodes: tuple[str, ...],
) -> list:
    """The single-stream form's sink flags as sink configs (secrets from the environment:
    EDGEAD_MQTT_USERNAME/PASSWORD, EDGEAD_WEBHOOK_AUTHORIZATION, EDGEAD_OPCUA_USERNAME/PASSWORD;
    never on the command line, where every user of the machine can read them)."""
    from pydantic import TypeAdapter, ValidationError

    from edgead.serve.config import SinkConfig

    raw: list[dict] = []
    if mqtt is not None:
        parts = urlsplit(mqtt if "://" in mqtt else f"mqtt://{mqtt}")
        if parts.password or parts.username:
            raise EdgeadError(
                "--mqtt: no credentials on the command line; set EDGEAD_MQTT_USERNAME and "
                "EDGEAD_MQTT_PASSWORD"
            )
        entry: dict = {"type": "mqtt", "host": parts.hostname or "", "port": parts.port or 1883}
        if mqtt_topic is not None:
            entry["topic"] = mqtt_topic
        if os.environ.get("EDGEAD_MQTT_USERNAME"):
            entry["username"] = os.environ["EDGEAD_MQTT_USERNAME"]
            entry["password_env"] = "EDGEAD_MQTT_PASSWORD"
        raw.append(entry)
    elif mqtt_topic is not None:
        raise EdgeadError("--mqtt-topic needs --mqtt HOST[:PORT]")
    if webhook is not None:
        entry = {"type": "webhook", "url": webhook}
        if os.environ.get("EDGEAD_WEBHOOK_AUTHORIZATION"):
            entry["headers_env"] = {"Authorization": "EDGEAD_WEBHOOK_AUTHORIZATION"}
        raw.append(entry)
    if opcua is not None:
        nodes = {}
        for item in opcua_nodes:
            field, sep, node = item.partition("=")
            if not sep:
                raise EdgeadError(f"--opcua-node {item!r}: expected FIELD=NODEID")
            nodes[field.strip()] = node.strip()
        entry = {"type": "opcua", "url": opcua, "nodes": nodes}
        if os.environ.get("EDGEAD_OPCUA_USERNAME"):
            entry["username"] = os.environ["EDGEAD_OPCUA_USERNAME"]
            entry["password_env"] = "EDGEAD_OPCUA_PASSWORD"
        raw.append(entry)
    elif opcua_nodes:
        raise EdgeadError("--opcua-node needs --opcua opc.tcp://HOST:PORT")
    adapter = TypeAdapter(SinkConfig)
    out = []
    for entry in raw:
        try:
            out.append(adapter.validate_python(entry))
        except ValidationError as exc:
            problems = "; ".join(f"{e['msg']}" for e in exc.errors())
            raise EdgeadError(f"--{entry['type']}: {problems}") from exc
    return out
