"""Verdicts into the line's systems, against real servers started here on 127.0.0.1: Debian's
Mosquitto broker (stopped for 10 s mid-stream, then a SIGKILLed `edgead serve` restarted) and
an asyncua OPC UA server standing in for a PLC."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="edgead serve needs the serve extra")
pytest.importorskip("httpx", reason="the serve tests need httpx (dev extra)")

from tests.integration.test_serve import (
    ServerProcess,
    clip,  # noqa: F401  (fixtures)
    clip_frames,  # noqa: F401
    free_port,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
)
SCHEMA = Path(__file__).parents[2] / "edgead/serve/schemas/verdict.schema.json"


class Broker:
    """Mosquitto on 127.0.0.1 with persistence (a subscriber's session and its queued
    messages survive a broker restart, as on a line's broker); stopped by its PID."""

    def __init__(self, folder: Path):
        if MOSQUITTO is None:
            pytest.skip("mosquitto is not installed (tools/install-mosquitto.sh installs it)")
        pytest.importorskip("paho.mqtt", reason="the MQTT tests need paho-mqtt (line extra)")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {folder}/\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.folder / "mosquitto.log", "a")  # noqa: SIM115 (the process owns it)
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        wait_for(self._listening, 10, "mosquitto to listen")

    def _listening(self) -> bool:
        import socket

        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # saves the persistence file
            self.proc.wait(10)
        self.proc = None


