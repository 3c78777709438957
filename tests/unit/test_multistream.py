"""Many streams in one server, without a model: batching across streams, faults that stay with
their stream, per-stream thresholds, and the streams config file."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="edgead serve needs the serve extra")

from edgead.bundle.manifest import Normalization
from edgead.errors import EdgeadError
from edgead.runtime.pipeline import Prediction
from edgead.runtime.regions import VerdictRules
from edgead.serve.capture import Frame
from edgead.serve.config import load_config, resolve_bundles
from edgead.serve.service import BundleRunner, ServeOptions, Service, Stream
from edgead.serve.sources import FrameSource


class FakePipeline:
    """Scores an image as its mean pixel value; refuses an image whose first pixel is 13."""

    def __init__(self, threshold: float = 100.0, delay: float = 0.0):
        self.normalization = Normalization(image_threshold=threshold, image_min=0, image_max=255)
        self.bundle = SimpleNamespace(
            root=Path("/bundles/fake"), manifest=SimpleNamespace(detector="fake", revision=1)
        )
        self.precision = "fp32"
        self.rules = VerdictRules()
        self.batches: list[int] = []
        self.delay = delay
        self.closed = False

    def describe(self) -> str:
        return "fake"

    def admit(self, image, channels: int, source: str):
        return image, ""

    def close(self) -> None:
        self.closed = True

    def predict(self, images, timer=None, sources=None):
        self.batches.append(len(images))
        time.sleep(self.delay)
        if any(int(im.flat[0]) == 13 for im in images):
            raise EdgeadError("a frame the backend refuses")
        return [
            Prediction(
                float(im.mean()),
                None,
                "anomalous" if im.mean() >= self.normalization.image_threshold else "good",
                np.zeros(im.shape[:2], np.float32),
                {"graph": 1.0},
                src,
            )
            for im, src in zip(images, sources, strict=True)
        ]


class IdleSource(FrameSource):
    """Frames are put on the stream's queue by the test; ``state`` is what capture reports."""

    kind = "test"

    def open(self) -> None: ...

    def read(self):
        return None

    def close(self) -> None: ...


def make(
    tmp_path: Path, names: list[str], max_batch: int, max_wait_ms: float, **kw
) -> tuple[Service, BundleRunner, FakePipeline]:
    pipe = FakePipeline(**kw)
    runner = BundleRunner("fake", pipe, max_batch, max_wait_ms)
    o = ServeOptions()
    streams = [Stream(n, IdleSource(n), runner, tmp_path / n, o) for n in names]
    service = Service([runner], streams)
    for s in streams:
        s.capture._set("live")  # as if its camera delivered frames
        s.start_writer()
    return service, runner, pipe


def frame(seq: int, value: int, source: str = "f") -> Frame:
    return Frame(seq, f"{source}#{seq}", np.full((16, 16, 3), value, np.uint8), time.time())


def test_frames_of_streams_sharing_a_bundle_are_scored_as_one_batch(tmp_path):
    service, runner, pipe = make(tmp_path, ["a", "b", "c", "d"], max_batch=8, max_wait_ms=500)
    for k, s in enumerate(service.streams):
        s.queue.put(frame(1, 10 * k, s.name))
    batch = runner.collect()
    assert len(batch) == 4  # one frame of every live stream: complete, no waiting
    runner.score(batch)
    assert pipe.batches == [4]
    for k, s in enumerate(service.streams):
        assert s.frames == 1 and s.status()["latest"]["score"] == pytest.approx(10 * k)
        assert s.status()["latest"]["batch"] == 4


def test_max_batch_caps_a_batch_and_the_rest_waits_its_turn(tmp_path):
    service, runner, _ = make(tmp_path, ["a", "b", "c"], max_batch=2, max_wait_ms=0)
    for s in service.streams:
        s.queue.put(frame(1, 1, s.name))
    first = runner.collect()
    second = runner.collect()
    assert len(first) == 2 and len(second) == 1
    assert {s.name for s, _ in first + second} == {"a", "b", "c"}


