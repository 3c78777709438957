"""``edgead export-many`` on a real Ray cluster of this machine: a head bound to 127.0.0.1 with
two worker CPUs, started here and stopped after (by its process group)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="export-many runs on Ray: pip install -e '.[ray]'")
pytest.importorskip("torch")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory):
    """`ray start --head --block` in a process group of its own: two CPUs, localhost only."""
    ray_bin = Path(sys.executable).with_name("ray")
    port = free_port()
    temp = tmp_path_factory.mktemp("ray")
    # Ray's socket paths must stay short (AF_UNIX): a temp dir under /tmp, not pytest's
    short = Path(f"/tmp/edgead-ray-{os.getpid()}")
    # local-only: Ray binds its servers to the node address, and maps 127.0.0.1 to the
    # host's own address unless told this node is not part of a cluster
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "disabled",
    }
    log = (temp / "head.log").open("w")
    head = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={short}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if head.poll() is not None:
            pytest.fail(f"ray start exited {head.returncode}: {(temp / 'head.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        pytest.fail("the Ray head did not listen within 90 s")
    yield address
    head.terminate()  # `ray start --block` drains and stops what it started
    try:
        head.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
    time.sleep(1)
    left = subprocess.run(["pgrep", "-g", str(head.pid)], capture_output=True, text=True).stdout
    if left.strip():  # anything of the group still there (its processes share the group)
        os.killpg(head.pid, signal.SIGKILL)
    log.close()
    shutil.rmtree(short, ignore_errors=True)


def write_products(tmp: Path, data: Path) -> Path:
    broken = tmp / "broken"  # a test set without train/good: refused before submitting
    (broken / "test" / "good").mkdir(parents=True)
    shutil.copy(next((data / "test" / "good").iterdir()), broken / "test" / "good" / "a.png")
    unreadable = tmp / "unreadable" / "train" / "good"  # fails in the worker: a log to read
    unreadable.mkdir(parents=True)
    (unreadable / "0.png").write_bytes(b"not a png")
    (tmp / "products.yaml").write_text(
        f"""
defaults:
  detector: patchcore
  options: {{image_size: 128, batch_size: 8}}
products:
  - name: parts-patchcore
    data: {data}
    options: {{coreset_ratio: 0.1}}
  - name: parts-padim
    data: {data}
    detector: padim
  - name: broken
    data: broken
  - name: unreadable
    data: unreadable
"""
    )
    return tmp / "products.yaml"


def edgead(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgead", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            # the test cluster runs without Ray's token (a token file of another run would differ)
            "RAY_AUTH_MODE": "disabled",
        },
    )


def test_export_many_on_a_ray_cluster_fits_the_good_reports_the_broken_and_skips_on_rerun(
    ray_cluster: str, synthetic_data: Path, tmp_path: Path
):
    products = write_products(tmp_path, synthetic_data)
    out = tmp_path / "bundles"
    run = edgead(
        "export-many", str(products), "--out", str(out), "--address", ray_cluster, "--workers", "2"
    )
    assert run.returncode == 1, run.stdout + run.stderr  # some products failed
    rows = {r["product"]: r for r in json.loads((out / "results.json").read_text())}
    assert {k: r["status"] for k, r in rows.items()} == {
        "parts-patchcore": "done",
        "parts-padim": "done",
        "broken": "failed",
        "unreadable": "failed",
    }
    assert "has test/ but no train/good" in rows["broken"]["error"]
    assert "broken" in rows["broken"]["error"]
    # the worker's failure: its log holds the export's own message
    log = Path(rows["unreadable"]["log"]).read_text()
    assert "0.png" in log and "export exited 1" in rows["unreadable"]["error"]
    for name in ("parts-patchcore", "parts-padim"):
        row = rows[name]
        assert row["image_rocauc"] is not None and row["image_threshold"] is not None
        assert row["seconds"] > 0
        parity = edgead("parity", row["bundle"], str(synthetic_data))
        assert parity.returncode == 0, parity.stdout + parity.stderr
    table = (out / "results.md").read_text()
    assert "| parts-padim | padim | done |" in table
    assert "<table>" in (out / "results.html").read_text()
    assert "[" in run.stdout and "parts-padim: done" in run.stdout + run.stderr

    manifest_mtime = (out / "parts-padim" / "manifest.json").stat().st_mtime
    rerun = edgead("export-many", str(products), "--out", str(out), "--address", ray_cluster)
    again = {r["product"]: r["status"] for r in json.loads((out / "results.json").read_text())}
    assert again["parts-patchcore"] == again["parts-padim"] == "skipped", rerun.stdout
    assert (out / "parts-padim" / "manifest.json").stat().st_mtime == manifest_mtime
    assert "2 up to date" in rerun.stdout
