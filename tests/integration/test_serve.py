"""`edgead serve` end to end: a real server process on a video clip the tests write.

The clip is lossless (FFV1), so every served score can be checked against the runtime's score
of the same image file. One server (module scope) carries the API, stream, upload, browser and
stop tests; the reconnect and soak tests start their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="edgead serve needs the serve extra")
httpx = pytest.importorskip("httpx", reason="the serve tests need httpx (dev extra)")

from tests.unit.test_serve_parts import png_header_only  # noqa: E402

pytestmark = pytest.mark.timeout(240)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except (httpx.HTTPError, KeyError, TypeError) as exc:
            last_error = exc
        time.sleep(every)
    raise AssertionError(
        f"timed out after {timeout} s waiting for {what} (last error: {last_error})"
    )


class ServerProcess:
    """`edgead serve ...` in a subprocess, on a free port."""

    def __init__(self, args: list[str], out: Path, token: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = out
        self.log = out / "serve.log"
        out.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if token:
            env["EDGEAD_TOKEN"] = token
        cmd = [sys.executable, "-m", "edgead.cli", "serve", *args, "--port", str(self.port)]
        cmd += ["--out", str(out)]
        self._log_file = open(self.log, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT, env=env)
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def output(self) -> str:
        return self.log.read_text()

    def wait_ready(self, timeout: float = 90) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.output()}")
            return self.client.get("/healthz").status_code == 200

        wait_for(up, timeout, "the server to answer")

    def status(self) -> dict:
        r = self.client.get("/api/status")
        r.raise_for_status()
        return r.json()

    def wait_frames(self, n: int, timeout: float = 60) -> dict:
        return wait_for(
            lambda: (s := self.status())["frames"] >= n and s, timeout, f"{n} scored frames"
        )

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"no orderly stop within {timeout} s:\n{self.output()}"
                ) from None
        self.client.close()
        self._log_file.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def serve_bundle(fitted) -> Path:
    return fitted.bundle("patchcore")


@pytest.fixture(scope="module")
def clip_frames(synthetic_data: Path) -> list[Path]:
    """The synthetic test images in a fixed order: goods first, then each defect kind."""
    return sorted(
        (synthetic_data / "test").glob("*/*.png"), key=lambda p: (p.parent.name != "good", str(p))
    )


@pytest.fixture(scope="module")
def clip(clip_frames: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lossless video of the test images (FFV1 in AVI), 20 frames/s."""
    path = tmp_path_factory.mktemp("clip") / "line.avi"
    first = cv2.imread(str(clip_frames[0]))
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 20, (w, h))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write FFV1 video")
    for p in clip_frames:
        writer.write(cv2.imread(str(p)))
    writer.release()
    return path


@pytest.fixture(scope="module")
def reference(serve_bundle: Path, clip_frames: list[Path]) -> dict[int, tuple[float, str]]:
    """The runtime's (score, verdict) of each clip frame, from the image files."""
    from edgead.runtime import Pipeline

    with Pipeline(serve_bundle) as pipeline:
        results = list(pipeline.predict_files(clip_frames))
    return {i + 1: (r.image_score, r.label) for i, r in enumerate(results)}


@pytest.fixture(scope="module")
def server(serve_bundle: Path, clip: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("serve")
    srv = ServerProcess(
        [str(serve_bundle), "--video", str(clip), "--loop", "--max-upload-mb", "1"], out
    )
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def frame_number(source_id: str, n_frames: int) -> int:
    """video#k counts frames over loops; the clip frame is (k - 1) mod n + 1."""
    k = int(re.fullmatch(r"video#(\d+)", source_id).group(1))
    return (k - 1) % n_frames + 1


def test_status_reports_score_verdict_fps_and_stage_latency(server, clip_frames, reference):
    s = server.wait_frames(len(clip_frames) + 5)
    latest = s["latest"]
    n = frame_number(latest["source"], len(clip_frames))
    score, label = reference[n]
    assert latest["score"] == pytest.approx(score, rel=1e-4, abs=1e-4)
    assert latest["verdict"] == label
    assert s["fps"] > 1.0
    assert {"preprocess", "graph", "score", "postprocess", "total"} <= set(s["latency_ms_p50"])
    assert all(v > 0 for v in s["latency_ms_p50"].values())
    assert s["source"]["state"] == "live" and s["source"]["reconnects"] == 0
    assert s["model"]["detector"] == "patchcore"


def test_anomalous_frames_are_saved_with_map_and_record(server, clip_frames, reference):
    n_defect = sum(label == "anomalous" for _, label in reference.values())
    assert n_defect > 0, "the synthetic bundle should flag some test frames"
    body = wait_for(
        lambda: len((b := server.client.get("/api/events").json())["events"]) >= n_defect and b,
        60,
        "the anomalous frames of one pass",
    )
    folder = Path(body["folder"])
    for event in body["events"]:
        n = frame_number(event["source"], len(clip_frames))
        assert reference[n][1] == "anomalous", f"frame {n} saved but the runtime calls it good"
        assert event["score"] == pytest.approx(reference[n][0], rel=1e-4, abs=1e-4)
        record = json.loads((folder / f"{event['id']}.json").read_text())
        for name in record["files"].values():
            assert (folder / name).stat().st_size > 0
    first = body["events"][0]["id"]
    r = server.client.get(f"/api/events/{first}/overlay")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR) is not None
    assert server.client.get("/api/events/nonexistent/overlay").status_code == 404