def test_a_lost_stream_is_not_waited_for(tmp_path):
    service, runner, _ = make(tmp_path, ["up", "lost"], max_batch=8, max_wait_ms=3000)
    service.by_name["lost"].capture._set("reconnecting", "camera unplugged")
    service.by_name["up"].queue.put(frame(1, 5))
    start = time.monotonic()
    batch = runner.collect()
    assert len(batch) == 1 and time.monotonic() - start < 1.0  # not the 3 s max wait


def test_a_partial_batch_waits_at_most_max_wait(tmp_path):
    service, runner, _ = make(tmp_path, ["a", "b"], max_batch=8, max_wait_ms=150)
    service.by_name["a"].queue.put(frame(1, 5))
    start = time.monotonic()
    batch = runner.collect()
    took = time.monotonic() - start
    assert len(batch) == 1 and 0.1 <= took < 1.0


def test_a_frame_put_while_waiting_joins_the_batch(tmp_path):
    service, runner, _ = make(tmp_path, ["a", "b"], max_batch=8, max_wait_ms=2000)
    service.by_name["a"].queue.put(frame(1, 5))
    threading.Timer(0.1, lambda: service.by_name["b"].queue.put(frame(1, 6))).start()
    start = time.monotonic()
    batch = runner.collect()
    assert len(batch) == 2 and time.monotonic() - start < 1.5


def test_a_first_frame_that_arrives_while_idle_waits_max_wait_not_the_idle_time(tmp_path):
    service, runner, _ = make(tmp_path, ["a", "b"], max_batch=8, max_wait_ms=50)
    put_at = []

    def put():
        put_at.append(time.monotonic())
        service.by_name["a"].queue.put(frame(1, 5))

    threading.Timer(0.05, put).start()
    batch = runner.collect(idle_timeout=5.0)
    waited = time.monotonic() - put_at[0]
    assert len(batch) == 1 and waited < 1.0  # ~50 ms after the frame, not the 5 s idle time


def test_a_broken_frame_costs_only_itself(tmp_path):
    service, runner, pipe = make(tmp_path, ["a", "b", "c"], max_batch=8, max_wait_ms=0)
    a, b, c = service.streams
    a.queue.put(frame(1, 20, "a"))
    b.queue.put(frame(1, 13, "b"))  # the backend refuses this one
    c.queue.put(frame(1, 30, "c"))
    runner.score(runner.collect())
    assert pipe.batches == [3, 1, 1, 1]  # the batch, then each frame alone
    assert a.frames == 1 and c.frames == 1 and b.frames == 0
    assert b.status()["recent_errors"][0]["origin"] == "inference"
    assert "b#1" in b.status()["recent_errors"][0]["error"]
    text = service.metrics.registry.get_sample_value(
        "edgead_frame_errors_total", {"stream": "b", "origin": "inference"}
    )
    assert text == 1.0


def test_each_stream_judges_with_its_own_threshold(tmp_path):
    pipe = FakePipeline(threshold=100.0)
    runner = BundleRunner("fake", pipe, 8, 0)
    o = ServeOptions()
    strict = Stream("strict", IdleSource("s"), runner, tmp_path / "s", o, threshold=40.0)
    lax = Stream("lax", IdleSource("l"), runner, tmp_path / "l", o)
    service = Service([runner], [strict, lax])
    for s in service.streams:
        s.start_writer()
    strict.queue.put(frame(1, 50))
    lax.queue.put(frame(1, 50))
    runner.score(runner.collect())
    assert strict.status()["latest"]["verdict"] == "anomalous"
    assert lax.status()["latest"]["verdict"] == "good"
    assert strict.status()["model"]["threshold"] == 40.0
    service.stop(timeout=5)
    assert pipe.closed


def test_the_inference_thread_scores_until_stopped(tmp_path):
    service, runner, pipe = make(tmp_path, ["a", "b"], max_batch=8, max_wait_ms=5)
    runner.start()
    for k in range(1, 4):
        for s in service.streams:
            s.queue.put(frame(k, k, s.name))
        time.sleep(0.05)
    deadline = time.monotonic() + 5
    while sum(s.frames for s in service.streams) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sum(s.frames for s in service.streams) == 6
    assert max(pipe.batches) == 2
    runner.stop(5)
    assert not runner._thread.is_alive()


# -- the config file -----------------------------------------------------------------------------
def bundle_dirs(tmp_path: Path, *names: str) -> None:
    for n in names:
        (tmp_path / n).mkdir()


