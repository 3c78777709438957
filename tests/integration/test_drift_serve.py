"""Drift on the line, end to end on real data: a PatchCore bundle fitted with defaults on
mvtec_bottle serves two replayed cameras of its good test images, one as they are and one
through a slightly defocused lens (Gaussian blur, sigma 1), each looped to fill the drift
window. The drift alarm fires on the blurred stream within its first checks and never on the
unshifted one (benchmarks/shift.py measured the same on all three categories)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("fastapi", reason="edgead serve needs the serve extra")
pytest.importorskip("httpx", reason="the serve tests need httpx (dev extra)")

from edgead.cli import main
from edgead.data.images import read_image
from edgead.data.photometric import SHIFTS
from tests.conftest import real_category
from tests.integration.test_serve import ServerProcess, metric, wait_for

pytestmark = [pytest.mark.realdata, pytest.mark.slow, pytest.mark.timeout(600)]


def write_clip(path: Path, images: list[Path], shift) -> Path:
    first = read_image(images[0])
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 20, (w, h))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write FFV1 video")
    for p in images:
        writer.write(cv2.cvtColor(shift(read_image(p)), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_the_alarm_fires_on_a_shifted_stream_and_never_on_the_unshifted_one(tmp_path):
    data = real_category("mvtec_bottle")
    bundle = tmp_path / "bottle"
    result = CliRunner().invoke(
        main, ["-q", "export", "patchcore", "--data", str(data), "--out", str(bundle)]
    )
    assert result.exit_code == 0, result.output
    good = sorted((data / "test" / "good").glob("*.png"))
    clips = {
        "unshifted": write_clip(tmp_path / "unshifted.avi", good, SHIFTS["none"]),
        "blurred": write_clip(tmp_path / "blurred.avi", good, SHIFTS["blur sigma 1"]),
    }
    config = tmp_path / "streams.yaml"
    config.write_text(
        "streams:\n"
        + "".join(
            f"  - {{name: {n}, video: {c}, loop: true, bundle: {bundle}}}\n"
            for n, c in clips.items()
        )
    )
    srv = ServerProcess(["--config", str(config)], tmp_path / "out")
    try:
        srv.wait_ready()

        def parts(name: str) -> dict:
            return srv.client.get(f"/streams/{name}/api/status").json()

        # 300 parts each: the 20 images looped 15 times, 9 drift checks after the first 100
        wait_for(
            lambda: all(parts(n)["drift"]["checked_at_part"] >= 300 for n in clips),
            240,
            "300 parts on each stream",
            every=0.5,
        )
        blurred, unshifted = parts("blurred")["drift"], parts("unshifted")["drift"]
        assert blurred["state"] == "drift" and blurred["alarms"], blurred
        assert unshifted["state"] == "ok" and not unshifted["alarms"], unshifted
        text = srv.client.get("/metrics").text
        assert metric(text, "edgead_drift_alarm", stream="blurred") == 1.0
        assert metric(text, "edgead_drift_alarm", stream="unshifted") == 0.0
        overview = {s["stream"]: s for s in srv.status()["streams"]}
        assert overview["blurred"]["drift"] == "drift" and overview["blurred"]["drift_alarms"]
    finally:
        assert srv.stop() == 0, srv.output()
    # the alarm was raised once, with the first check, and written down; never on the other
    events = [
        json.loads(line)
        for line in (tmp_path / "out" / "blurred" / "drift.jsonl").read_text().splitlines()
    ]
    assert events[0]["state"] == "drift" and events[0]["checked_at_part"] == 100
    assert "recalibrate" in events[0]["advice"]
    assert not (tmp_path / "out" / "unshifted" / "drift.jsonl").exists()