def test_mjpeg_stream_delivers_jpeg_frames(server, clip_frames):
    h, w = cv2.imread(str(clip_frames[0])).shape[:2]
    with server.client.stream("GET", "/stream.mjpg") as r:
        assert r.headers["content-type"].startswith("multipart/x-mixed-replace")
        chunks = r.iter_bytes()  # kept alive: dropping it closes the connection
        buf = b""
        while len(re.findall(rb"\r\n\r\n", buf)) < 2:
            buf += next(chunks)
        assert server.status()["viewers"] == 1  # overlays are drawn while someone watches
        chunks.close()
    wait_for(lambda: server.status()["viewers"] == 0, 10, "the viewer to be let go")
    header, rest = buf.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"Content-Length: (\d+)", header).group(1))
    image = cv2.imdecode(np.frombuffer(rest[:length], np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[:2] == (h, w)


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the series ``name`` whose labels include ``labels`` (any order)."""
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} ([-\d.e+]+)", line)
        if m and all(f'{k}="{v}"' in m.group(1).split(",") for k, v in labels.items()):
            return float(m.group(2))
    return None


def test_prometheus_metrics(server, serve_bundle):
    text = server.client.get("/metrics").text
    labels = {"stream": "default", "bundle": serve_bundle.name}
    assert metric(text, "edgead_frames_total", **labels) > 0
    assert metric(text, "edgead_stage_seconds_bucket", le="0.1", stage="graph", **labels) >= 0
    assert metric(text, "edgead_source_up", **labels) == 1.0


def test_upload_scores_like_the_runtime(server, clip_frames, reference):
    path = clip_frames[-1]
    r = server.client.post(
        "/api/predict", files={"file": (path.name, path.read_bytes(), "image/png")}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["score"] == pytest.approx(reference[len(clip_frames)][0], rel=1e-4, abs=1e-4)
    assert body["verdict"] == reference[len(clip_frames)][1]
    assert body["warnings"] == []
    # the raw body works too
    r = server.client.post("/api/predict?name=raw.png", content=path.read_bytes())
    assert r.status_code == 200 and r.json()["source"] == "raw.png"
    # a grayscale image into a colour model: refused, never judged silently (--gray)
    import cv2

    gray = cv2.imencode(".png", cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY))[1]
    r = server.client.post("/api/predict?name=gray.png", content=gray.tobytes())
    assert r.status_code == 400, r.text
    assert "grayscale image into a model fitted on colour images: refused" in r.json()["error"]


def test_malformed_uploads_are_refused_and_serving_goes_on(server, clip_frames):
    before = server.status()["frames"]
    good = clip_frames[0].read_bytes()
    cases = {
        "junk.png": (
            b"\x00\x01 definitely not an image" * 40,
            400,
            "junk.png: not a readable image",
        ),
        "half.png": (good[: len(good) // 2], 400, "half.png"),
        "empty.png": (b"", 400, "empty upload"),
        "bomb.png": (png_header_only(100_000, 100_000), 400, "over the limit"),
        "big.png": (b"\x00" * (1 << 20 | 1), 413, "larger than the limit"),
    }
    for name, (data, code, message) in cases.items():
        r = server.client.post("/api/predict", files={"file": (name, data, "image/png")})
        assert r.status_code == code, (name, r.text)
        assert message in r.json()["error"], (name, r.json())
    r = server.client.post("/api/predict", content=b"\x00" * (2 << 20))
    assert r.status_code == 413
    r = server.client.post("/api/predict", files={"other": ("x.png", good, "image/png")})
    assert r.status_code == 400 and "'file'" in r.json()["error"]
    s = server.wait_frames(before + 10)
    assert s["source"]["state"] == "live"
    errors = [e["error"] for e in s["recent_errors"]]
    assert any("junk.png" in e for e in errors)


@contextlib.contextmanager
def headless_browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (dev extra) absent")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("headless Chromium absent: install Debian's chromium and chromium-driver")
    from selenium.webdriver.chrome.service import Service as ChromeService

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=ChromeService(driver_path), options=options)
    try:
        yield browser
    finally:
        browser.quit()


def test_browser_sees_the_live_view_and_a_score(server):
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_browser() as browser:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: re.fullmatch(r"-?\d+\.\d{4}", b.find_element("id", "score").text))
        wait.until(
            lambda b: b.execute_script("return document.getElementById('live').naturalWidth") > 0
        )
        verdict = browser.find_element("id", "verdict").text
        assert verdict in ("good", "anomalous")
        fps = float(browser.find_element("id", "fps").text)
        assert fps > 0
        assert browser.find_element("id", "latency").text.count("\n") >= 4  # header + stages
        assert "live" in browser.find_element("id", "source").text


def test_sigterm_stops_in_order_and_flushes_events(server):
    code = server.stop()
    out = server.output()
    assert code == 0, out
    assert "SIGTERM received: stopped in order" in out
    summary = re.search(r"stopped: (\d+) frames scored, (\d+) anomalous", out)
    assert summary and int(summary.group(1)) > 0, out
    events = server.out / "events"
    assert not list(events.glob("*.tmp"))
    for record in events.glob("*.json"):
        files = json.loads(record.read_text())["files"].values()
        assert all((events / f).is_file() for f in files)
    assert len(list(events.glob("*.json"))) > 0


def test_source_loss_reconnects_with_backoff(serve_bundle, clip, tmp_path):
    video = tmp_path / "camera.avi"
    shutil.copy(clip, video)
    srv = ServerProcess(
        [
            str(serve_bundle),
            "--video",
            str(video),
            "--loop",
            "--fps",
            "60",
            "--reconnect-max-s",
            "1",
        ],
        tmp_path / "out",
    )
    try:
        srv.wait_ready()
        srv.wait_frames(5)
        video.rename(tmp_path / "away.avi")  # the camera goes away at the end of this pass
        lost = wait_for(
            lambda: (s := srv.status())["source"]["state"] == "reconnecting" and s,
            30,
            "the source to be reported lost",
        )
        assert "not found" in lost["source"]["last_error"]
        wait_for(lambda: srv.status()["source"]["failed_attempts"] >= 2, 30, "retries")
        frames_while_lost = srv.status()["frames"]
        page = srv.client.get("/")
        assert page.status_code == 200  # the page is still served while the source is down
        (tmp_path / "away.avi").rename(video)
        back = wait_for(
            lambda: (
                (s := srv.status())["source"]["state"] == "live"
                and s["frames"] > frames_while_lost + 5
                and s
            ),
            30,
            "the source to come back",
        )
        assert back["source"]["reconnects"] == 1
        assert metric(srv.client.get("/metrics").text, "edgead_reconnects_total") == 1.0
    finally:
        assert srv.stop() == 0, srv.output()


@pytest.mark.timeout(400)
def test_soak_memory_and_open_files_stay_flat(serve_bundle, clip, tmp_path):
    """A bounded soak: frames unpaced, events rotating, a viewer on the stream, the API polled."""
    psutil = pytest.importorskip("psutil", reason="psutil (dev extra) measures the server")
    srv = ServerProcess(
        [str(serve_bundle), "--video", str(clip), "--loop", "--fps", "0", "--max-events", "10"],
        tmp_path / "out",
    )
    try:
        srv.wait_ready()
        proc = psutil.Process(srv.proc.pid)
        srv.wait_frames(150, timeout=120)  # warm: allocator pools, lazy imports, event rotation

        def sample() -> tuple[int, int, int]:
            srv.status()
            srv.client.get("/api/events")
            srv.client.get("/metrics")
            return srv.status()["frames"], proc.memory_info().rss, proc.num_fds()

        frames0, rss0, fds0 = sample()
        peak_rss, peak_fds = rss0, fds0
        with srv.client.stream("GET", "/stream.mjpg") as stream:
            chunks = stream.iter_bytes()
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                for _ in range(5):
                    next(chunks)
                frames, rss, fds = sample()
                peak_rss, peak_fds = max(peak_rss, rss), max(peak_fds, fds)
                if frames >= frames0 + 600:
                    break
                time.sleep(0.2)
        frames1, rss1, fds1 = sample()
        assert frames1 >= frames0 + 600, f"only {frames1 - frames0} frames in the soak"
        growth_mb = (rss1 - rss0) / 2**20
        print(
            f"soak: {frames1 - frames0} frames, RSS {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MB "
            f"(peak {peak_rss / 2**20:.1f}), fds {fds0} -> {fds1} (peak {peak_fds})"
        )
        assert growth_mb < 20, f"RSS grew {growth_mb:.1f} MB over the soak"
        assert fds1 <= fds0 + 2, f"open files grew from {fds0} to {fds1}"
        s = srv.status()
        assert s["events"]["events_on_disk"] <= 10
        assert len(list((tmp_path / "out" / "events").glob("*.json"))) <= 10
    finally:
        assert srv.stop() == 0, srv.output()


def test_refuses_a_broken_bundle(serve_bundle, clip, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(serve_bundle, broken)
    graph = next(p for p in broken.rglob("*.onnx"))
    graph.write_bytes(graph.read_bytes()[:1000])
    r = subprocess.run(
        [sys.executable, "-m", "edgead.cli", "serve", str(broken), "--video", str(clip)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert graph.name in r.stderr and "re-export" in r.stderr, r.stderr


def test_refuses_to_expose_without_a_token(serve_bundle, clip):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgead.cli",
            "serve",
            str(serve_bundle),
            "--video",
            str(clip),
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "EDGEAD_TOKEN"},
    )
    assert r.returncode != 0
    assert "set a token" in r.stderr


def test_token_is_required_for_every_request(serve_bundle, clip, tmp_path):
    srv = ServerProcess(
        [str(serve_bundle), "--video", str(clip), "--loop"], tmp_path / "out", token="s3cret"
    )
    try:
        wait_for(lambda: _up(srv), 90, "the server to answer")
        for path in ("/", "/api/status", "/api/events", "/metrics", "/stream.mjpg", "/healthz"):
            assert srv.client.get(path).status_code == 401, path
            assert srv.client.get(path, params={"token": "wrong"}).status_code == 401, path
        auth = {"Authorization": "Bearer s3cret"}
        assert srv.client.get("/api/status", headers=auth).status_code == 200
        assert srv.client.get("/api/status", params={"token": "s3cret"}).status_code == 200
        assert srv.client.post("/api/predict", content=b"x").status_code == 401
    finally:
        assert srv.stop() == 0, srv.output()


def _up(srv: ServerProcess) -> bool:
    if srv.proc.poll() is not None:
        raise AssertionError(f"server exited early:\n{srv.output()}")
    try:
        srv.client.get("/healthz")
    except httpx.HTTPError:
        return False
    return True


def test_watched_folder_reports_a_corrupt_file_and_goes_on(serve_bundle, clip_frames, tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    shutil.copy(clip_frames[0], folder / "part-001.png")
    (folder / "part-002.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated by a bad transfer")
    srv = ServerProcess([str(serve_bundle), "--folder", str(folder)], tmp_path / "out")
    try:
        srv.wait_ready()
        s = wait_for(
            lambda: (s := srv.status())["frames"] >= 1 and s["source"]["frame_errors"] >= 1 and s,
            30,
            "the good file scored and the corrupt one reported",
        )
        assert any("part-002.png" in e["error"] for e in s["recent_errors"])
        shutil.copy(clip_frames[-1], folder / "part-003.png")  # the line goes on
        s = srv.wait_frames(2, timeout=30)
        assert s["latest"]["source"].endswith("part-003.png")
        assert s["source"]["state"] == "live" and s["source"]["frame_errors"] == 1
        text = srv.client.get("/metrics").text
        assert metric(text, "edgead_frame_errors_total", origin="source", stream="default") == 1.0
    finally:
        assert srv.stop() == 0, srv.output()


def test_many_streams_share_a_bundle_batch_together_and_keep_faults_apart(
    serve_bundle, clip, clip_frames, reference, tmp_path
):
    """Four streams, one bundle: two replayed cameras, a camera that never comes (its file is
    missing) and a hot folder with a corrupt file. The bundle is loaded once, the two cameras'
    frames are scored in shared batches, and the faulty streams neither stop nor slow the others
    (the batch wait is 2 s: waiting for the lost stream would drop the others below 1 frame/s)."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    shutil.copy(clip_frames[0], folder / "part-001.png")
    (folder / "part-002.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated by a bad transfer")
    config = tmp_path / "streams.yaml"
    config.write_text(
        f"""
bundles:
  parts: {{path: {serve_bundle}}}
streams:
  - {{name: cam-a, video: {clip}, loop: true, bundle: parts}}
  - {{name: cam-b, video: {clip}, loop: true, bundle: parts}}
  - {{name: cam-lost, video: {tmp_path / "unplugged.avi"}, bundle: parts}}
  - {{name: hot-folder, folder: {folder}, bundle: {serve_bundle}, threshold: 1.0e9}}
batching: {{max_batch: 8, max_wait_ms: 2000}}
"""
    )
    srv = ServerProcess(["--config", str(config)], tmp_path / "out")
    try:
        srv.wait_ready()
        n = len(clip_frames)

        def settled():
            s = srv.status()
            rows = {r["stream"]: r for r in s["streams"]}
            ok = rows["cam-a"]["frames"] >= n + 5 and rows["cam-b"]["frames"] >= n + 5
            return ok and rows["hot-folder"]["frame_errors"] >= 1 and s

        s = wait_for(settled, 90, "both cameras past one loop and the corrupt file reported")
        rows = {r["stream"]: r for r in s["streams"]}
        assert len(s["bundles"]) == 1  # named once and given by path once: loaded once
        assert s["bundles"][0]["streams"] == ["cam-a", "cam-b", "cam-lost", "hot-folder"]
        assert rows["cam-lost"]["state"] == "connecting"
        assert "not found" in rows["cam-lost"]["last_error"]
        assert rows["hot-folder"]["state"] == "live" and rows["hot-folder"]["frames"] == 1
        for name in ("cam-a", "cam-b"):
            assert rows[name]["state"] == "live" and rows[name]["fps"] > 5.0, rows[name]
            one = srv.client.get(f"/streams/{name}/api/status").json()
            assert one["stream"] == name and one["source"]["reconnects"] == 0
            latest = one["latest"]
            score, label = reference[frame_number(latest["source"], n)]
            assert latest["score"] == pytest.approx(score, rel=1e-4, abs=1e-4)
            assert latest["verdict"] == label
            events = srv.client.get(f"/streams/{name}/api/events").json()
            assert Path(events["folder"]) == tmp_path / "out" / name / "events"
        # the folder stream's own threshold: nothing there is anomalous
        folder_status = srv.client.get("/streams/hot-folder/api/status").json()
        assert folder_status["latest"]["verdict"] == "good"
        assert folder_status["model"]["threshold"] == 1.0e9
        assert srv.client.get("/streams/nowhere/api/status").status_code == 404
        assert "streams" in srv.client.get("/").text  # the overview page
        assert 'id="live"' in srv.client.get("/streams/cam-a/").text  # a stream's page

        text = srv.client.get("/metrics").text
        bundle = {"bundle": "parts"}
        assert metric(text, "edgead_frames_total", stream="cam-a", **bundle) > 0
        assert metric(text, "edgead_source_up", stream="cam-lost", **bundle) == 0.0
        assert metric(text, "edgead_frame_errors_total", stream="hot-folder", origin="source") == 1
        batches = metric(text, "edgead_batch_frames_count", **bundle)
        singles = metric(text, "edgead_batch_frames_bucket", le="1.0", **bundle)
        assert singles < batches, "the two cameras' frames were never scored together"
    finally:
        code = srv.stop()
    out = srv.output()
    assert code == 0, out
    assert re.search(r"stopped: \d+ frames scored", out), out


def test_browser_sees_every_stream_on_the_overview_and_opens_one(serve_bundle, clip, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    config = tmp_path / "streams.toml"
    config.write_text(
        "".join(
            f'[[streams]]\nname = "{n}"\nvideo = "{clip}"\nloop = true\nbundle = "{serve_bundle}"\n'
            for n in ("left", "right")
        )
    )
    with headless_browser() as browser:
        srv = ServerProcess(["--config", str(config)], tmp_path / "out")
        try:
            srv.wait_ready()
            browser.get(srv.url + "/")
            wait = WebDriverWait(browser, 30)

            def rows(b):
                body = b.find_element("css selector", "#streams tbody").text
                lines = [line for line in body.splitlines() if line.strip()]
                return len(lines) == 2 and all(" live " in f" {line} " for line in lines) and lines

            lines = wait.until(rows)
            assert lines[0].startswith("left") and lines[1].startswith("right")
            browser.find_element("link text", "right").click()
            wait.until(lambda b: b.find_element("id", "stream").text == "right")
            wait.until(lambda b: re.fullmatch(r"-?\d+\.\d{4}", b.find_element("id", "score").text))
            wait.until(
                lambda b: (
                    b.execute_script("return document.getElementById('live').naturalWidth") > 0
                )
            )
        finally:
            assert srv.stop() == 0, srv.output()
