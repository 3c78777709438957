"""`edgead serve` end to end: an operator confirms frames, the live rates follow, the confirmed
good frames recalibrate the bundle into a new revision, and a reload switches to it without a
restart. A real server process on the lossless clip of test_serve."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="edgead serve needs the serve extra")
pytest.importorskip("httpx", reason="the serve tests need httpx (dev extra)")

from tests.integration.test_serve import (
    ServerProcess,
    clip,  # noqa: F401  (fixtures)
    clip_frames,  # noqa: F401
    frame_number,
    headless_browser,
    metric,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def own_bundle(fitted, tmp_path_factory) -> Path:
    """A copy of the synthetic PatchCore bundle this module may rewrite."""
    path = tmp_path_factory.mktemp("bundle") / "parts"
    shutil.copytree(fitted.bundle("patchcore"), path)
    return path


@pytest.fixture(scope="module")
def server(own_bundle, clip, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("serve-feedback")
    srv = ServerProcess([str(own_bundle), "--video", str(clip), "--loop"], out)
    try:
        srv.wait_ready()
        srv.wait_frames(3)
        yield srv
    finally:
        srv.stop()


def confirm(srv: ServerProcess, label: str, **target) -> dict:
    r = srv.client.post("/api/feedback", json={"label": label, **target})
    assert r.status_code == 200, r.text
    return r.json()


def test_operator_confirmations_are_kept_and_give_live_rates(server, clip_frames):  # noqa: F811
    seen: list[dict] = []
    for _ in range(6):  # six distinct frames, marked good as they come
        latest = wait_for(
            lambda: (
                (s := server.status()["latest"]) and s["seq"] not in [x["seq"] for x in seen] and s
            ),
            20,
            "a new frame",
        )
        seen.append(latest)
        answer = confirm(server, "good", seq=latest["seq"])
        assert answer["confirmed"]["seq"] == latest["seq"]
    marked = {x["seq"] for x in seen}
    event = wait_for(
        lambda: next(
            (
                e
                for e in server.client.get("/api/events").json()["events"]
                if e["seq"] not in marked
            ),
            None,
        ),
        30,
        "an event of a frame not marked yet",
    )
    defective = confirm(server, "defective", event=event["id"])["feedback"]
    flagged_good = sum(x["verdict"] == "anomalous" for x in seen)
    assert defective["confirmed_good"] == 6 and defective["false_rejects"] == flagged_good
    assert defective["live_false_reject_rate"] == pytest.approx(flagged_good / 6)
    assert defective["confirmed_defective"] == 1 and defective["detected"] == 1
    # the confirmed frames are the frames as scored, losslessly (the clip is lossless)
    folder = server.out / "confirmed" / "good"
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    assert len(records) == 6
    for rec in records:
        png = next(folder.glob(f"*_{rec['seq']:09d}.png"))
        k = frame_number(rec["source"], len(clip_frames))
        assert np.array_equal(cv2.imread(str(png)), cv2.imread(str(clip_frames[k - 1])))
        assert rec["bundle_revision"] == 1 and rec["label"] == "good"
    # marked again: moved, counted once
    again = confirm(server, "defective", seq=seen[-1]["seq"])["feedback"]
    assert again["confirmed_good"] == 5 and again["confirmed_defective"] == 2
    confirm(server, "good", seq=seen[-1]["seq"])
    status = server.status()
    assert status["feedback"]["confirmed_good"] == 6
    # every verdict says where: regions in the API and in the saved events
    assert isinstance(status["latest"]["regions"], list)
    record = server.client.get(f"/api/events/{event['id']}/record").json()
    assert record["regions"] and {"x", "y", "width", "height", "area", "peak"} <= set(
        record["regions"][0]
    )
    text = server.client.get("/metrics").text
    assert metric(text, "edgead_confirmed_good", stream="default") == 6.0
    # what cannot be taken is said
    bad = [
        ({"label": "maybe", "seq": seen[-1]["seq"]}, 400, "expected 'good' or 'defective'"),
        ({"label": "good", "seq": 10**8}, 404, "no longer held"),
        ({"label": "good", "seq": 1, "event": "x"}, 400, "expected JSON"),
        ({"label": "good", "event": "20000101T000000_000_000001"}, 404, "no longer held"),
    ]
    for body, code, words in bad:
        r = server.client.post("/api/feedback", json=body)
        assert r.status_code == code and words in r.json()["error"], (body, r.text)


def test_confirmed_good_frames_recalibrate_and_a_reload_switches_without_restart(
    server, own_bundle, tmp_path
):
    from click.testing import CliRunner

    from edgead.cli import main

    pid = server.proc.pid
    new = tmp_path / "revision2"
    confirmed = server.out / "confirmed" / "good"
    assert len(list(confirmed.glob("*.png"))) >= 2
    result = CliRunner().invoke(
        main, ["-q", "calibrate", str(own_bundle), str(confirmed), "--out", str(new)]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((new / "manifest.json").read_text())
    assert manifest["revision"] == 2
    assert json.loads((own_bundle / "manifest.json").read_text())["revision"] == 1  # kept
    # a folder that is no bundle: refused, the old one serves on
    r = server.client.post("/api/reload", json={"path": str(tmp_path)})
    assert r.status_code == 409 and "still serving the old one" in r.json()["error"]
    assert server.status()["model"]["revision"] == 1
    before = server.status()["frames"]
    r = server.client.post("/api/reload", json={"bundle": own_bundle.name, "path": str(new)})
    assert r.status_code == 200, r.text
    assert r.json()["reloaded"][0]["revision"] == 2
    threshold = manifest["normalization"]["image_threshold"]
    s = wait_for(
        lambda: (s := server.status())["frames"] > before + 5 and s, 30, "frames after reload"
    )
    assert s["model"]["revision"] == 2 and s["model"]["threshold"] == pytest.approx(threshold)
    latest = s["latest"]
    assert latest["verdict"] == ("anomalous" if latest["score"] >= threshold else "good")
    assert server.proc.pid == pid and server.proc.poll() is None  # no restart
    assert server.client.post("/api/reload", json={"bundle": "nope"}).status_code == 404


def test_browser_marks_the_frame_on_screen(server):
    from selenium.webdriver.support.ui import WebDriverWait

    before = server.status()["feedback"]["confirmed_defective"]
    with headless_browser() as browser:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: re.fullmatch(r"-?\d+\.\d{4}", b.find_element("id", "score").text))
        browser.find_element("id", "mark-defective").click()
        wait.until(lambda b: "marked defective" in b.find_element("id", "feedback-said").text)
        wait.until(lambda b: f"{before + 1} defective" in b.find_element("id", "live-rates").text)
        assert "drift checks" in browser.find_element("id", "drift-figures").text
    assert server.status()["feedback"]["confirmed_defective"] == before + 1
