"""Nothing silently wrong: an edited manifest is refused by every verb that opens the bundle,
a recalibrated bundle carries a fresh digest, and a site can require signed bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from edgead.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture()
def bundle(patchcore_bundle, tmp_path) -> Path:
    path = tmp_path / "bundle"
    shutil.copytree(patchcore_bundle, path)
    return path


def edit(path: Path, change) -> None:
    data = json.loads((path / "manifest.json").read_text())
    change(data)
    (path / "manifest.json").write_text(json.dumps(data, indent=2))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            lambda d: d["normalization"].update(
                image_threshold=d["normalization"]["image_threshold"] + 10
            ),
            "normalization.image_threshold",
        ),
        (lambda d: d["input"].update(channel_order="BGR"), "input.channel_order"),
    ],
)
def test_an_edited_manifest_is_refused_by_run_and_parity(
    bundle, synthetic_data, tmp_path, change, named
):
    edit(bundle, change)
    images = synthetic_data / "test" / "good"
    r = invoke("run", bundle, images, "--out", tmp_path / "out")
    assert r.exit_code == 1 and f"{named} changed after the bundle was written" in r.output
    assert not (tmp_path / "out").exists()  # nothing written
    r = invoke("parity", bundle)  # without data too
    assert r.exit_code == 1 and named in r.output


def test_calibrate_writes_a_new_digest_and_drops_the_old_signature(
    bundle, synthetic_data, tmp_path
):
    pytest.importorskip("cryptography")
    assert invoke("keygen", tmp_path / "site.key").exit_code == 0
    key, pub = tmp_path / "site.key", tmp_path / "site.key.pub"
    images = synthetic_data / "test" / "good"
    r = invoke("run", bundle, images, "--out", tmp_path / "o1", "--require-signature", pub)
    assert r.exit_code == 1 and "not signed" in r.output
    r = invoke("sign", bundle, "--key", key, "--signer", "QA")
    assert r.exit_code == 0 and "signed" in r.output
    r = invoke("run", bundle, images, "--out", tmp_path / "o2", "--require-signature", pub)
    assert r.exit_code == 0, r.output
    r = invoke("calibrate", bundle, synthetic_data / "train" / "good")
    assert r.exit_code == 0, r.output
    assert not (bundle / "signature.json").exists()  # the new revision is unsigned
    r = invoke("run", bundle, images, "--out", tmp_path / "o3")  # its digest is valid
    assert r.exit_code == 0, r.output
    r = invoke("run", bundle, images, "--out", tmp_path / "o4", "--require-signature", pub)
    assert r.exit_code == 1 and "not signed" in r.output


def test_run_refuses_an_image_over_the_pixel_limit_from_its_header(
    patchcore_bundle, synthetic_data, tmp_path
):
    import csv

    from tests.unit.test_images import bomb_png

    folder = tmp_path / "in"
    folder.mkdir()
    bomb_png(folder / "bomb.png", 12000, 12000)
    shutil.copy(next((synthetic_data / "test" / "good").glob("*.png")), folder / "part.png")
    r = invoke("run", patchcore_bundle, folder, "--out", tmp_path / "out", "--no-overlays")
    assert r.exit_code == 3, r.output
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        rows = {Path(row["path"]).name: row for row in csv.DictReader(f)}
    assert "12000x12000 pixels is over the limit of 64,000,000" in rows["bomb.png"]["error"]
    assert rows["part.png"]["label"] in ("good", "anomalous")
    r = invoke("run", patchcore_bundle, folder, "--out", tmp_path / "o2", "--max-pixels", "1000")
    assert r.exit_code == 3 and "2 of 2 inputs skipped" in r.output


def test_run_into_an_existing_results_folder_refuses_overwrites_or_appends(
    patchcore_bundle, synthetic_data, tmp_path
):
    import csv

    out = tmp_path / "out"
    many = synthetic_data / "test" / "good"  # 6 images
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted(many.glob("*.png"))[:3]:
        shutil.copy(p, few / p.name)
    assert invoke("run", patchcore_bundle, many, "--out", out).exit_code == 0
    (out / "notes.txt").write_text("the operator's own file")

    def rows() -> list[dict]:
        with open(out / "results.csv", newline="") as f:
            return list(csv.DictReader(f))

    r = invoke("run", patchcore_bundle, few, "--out", out)
    assert r.exit_code == 1 and "not empty" in r.output and "--overwrite" in r.output
    assert len(rows()) == 6  # nothing touched
    r = invoke("run", patchcore_bundle, few, "--out", out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert len(rows()) == 3 and len(list((out / "overlays").glob("*.png"))) == 3
    assert (out / "notes.txt").read_text() == "the operator's own file"  # not the verb's
    r = invoke("run", patchcore_bundle, few, "--out", out, "--append", "--no-overlays")
    assert r.exit_code == 0, r.output
    assert len(rows()) == 6
    r = invoke("run", "no-such-bundle", few, "--out", out, "--overwrite")
    assert r.exit_code == 1 and len(rows()) == 6  # a bundle that does not open loses nothing
    r = invoke("calibrate", patchcore_bundle, many, "--out", out)
    assert r.exit_code == 1 and "already exists" in r.output


def test_no_library_chatter_and_plots_missing_is_said(
    patchcore_bundle, synthetic_data, tmp_path, monkeypatch
):
    """OpenCV's own decoder warnings and matplotlib's INFO lines stay out of the output;
    edgead's line names the broken file. An HTML bench without matplotlib says why."""
    import subprocess
    import sys

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(next((synthetic_data / "test" / "good").glob("*.png")), folder / "ok.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage after the signature")
    cmd = [sys.executable, "-m", "edgead.cli", "run", str(patchcore_bundle), str(folder)]
    done = subprocess.run(
        [*cmd, "--out", str(tmp_path / "out"), "--no-overlays"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert "[ WARN" not in done.stderr and "[ERROR" not in done.stderr, done.stderr
    assert "broken.png" in done.stderr
    import edgead.report

    monkeypatch.setattr(edgead.report, "plots_available", lambda: False)
    r = invoke(
        "-q",
        "bench",
        patchcore_bundle,
        "--format",
        "html",
        "--out",
        tmp_path / "b",
        "--iterations",
        "2",
        "--warmup",
        "1",
        "--batch",
        "1",
    )
    assert r.exit_code == 0, r.output
    assert "they need matplotlib" in (tmp_path / "b" / "bench.html").read_text()