class Subscriber:
    """Collects every message under edgead/# at QoS 1, in arrival order; a persistent session
    (clean_session False), so messages published while it reconnects are kept for it."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.messages: list[dict] = []
        self.topics: list[str] = []
        self._lock = threading.Lock()
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"line-sub-{port}", clean_session=False
        )
        c.on_connect = lambda client, *a: client.subscribe("edgead/#", qos=1)
        c.on_message = self._on_message
        c.reconnect_delay_set(0.1, 0.5)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append(json.loads(msg.payload))
            self.topics.append(msg.topic)

    def unique(self) -> list[dict]:
        """First arrival of each frame id (QoS 1 may deliver a message twice)."""
        seen: set[str] = set()
        out = []
        with self._lock:
            for m in self.messages:
                if m["frame_id"] not in seen:
                    seen.add(m["frame_id"])
                    out.append(m)
        return out

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def opcua_server(variables: dict) -> tuple:
    """An asyncua server on 127.0.0.1 standing in for a PLC: one writable variable per entry
    (name -> (initial value, variant type)), node ids ``ns=NS;s=Line1.NAME``. Returns the
    server (started), its URL, the namespace index and the nodes by name."""
    pytest.importorskip("asyncua", reason="the OPC UA tests need asyncua (line extra)")
    from asyncua import ua
    from asyncua.sync import Server

    url = f"opc.tcp://127.0.0.1:{free_port()}/line/"
    server = Server()
    server.set_endpoint(url)
    ns = server.register_namespace("urn:edgead-test:line")
    line = server.nodes.objects.add_object(ua.NodeId("Line1", ns), "Line1")
    nodes = {}
    for name, (value, vtype) in variables.items():
        node = line.add_variable(
            ua.NodeId(f"Line1.{name}", ns), name, value, getattr(ua.VariantType, vtype)
        )
        node.set_writable()
        nodes[name] = node
    server.start()
    return server, url, ns, nodes


def parts(frames: list[Path], folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        shutil.copy(frames[i % len(frames)], folder / f"part-{i:04d}.png")
    return folder


def test_every_verdict_reaches_mqtt_once_in_order_across_a_10s_broker_outage(
    patchcore_bundle,
    clip_frames,  # noqa: F811
    tmp_path,
):
    jsonschema = pytest.importorskip("jsonschema", reason="schema validation needs jsonschema")
    broker = Broker(tmp_path / "broker")
    broker.start()
    sub = Subscriber(broker.port)
    n = 150
    folder = parts(clip_frames, tmp_path / "incoming", n)
    srv = ServerProcess(
        [
            str(patchcore_bundle),
            "--folder",
            str(folder),
            "--fps",
            "8",
            "--mqtt",
            f"127.0.0.1:{broker.port}",
            "--mqtt-topic",
            "edgead/{stream}/{verdict}",
        ],
        tmp_path / "out",
    )
    try:
        srv.wait_ready()
        wait_for(lambda: len(sub.unique()) >= 25, 60, "25 verdicts on the broker")
        broker.stop()  # the broker goes away mid-stream for 10 s
        down_at = srv.status()["frames"]
        time.sleep(10)
        during = srv.status()
        sink = during["sinks"][0]
        assert sink["state"] == "disconnected" and sink["spooled"] > 0, sink
        assert during["frames"] > down_at + 40, "scoring went on while the broker was down"
        broker.start()
        wait_for(lambda: srv.status()["frames"] >= n, 120, f"{n} frames scored")
        wait_for(lambda: len(sub.unique()) >= n, 60, "every verdict on the broker")
        final = srv.status()
    finally:
        assert srv.stop() == 0, srv.output()
        sub.close()
        broker.stop()
    got = sub.unique()
    assert len(got) == n
    assert [m["seq"] for m in got] == sorted(m["seq"] for m in got), "out of order"
    assert [Path(m["source"]).name for m in got] == [f"part-{i:04d}.png" for i in range(n)]
    schema = json.loads(SCHEMA.read_text())
    for m in got:
        jsonschema.validate(m, schema)
    assert {m["stream"] for m in got} == {"default"}
    assert all(
        t == f"edgead/default/{m['verdict']}" for t, m in zip(sub.topics, sub.messages, strict=True)
    )
    last = final["latest"]
    assert got[-1]["score"] == last["score"] and got[-1]["verdict"] == last["verdict"]
    assert got[-1]["threshold"] == final["model"]["threshold"]
    assert final["sinks"][0]["sent"] >= n and final["sinks"][0]["dropped"] == 0
    assert final["sinks"][0]["errors"] >= 1 and final["sinks"][0]["spooled"] == 0
    overview = final["streams"][0]["sinks"][0]
    assert overview["state"] == "connected" and overview["sent"] >= n


def test_a_serve_killed_while_spooling_delivers_the_spool_after_a_restart(
    patchcore_bundle,
    clip_frames,  # noqa: F811
    tmp_path,
):
    broker = Broker(tmp_path / "broker")  # not started: the line's broker is down
    n = 20
    folder = parts(clip_frames, tmp_path / "incoming", n)
    out = tmp_path / "out"
    args = [str(patchcore_bundle), "--folder", str(folder), "--fps", "0"]
    args += ["--mqtt", f"127.0.0.1:{broker.port}"]
    srv = ServerProcess(args, out)
    try:
        srv.wait_ready()
        wait_for(
            lambda: (s := srv.status())["frames"] >= n and s["sinks"][0]["spooled"] == n,
            90,
            f"{n} verdicts in the spool",
        )
        srv.proc.send_signal(signal.SIGKILL)  # no orderly stop: only what is on disk remains
        srv.proc.wait(10)
    finally:
        srv.stop()
    assert (out / "spool" / "mqtt.sqlite").is_file()
    broker.start()
    sub = Subscriber(broker.port)
    srv = ServerProcess(args, out)
    try:
        srv.wait_ready()
        wait_for(lambda: len(sub.unique()) >= n, 60, "the spooled verdicts on the broker")
        # the PUBACKs are counted after the subscriber may have its copies
        status = wait_for(
            lambda: (s := srv.status())["sinks"][0]["sent"] >= n and s, 30, "every PUBACK"
        )
    finally:
        assert srv.stop() == 0, srv.output()
        sub.close()
        broker.stop()
    got = sub.unique()
    assert [Path(m["source"]).name for m in got] == [f"part-{i:04d}.png" for i in range(n)]
    assert status["frames"] == 0  # nothing was scored again: the folder's files were done
    assert status["sinks"][0]["recovered_at_start"] == n and status["sinks"][0]["sent"] == n
    assert "undelivered messages from an earlier run go out first" in srv.output()


def test_verdicts_are_written_to_an_opc_ua_server(
    patchcore_bundle,
    clip_frames,  # noqa: F811
    tmp_path,
):
    server, url, ns, nodes = opcua_server(
        {
            "Verdict": ("", "String"),
            "Reject": (False, "Boolean"),
            "Score": (0.0, "Double"),
            "Regions": (0, "Int32"),
            "Count": (0, "UInt32"),
        }
    )
    n = 12
    folder = parts(clip_frames, tmp_path / "incoming", n)
    args = [str(patchcore_bundle), "--folder", str(folder), "--fps", "0"]
    args += ["--opcua", url]
    for field, name in (
        ("verdict", "Verdict"),
        ("anomalous", "Reject"),
        ("score", "Score"),
        ("regions", "Regions"),
        ("counter", "Count"),
    ):
        args += ["--opcua-node", f"{field}=ns={ns};s=Line1.{name}"]
    srv = ServerProcess(args, tmp_path / "out")
    try:
        srv.wait_ready()
        wait_for(lambda: nodes["Count"].read_value() == n, 90, f"the counter at {n}")
        status = srv.status()
        values = {name: node.read_value() for name, node in nodes.items()}
    finally:
        assert srv.stop() == 0, srv.output()
        server.stop()
    latest = status["latest"]
    assert status["frames"] == n and status["sinks"][0]["sent"] == n
    assert values["Score"] == pytest.approx(latest["score"])
    assert values["Verdict"] == latest["verdict"]
    assert values["Reject"] == (latest["verdict"] == "anomalous")
    assert values["Regions"] == len(latest["regions"])


def test_a_webhook_that_hangs_costs_scoring_nothing(
    patchcore_bundle,
    clip_frames,  # noqa: F811
    tmp_path,
):
    import socket

    # a receiver that accepts connections and never answers
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    n = 40
    folder = parts(clip_frames, tmp_path / "incoming", n)
    args = [str(patchcore_bundle), "--folder", str(folder), "--fps", "0"]
    args += ["--webhook", f"http://127.0.0.1:{port}/hook"]
    srv = ServerProcess(args, tmp_path / "out")
    try:
        srv.wait_ready()
        status = wait_for(
            lambda: (s := srv.status())["frames"] >= n and s["sinks"][0]["spooled"] >= n - 1 and s,
            90,
            f"{n} frames scored and spooled",
        )
    finally:
        assert srv.stop() == 0, srv.output()
        listener.close()
    sink = status["sinks"][0]
    assert sink["sent"] == 0 and sink["dropped"] == 0
    # time the scoring thread spent handing verdicts to the hanging sink, against the time it
    # spent scoring: under 5% (the sink's own threads wait, not the scoring thread)
    scoring_ms = status["latency_ms_p50"]["total"] * status["frames"]
    assert sink["offer_ms"] < 0.05 * scoring_ms, (sink, scoring_ms)


def test_a_config_sends_each_streams_verdicts_in_its_own_order(
    patchcore_bundle,
    clip_frames,  # noqa: F811
    tmp_path,
):
    broker = Broker(tmp_path / "broker")
    broker.start()
    sub = Subscriber(broker.port)
    n = 10
    config = tmp_path / "streams.yaml"
    config.write_text(
        json.dumps(
            {
                "streams": [
                    {
                        "name": "left",
                        "folder": str(parts(clip_frames, tmp_path / "l", n)),
                        "bundle": str(patchcore_bundle),
                        "fps": 0,
                    },
                    {
                        "name": "right",
                        "folder": str(parts(clip_frames, tmp_path / "r", n)),
                        "bundle": str(patchcore_bundle),
                        "fps": 0,
                    },
                ],
                "sinks": [
                    {
                        "type": "mqtt",
                        "host": "127.0.0.1",
                        "port": broker.port,
                        "topic": "edgead/{stream}/{bundle}/r{revision}",
                    }
                ],
            }
        )
    )
    srv = ServerProcess(["--config", str(config)], tmp_path / "out")
    try:
        srv.wait_ready()
        wait_for(lambda: len(sub.unique()) >= 2 * n, 90, "both streams' verdicts")
        status = srv.status()
    finally:
        assert srv.stop() == 0, srv.output()
        sub.close()
        broker.stop()
    got = sub.unique()
    for name in ("left", "right"):
        mine = [m for m in got if m["stream"] == name]
        assert [Path(m["source"]).name for m in mine] == [f"part-{i:04d}.png" for i in range(n)]
    assert set(sub.topics) == {f"edgead/{s}/{patchcore_bundle.name}/r1" for s in ("left", "right")}
    assert [len(s["sinks"]) for s in status["streams"]] == [1, 1]
    assert (tmp_path / "out" / "left" / "spool" / "mqtt.sqlite").is_file()


def test_the_lines_state_over_mqtt_pauses_a_camera_and_resumes_it(
    patchcore_bundle,
    clip,  # noqa: F811
    tmp_path,
):
    import paho.mqtt.publish as publish

    broker = Broker(tmp_path / "broker")
    broker.start()
    topic = "plant/line1/state"

    def line(state: str) -> None:
        publish.single(topic, state, qos=1, retain=True, hostname="127.0.0.1", port=broker.port)

    line("running")
    args = [str(patchcore_bundle), "--video", str(clip), "--loop", "--live"]
    args += ["--gate", f"mqtt://127.0.0.1:{broker.port}/{topic}"]
    srv = ServerProcess(args, tmp_path / "out")
    try:
        srv.wait_ready()
        srv.wait_frames(10)
        line("stopped")
        wait_for(lambda: srv.status()["source"]["state"] == "paused", 20, "the stream to pause")
        time.sleep(0.5)  # what was queued before the stop is scored
        held = srv.status()
        time.sleep(2.0)
        still = srv.status()
        line("running")
        wait_for(lambda: srv.status()["frames"] > still["frames"] + 10, 30, "scoring again")
        after = srv.status()
    finally:
        assert srv.stop() == 0, srv.output()
        broker.stop()
    # while the line stood, no frame was scored and the drift window took no part
    assert still["frames"] == held["frames"], (held["frames"], still["frames"])
    assert still["drift"]["parts"] == held["drift"]["parts"]
    assert still["source"]["paused_frames"] > held["source"]["paused_frames"] + 10
    assert after["source"]["state"] == "live"
    gate = after["gate"]
    assert gate["type"] == "mqtt" and gate["connected"] and gate["line_running"]
    assert gate["changes"] == 2 and gate["last_value"] == "b'running'"


def test_the_lines_state_from_an_opc_ua_variable_pauses_a_camera(
    patchcore_bundle,
    clip,  # noqa: F811
    tmp_path,
):
    server, url, ns, nodes = opcua_server({"Running": (True, "Boolean")})
    running = nodes["Running"]
    args = [str(patchcore_bundle), "--video", str(clip), "--loop", "--live"]
    args += ["--gate", f"{url}#ns={ns};s=Line1.Running"]
    srv = ServerProcess(args, tmp_path / "out")
    try:
        srv.wait_ready()
        srv.wait_frames(10)
        running.write_value(False)
        wait_for(lambda: srv.status()["source"]["state"] == "paused", 20, "the stream to pause")
        time.sleep(0.5)
        held = srv.status()["frames"]
        time.sleep(1.5)
        assert srv.status()["frames"] == held
        running.write_value(True)
        wait_for(lambda: srv.status()["frames"] > held + 10, 30, "scoring again")
        gate = srv.status()["gate"]
    finally:
        assert srv.stop() == 0, srv.output()
        server.stop()
    assert gate["type"] == "opcua" and gate["changes"] == 2 and gate["line_running"]
