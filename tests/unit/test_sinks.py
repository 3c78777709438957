"""Line sinks without a network: the spool's order, bounds and recovery; a sink's retries,
refusals and its never-blocking offer; the config's and the flags' checks; a real local HTTP
server for the webhook."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("pydantic", reason="the sinks' config needs the serve extra")

from edgead.errors import EdgeadError
from edgead.serve.config import ServeConfig
from edgead.serve.sinks import SCHEMA, Sink, WebhookSink, flag_sinks, line_message, sink_specs
from edgead.serve.spool import Spool

SCHEMA_FILE = Path(__file__).parents[2] / "edgead/serve/schemas/verdict.schema.json"


def wait_until(condition, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def message(i: int, verdict: str = "good") -> dict:
    entry = {
        "seq": i,
        "source": f"part-{i}.png",
        "captured_at": 1_800_000_000.25 + i,
        "score": 1.5 + i,
        "normalized_score": 0.4,
        "verdict": verdict,
        "regions": [{"x": 1, "y": 2, "width": 3, "height": 4, "area": 12, "peak": 0.9}],
        "latency_ms": {"decode": 1.0, "graph": 2.5},
        "frame_age_ms": 4.0,
    }
    bundle = {"name": "tire", "revision": 2, "detector": "patchcore"}
    return line_message("line1", f"line1-run-{i}", entry, 3.0, bundle)


class Recording(Sink):
    """A sink whose receiver is a list; ``fail`` raises on delivery, ``refuse`` returns False,
    ``hang`` blocks until released."""

    kind = "test"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, backoff_initial=0.01, backoff_max=0.02, **kwargs)
        self.received: list[dict] = []
        self.fail = 0  # raise on the next N deliveries
        self.refuse: set[int] = set()
        self.hang = threading.Event()
        self.hang.set()

    def deliver(self, counter, message):
        self.hang.wait()
        if self.fail:
            self.fail -= 1
            raise ConnectionError("receiver down")
        if message["seq"] in self.refuse:
            return False
        self.received.append(message)
        return True


def test_the_message_follows_its_schema():
    jsonschema = pytest.importorskip("jsonschema", reason="schema validation needs jsonschema")
    m = message(7, "anomalous")
    jsonschema.validate(m, json.loads(SCHEMA_FILE.read_text()))
    assert m["schema"] == SCHEMA and m["captured_at_iso"] == "2027-01-15T08:00:07.250Z"
    assert m["latency_ms"] == 3.5 and m["threshold"] == 3.0 and m["verdict"] == "anomalous"


def test_the_spool_keeps_order_bounds_and_survives_a_reopen(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", max_messages=5)
    assert spool.put_many([f"m{i}" for i in range(3)]) == 0
    assert spool.put_many([f"m{i}" for i in range(3, 8)]) == 3  # the 3 oldest go
    assert [b for _, b in spool.peek(10)] == ["m3", "m4", "m5", "m6", "m7"]
    first = spool.peek(2)
    spool.remove_through(first[-1][0])
    assert len(spool) == 3 and spool.dropped == 3
    spool.close()  # a restart (what SIGKILL leaves is tested against a real server)
    again = Spool(tmp_path / "s.sqlite", max_messages=5)
    assert again.recovered == 3 and [b for _, b in again.peek(10)] == ["m5", "m6", "m7"]
    again.put_many(["m8"])
    ids = [i for i, _ in again.peek(10)]
    assert ids == sorted(ids) and len(ids) == 4
    again.close()


def test_a_sink_delivers_in_order_through_failures_and_skips_only_refusals(tmp_path):
    sink = Recording("t", tmp_path / "t.sqlite")
    sink.fail = 3
    sink.refuse = {4}
    sink.start()
    for i in range(10):
        sink.offer(message(i))
    wait_until(lambda: len(sink.received) == 9 and len(sink.spool) == 0, what="delivery")
    assert [m["seq"] for m in sink.received] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    stats = sink.stats()
    assert stats["sent"] == 9 and stats["rejected"] == 1 and stats["errors"] == 3
    assert stats["dropped"] == 0 and stats["state"] == "connected"
    sink.stop(1.0)


def test_a_hanging_receiver_never_blocks_the_offer_and_nothing_is_lost_after_a_restart(tmp_path):
    sink = Recording("t", tmp_path / "t.sqlite", queue_size=1000)
    sink.hang.clear()  # the receiver takes the first message and never answers
    sink.start()
    start = time.perf_counter()
    for i in range(500):
        sink.offer(message(i))
    elapsed = time.perf_counter() - start
    wait_until(lambda: len(sink.spool) == 500, what="the spool to hold every message")
    # offering is a queue put: far below a frame's time even on a loaded 2-core machine
    assert elapsed < 0.5, elapsed
    assert sink.offer_seconds <= elapsed and sink.stats()["dropped"] == 0
    sink.stop(0.2)  # the sender is stuck: what it did not deliver stays on disk
    again = Recording("t", tmp_path / "t.sqlite")
    assert again.spool.recovered == 500
    again.start()
    wait_until(lambda: len(again.spool) == 0, what="the spool to drain after the restart")
    seqs = [m["seq"] for m in again.received]
    # at least once: the message in flight when the receiver hung may come twice, nothing less
    assert sorted(set(seqs)) == list(range(500)) and seqs == sorted(seqs)
    again.stop(1.0)
    sink.hang.set()  # the stuck one finishes its one delivery and stops
    sink._sender.join(2.0)
    assert not sink._sender.is_alive()


def test_a_full_memory_queue_drops_and_counts_instead_of_waiting(tmp_path):
    sink = Recording("t", tmp_path / "t.sqlite", queue_size=3)  # not started: nothing drains
    for i in range(10):
        sink.offer(message(i))
    assert sink.dropped_memory == 7 and sink.stats()["dropped"] == 7
    sink.spool.close()


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        server.calls += 1
        if server.calls <= server.fail_first:
            self.send_response(503)
        elif body["seq"] == server.refuse:
            self.send_response(400)
        else:
            server.got.append((body, self.headers.get("Authorization")))
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_webhook_retries_5xx_in_order_and_skips_a_4xx(tmp_path, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.calls, server.fail_first, server.refuse, server.got = 0, 3, 2, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HOOK_TOKEN", "Bearer s3cret")
        config = ServeConfig.model_validate(
            {
                "streams": [{"name": "a", "bundle": "b", "folder": "f"}],
                "sinks": [
                    {
                        "type": "webhook",
                        "url": f"http://127.0.0.1:{server.server_port}/hook",
                        "headers_env": {"Authorization": "HOOK_TOKEN"},
                    }
                ],
            }
        )
        (spec,) = sink_specs(config.sinks, "sinks", tmp_path)
        sink = spec.make(tmp_path / "stream")
        assert isinstance(sink, WebhookSink)
        sink.backoff_initial = sink.backoff_max = 0.01
        sink.start()
        for i in range(6):
            sink.offer(message(i))
        wait_until(lambda: len(sink.spool) == 0 and len(server.got) == 5, what="the webhook")
        assert [b["seq"] for b, _ in server.got] == [0, 1, 3, 4, 5]
        assert {auth for _, auth in server.got} == {"Bearer s3cret"}
        s = sink.stats()
        assert s["sent"] == 5 and s["rejected"] == 1 and "HTTP 400" in s["last_error"]
        assert (tmp_path / "stream" / "spool" / "webhook.sqlite").is_file()
        sink.stop(1.0)
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("sink", "expected"),
    [
        ({"type": "mqtt", "host": "h", "topic": "a/{line}"}, "sinks.0.mqtt: Value error, topic"),
        ({"type": "mqtt", "host": "h", "topic": "a/#"}, "are for subscribing"),
        ({"type": "webhook", "url": "http://u:p@h/x"}, "credentials in the URL"),
        ({"type": "webhook", "url": "ftp://h/x"}, "expected http:// or https://"),
        (
            {"type": "opcua", "url": "opc.tcp://h:4840", "nodes": {"colour": "ns=2;i=1"}},
            "unknown field(s) colour",
        ),
        ({"type": "opcua", "url": "http://h", "nodes": {"score": "ns=2;i=1"}}, "opc.tcp://"),
        ({"type": "kafka"}, "sinks.0"),
    ],
)
def test_a_wrong_sink_config_names_the_key(tmp_path, sink, expected):
    from edgead.serve.config import load_config

    path = tmp_path / "streams.yaml"
    doc = {"streams": [{"name": "a", "bundle": "b", "folder": "f"}], "sinks": [sink]}
    path.write_text(json.dumps(doc))  # JSON is YAML
    with pytest.raises(EdgeadError) as info:
        load_config(path)
    assert str(path) in str(info.value) and expected in str(info.value), info.value


def test_secrets_come_from_the_environment_or_a_file_and_are_checked_at_start(tmp_path):
    config = ServeConfig.model_validate(
        {
            "streams": [{"name": "a", "bundle": "b", "folder": "f"}],
            "sinks": [
                {"type": "mqtt", "host": "h", "username": "u", "password_env": "EDGEAD_NO_SUCH"}
            ],
        }
    )
    with pytest.raises(EdgeadError, match=r"sinks\[0\].password_env: EDGEAD_NO_SUCH is not set"):
        sink_specs(config.sinks, "sinks", tmp_path)
    (tmp_path / "pw").write_text("hunter2\n")
    config.sinks[0].password_env = None
    config.sinks[0].password_file = "pw"
    (spec,) = sink_specs(config.sinks, "sinks", tmp_path)
    assert spec.kwargs["password"] == "hunter2" and spec.kwargs["username"] == "u"
    doc = config.model_dump(exclude_none=True)
    doc["sinks"][0]["tls"] = {"ca_certs": "missing.pem"}
    config = ServeConfig.model_validate(doc)
    with pytest.raises(EdgeadError, match=r"sinks\[0\].tls.ca_certs: .*missing.pem is not a file"):
        sink_specs(config.sinks, "sinks", tmp_path)


def test_the_flags_refuse_credentials_on_the_command_line(monkeypatch):
    with pytest.raises(EdgeadError, match="no credentials on the command line"):
        flag_sinks("mqtt://user:pw@broker:1883", None, None, None, ())
    monkeypatch.setenv("EDGEAD_MQTT_USERNAME", "line")
    (mqtt,) = flag_sinks("broker:1884", "plant/{stream}/{verdict}", None, None, ())
    assert (mqtt.host, mqtt.port, mqtt.topic) == ("broker", 1884, "plant/{stream}/{verdict}")
    assert mqtt.username == "line" and mqtt.password_env == "EDGEAD_MQTT_PASSWORD"
    with pytest.raises(EdgeadError, match="expected FIELD=NODEID"):
        flag_sinks(None, None, None, "opc.tcp://plc:4840", ("score",))
    with pytest.raises(EdgeadError, match="--opcua-node needs --opcua"):
        flag_sinks(None, None, None, None, ("score=ns=2;i=3",))
    (opc,) = flag_sinks(None, None, None, "opc.tcp://plc:4840", ("score=ns=2;s=L1.Score",))
    assert opc.nodes == {"score": "ns=2;s=L1.Score"}


def test_names_stay_unique_per_stream(tmp_path):
    config = ServeConfig.model_validate(
        {
            "streams": [{"name": "a", "bundle": "b", "folder": "f"}],
            "sinks": [
                {"type": "webhook", "url": "http://h/1"},
                {"type": "webhook", "url": "http://h/2"},
            ],
        }
    )
    specs = sink_specs(config.sinks, "sinks", tmp_path, {"webhook"})
    assert [s.name for s in specs] == ["webhook-2", "webhook-3"]


def test_a_missing_line_package_is_said_at_start_for_sinks_and_gates(tmp_path, monkeypatch):
    import importlib.util

    from edgead.serve.gates import make_gate

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "paho" else real(name, *a)
    )
    config = ServeConfig.model_validate(
        {
            "streams": [
                {
                    "name": "a",
                    "bundle": "b",
                    "folder": "f",
                    "gate": {"type": "mqtt", "host": "h", "topic": "line/state"},
                }
            ],
            "sinks": [{"type": "webhook", "url": "http://h/1"}, {"type": "mqtt", "host": "h"}],
        }
    )
    with pytest.raises(EdgeadError, match=r"sinks\[1\]: the mqtt sink needs the paho package"):
        sink_specs(config.sinks, "sinks", tmp_path)
    with pytest.raises(EdgeadError, match=r"streams\[0\].gate: the mqtt gate needs the paho"):
        make_gate(config.streams[0].gate, "streams[0].gate", tmp_path)