def test_config_yaml_and_toml_give_the_same_streams(tmp_path):
    bundle_dirs(tmp_path, "tire", "bottle")
    (tmp_path / "s.yaml").write_text(
        """
bundles:
  tire: {path: tire, precision: fp16}
streams:
  - {name: line1, video: a.avi, loop: true, bundle: tire}
  - {name: line2, camera: 0, bundle: tire, threshold: 2.5}
  - {name: line3, folder: in, bundle: bottle}
  - {name: line4, rtsp: "rtsp://cam/1", bundle: ./bottle}
batching: {max_batch: 4, max_wait_ms: 20}
"""
    )
    (tmp_path / "s.toml").write_text(
        """
[bundles.tire]
path = "tire"
precision = "fp16"
[[streams]]
name = "line1"
video = "a.avi"
loop = true
bundle = "tire"
[[streams]]
name = "line2"
camera = 0
bundle = "tire"
threshold = 2.5
[[streams]]
name = "line3"
folder = "in"
bundle = "bottle"
[[streams]]
name = "line4"
rtsp = "rtsp://cam/1"
bundle = "./bottle"
[batching]
max_batch = 4
max_wait_ms = 20
"""
    )
    yaml_config = load_config(tmp_path / "s.yaml")
    toml_config = load_config(tmp_path / "s.toml")
    assert yaml_config == toml_config
    bundles = resolve_bundles(yaml_config, tmp_path)
    assert set(bundles) == {"tire", "bottle"}  # the bottle folder, named twice, is loaded once
    assert bundles["tire"].precision == "fp16"
    assert [s.bundle for s in yaml_config.streams] == ["tire", "tire", "bottle", "bottle"]
    assert yaml_config.batching.max_batch == 4


def test_batching_defaults_to_auto(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[[streams]]\nname = "a"\ncamera = 0\nbundle = "b"\n')
    config = load_config(path)
    assert config.batching.max_batch == "auto" and config.batching.max_wait_ms == 10.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("streams: []", "streams: List should have at least 1 item"),
        ("streams:\n  - {name: a, bundle: b}", "give exactly one of camera, video, rtsp, folder"),
        ("streams:\n  - {name: a, bundle: b, camera: 0, video: x}", "(got camera, video)"),
        ("streams:\n  - {name: a, bundle: b, camera: 0, zoom: 2}", "streams.0.zoom: Extra inputs"),
        (
            "streams:\n  - {name: a, bundle: b, camera: 0}\n  - {name: a, bundle: b, camera: 1}",
            "stream name 'a' is used twice",
        ),
        ("streams:\n  - {name: 'a b', bundle: b, camera: 0}", "letters, digits"),
        ("streams:\n  - {name: a, bundle: b, camera: 0}\nbatching: {max_batch: 0}", "max_batch"),
        ("streams: [", "not valid YAML"),
        ("- just a list", "expected a mapping"),
    ],
)
def test_config_errors_name_the_file_and_the_key(tmp_path, text, expected):
    path = tmp_path / "streams.yaml"
    path.write_text(text)
    with pytest.raises(EdgeadError) as err:
        load_config(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_config_refuses_a_missing_bundle_folder(tmp_path):
    path = tmp_path / "streams.yaml"
    path.write_text("streams:\n  - {name: a, bundle: nowhere, camera: 0}")
    with pytest.raises(EdgeadError, match="nowhere is not a bundle folder"):
        resolve_bundles(load_config(path), tmp_path)


def test_the_command_line_takes_a_config_or_a_bundle_not_both(tmp_path):
    from click.testing import CliRunner

    from edgead.cli import main

    config = tmp_path / "streams.yaml"
    config.write_text("streams:\n  - {name: a, bundle: b, camera: 0}\n")
    runner = CliRunner()
    both = runner.invoke(main, ["serve", "some_bundle", "--config", str(config)])
    assert both.exit_code == 2 and "drop BUNDLE" in both.output
    neither = runner.invoke(main, ["serve", "--camera", "0"])
    assert neither.exit_code == 2 and "--config FILE" in neither.output
    missing = runner.invoke(main, ["serve", "--config", str(config)])
    assert missing.exit_code == 1 and "b is not a bundle folder" in missing.output
