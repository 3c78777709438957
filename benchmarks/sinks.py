"""What each line sink costs per verdict, with its receiver on this machine.

    python benchmarks/sinks.py [--messages 2000] [--json benchmarks/results/sinks.json]

For MQTT (Mosquitto, started here on 127.0.0.1), an HTTP webhook and OPC UA (an asyncua
server), each receiver in a process of its own so that only the sink's work is counted:

- ``offer_us``: time on the scoring thread per verdict (the only cost scoring ever pays);
- ``cpu_ms_per_message``: this process's CPU time per verdict, offer + spool + send + ack
  (the sink's threads included), the median of ``--repeat`` runs (each in ``cpu_ms_runs``;
  the sinks interleaved): the goal is below 1 ms;
- the same offer cost with a receiver that accepts connections and never answers (hang).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgead.serve.sinks import MqttSink, OpcUaSink, WebhookSink, line_message

HOOK_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

OPCUA_SERVER = """
import sys, time
from asyncua import ua
from asyncua.sync import Server
s = Server(); s.set_endpoint(f"opc.tcp://127.0.0.1:{sys.argv[1]}/line/")
ns = s.register_namespace("urn:bench")
o = s.nodes.objects.add_object(ua.NodeId("L", ns), "L")
for name, v, t in (("Verdict", "", ua.VariantType.String), ("Score", 0.0, ua.VariantType.Double),
                   ("Count", 0, ua.VariantType.UInt32)):
    o.add_variable(ua.NodeId("L." + name, ns), name, v, t).set_writable()
s.start()
print("ready", ns, flush=True)
while True:
    time.sleep(1)
"""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def messages(n: int) -> list[dict]:
    out = []
    for i in range(n):
        entry = {
            "seq": i,
            "source": f"/line/part-{i:06d}.png",
            "captured_at": time.time(),
            "score": 1.0 + i % 7,
            "normalized_score": 0.4,
            "verdict": "good" if i % 10 else "anomalous",
            "regions": []
            if i % 10
            else [{"x": 1, "y": 2, "width": 30, "height": 40, "area": 900, "peak": 3.2}],
            "latency_ms": {"decode": 2.1, "preprocess": 0.9, "graph": 7.5, "score": 5.6},
            "frame_age_ms": 18.0,
        }
        bundle = {"name": "tire", "revision": 3, "detector": "patchcore"}
        out.append(line_message("line1", f"line1-bench-{i}", entry, 4.2, bundle))
    return out


def measure(sink, batch: list[dict], drain: bool = True, rate: float = 500.0) -> dict:
    """Warm up (connect, first deliveries), then offer ``batch`` at ``rate`` per second (a
    fast line) and wait until every message is delivered, refused or dropped."""
    sink.start()
    warm = batch[:50]
    if drain:
        for m in warm:
            sink.offer(m)
        wait(lambda: sink.sent + sink.rejected >= len(warm), 60)
    sink.offer_seconds = 0.0
    base = sink.sent + sink.rejected
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i, m in enumerate(batch):
        ahead = t0 + i / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
        sink.offer(m)
    row = {"offer_us": round(sink.offer_seconds / len(batch) * 1e6, 2)}
    if drain:
        done = lambda: sink.sent + sink.rejected - base + sink.stats()["dropped"]  # noqa: E731
        wait(lambda: done() >= len(batch), 300)
        t1, cpu1 = time.perf_counter(), time.process_time()
        row.update(
            {
                "delivered": sink.sent - (base - sink.rejected),
                "dropped": sink.stats()["dropped"],
                "offered_per_s": rate,
                "seconds": round(t1 - t0, 2),
                "cpu_ms_per_message": round((cpu1 - cpu0) / len(batch) * 1e3, 4),
                "errors": sink.errors,
            }
        )
    else:
        row["offer_total_s"] = round(time.perf_counter() - t0, 4)
    sink.stop(0.5)
    return row


def wait(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per sink (median kept)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    load = os.getloadavg()
    batch = messages(args.messages)
    work = Path(tempfile.mkdtemp(prefix="edgead-sinks-"))
    procs: list[subprocess.Popen] = []
    makers = {}  # sink label -> a function making a fresh sink (its own spool file)
    try:
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if os.access(mosquitto, os.X_OK):
            mport = free_port()
            conf = work / "m.conf"
            conf.write_text(f"listener {mport} 127.0.0.1\nallow_anonymous true\n")
            procs.append(subprocess.Popen([mosquitto, "-c", str(conf)], stderr=subprocess.DEVNULL))
            wait_port(mport)
            makers["mqtt (QoS 1, Mosquitto)"] = lambda f: MqttSink("mqtt", f, "127.0.0.1", mport)
        else:
            print("mosquitto not installed: MQTT row skipped (tools/install-mosquitto.sh)")
        hport = free_port()
        procs.append(subprocess.Popen([sys.executable, "-c", HOOK_SERVER, str(hport)]))
        wait_port(hport)
        makers["webhook (HTTP POST, keep-alive)"] = lambda f: WebhookSink(
            "webhook", f, f"http://127.0.0.1:{hport}/hook"
        )
        oport = free_port()
        opc = subprocess.Popen(
            [sys.executable, "-c", OPCUA_SERVER, str(oport)], stdout=subprocess.PIPE, text=True
        )
        procs.append(opc)
        ns = opc.stdout.readline().split()[1]
        nodes = {
            "verdict": f"ns={ns};s=L.Verdict",
            "score": f"ns={ns};s=L.Score",
            "counter": f"ns={ns};s=L.Count",
        }
        makers["OPC UA (3 variables, one Write each)"] = lambda f: OpcUaSink(
            "opcua", f, f"opc.tcp://127.0.0.1:{oport}/line/", nodes
        )
        # a receiver that accepts connections and never answers
        hang = socket.socket()
        hang.bind(("127.0.0.1", 0))
        hang.listen(64)
        makers["webhook that hangs"] = lambda f: WebhookSink(
            "hang", f, f"http://127.0.0.1:{hang.getsockname()[1]}/", timeout=30
        )
        runs: dict[str, list[dict]] = {label: [] for label in makers}
        for r in range(args.repeat):  # the sinks interleaved, so that noise falls on all
            for label, make in makers.items():
                sink = make(work / f"{label.split()[0]}-{r}.sqlite")
                runs[label].append(measure(sink, batch, drain=label != "webhook that hangs"))
        hang.close()
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for label, done in runs.items():
        row = {"sink": label, "offer_us": round(statistics.median(d["offer_us"] for d in done), 2)}
        if "cpu_ms_per_message" in done[0]:
            cpu = [d["cpu_ms_per_message"] for d in done]
            row.update(
                {
                    "cpu_ms_per_message": round(statistics.median(cpu), 4),
                    "cpu_ms_runs": cpu,
                    "delivered": min(d["delivered"] for d in done),
                    "dropped": max(d["dropped"] for d in done),
                    "errors": sum(d["errors"] for d in done),
                }
            )
        rows.append(row)
    context = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "load_average_at_start": load,
        "messages": args.messages,
        "repeat": args.repeat,
        "command": "python benchmarks/sinks.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps(context))
    for r in rows:
        print(json.dumps(r))
    if args.json is not None:
        args.json.write_text(json.dumps({"context": context, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
