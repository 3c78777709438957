"""Sources by their nature, against a real server: a folder's files are all scored, once, in
order, across a restart; a source that never opens is given up after a bounded time."""

from __future__ import annotations

import shutil
import time

import pytest

pytest.importorskip("fastapi", reason="edgead serve needs the serve extra")
pytest.importorskip("httpx", reason="the serve tests need httpx (dev extra)")

from tests.integration.test_serve import (
    ServerProcess,
    clip,  # noqa: F401  (fixtures)
    clip_frames,  # noqa: F401
    wait_for,
)

pytestmark = pytest.mark.timeout(300)


def test_a_folder_that_already_holds_files_is_scored_whole_and_once(
    patchcore_bundle,
    clip_frames,  # noqa: F811
    tmp_path,
):
    folder = tmp_path / "incoming"
    folder.mkdir()
    for i in range(25):  # more than the queue holds, there before the server starts
        shutil.copy(clip_frames[i % len(clip_frames)], folder / f"part-{i:03d}.png")
    out = tmp_path / "out"
    srv = ServerProcess([str(patchcore_bundle), "--folder", str(folder), "--fps", "0"], out)
    try:
        srv.wait_ready()
        s = srv.wait_frames(25, timeout=90)
        time.sleep(1.0)
        s = srv.status()
        assert s["frames"] == 25 and s["dropped_frames"] == 0, s
        assert s["latest"]["source"].endswith("part-024.png")  # in order: the last one last
    finally:
        assert srv.stop() == 0, srv.output()
    done = out / "folder_done.txt"
    assert len(done.read_text().splitlines()) == 25
    # a restart goes on where the last run stopped: only the new file is scored
    shutil.copy(clip_frames[0], folder / "part-100.png")
    srv = ServerProcess([str(patchcore_bundle), "--folder", str(folder), "--fps", "0"], out)
    try:
        srv.wait_ready()
        s = srv.wait_frames(1, timeout=60)
        time.sleep(1.5)
        s = srv.status()
        assert s["frames"] == 1 and s["latest"]["source"].endswith("part-100.png"), s
    finally:
        assert srv.stop() == 0, srv.output()


def test_a_video_that_never_opens_is_given_up_and_the_server_exits_1(patchcore_bundle, tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video")
    srv = ServerProcess(
        [str(patchcore_bundle), "--video", str(fake), "--give-up-after", "2"], tmp_path / "out"
    )
    try:
        code = srv.proc.wait(60)
    finally:
        srv.stop()
    out = srv.output()
    assert code == 1, out
    assert "no source can deliver frames" in out and "fake.mp4" in out and "gave up" in out


def test_with_many_streams_a_failed_source_fails_alone(
    patchcore_bundle,
    clip,  # noqa: F811
    tmp_path,
):
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video either")
    config = tmp_path / "streams.yaml"
    config.write_text(
        "streams:\n"
        f"  - {{name: good, video: {clip}, loop: true, bundle: {patchcore_bundle}}}\n"
        f"  - {{name: broken, video: {fake}, bundle: {patchcore_bundle}}}\n"
    )
    srv = ServerProcess(["--config", str(config), "--give-up-after", "2"], tmp_path / "out")
    try:
        srv.wait_ready()
        rows = wait_for(
            lambda: (
                (r := {s["stream"]: s for s in srv.status()["streams"]})["broken"]["state"]
                == "failed"
                and r
            ),
            60,
            "the broken stream to fail",
        )
        assert "gave up after" in rows["broken"]["last_error"]
        before = rows["good"]["frames"]
        wait_for(
            lambda: (
                {s["stream"]: s for s in srv.status()["streams"]}["good"]["frames"] > before + 5
            ),
            30,
            "the good stream to go on",
        )
        assert srv.proc.poll() is None
    finally:
        assert srv.stop() == 0, srv.output()
