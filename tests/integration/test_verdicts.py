"""Verdicts that keep their promise, through the CLI on the synthetic set: calibration on
several runs, drift checks in `run` and `edgead drift`, and bundles that keep no reference."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from edgead.cli import main
from edgead.cli.main import EXIT_DRIFT

REPO = Path(__file__).resolve().parents[2]
OLD_BUNDLE = REPO / "tests" / "fixtures" / "bundle_v1_0_patchcore"
SMALL_WINDOW = ["--drift-window", "6", "--drift-min-parts", "4", "--drift-every", "1"]


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_calibrate_on_several_runs_reports_each_and_a_run_it_did_not_see(
    patchcore_bundle, synthetic_data, tmp_path
):
    runs = [synthetic_data / "train" / "good", synthetic_data / "test" / "good"]
    out = tmp_path / "recalibrated"
    result = invoke("calibrate", patchcore_bundle, *runs, "--out", out, "--confidence", "0.9")
    assert result.exit_code == 0, result.output
    cal = json.loads((out / "manifest.json").read_text())["normalization"]["calibration"]
    # of train/good's 16 images, the 14 the model was fitted on are left out
    assert cal["source"] == "2 images of good/ + 6 images of good/"
    assert cal["left_out_fitted"] == 14
    assert cal["confidence"] == 0.9 and len(cal["scores"]) == 8
    assert cal["image"]["frr_bound"] is not None and cal["image"]["n_images"] == 8
    rows = {Path(r["folder"]).parent.name: r for r in cal["runs"]}
    assert rows["train"]["images"] == 2 and rows["test"]["images"] == 6
    for r in rows.values():
        assert r["threshold_without_it"] > 0 and 0 <= r["flagged_without_it"] <= r["images"]
        assert 0 <= r["flagged"] <= r["images"]
    # all flagged at the pooled threshold, counted over the pooled scores
    assert sum(r["flagged"] for r in rows.values()) == sum(
        s >= cal["image"]["value"] for s in cal["scores"]
    )
    # the table says per folder what was flagged, and at a threshold set without it
    assert "flagged at a threshold set without it" in result.output
    assert str(runs[0]) in result.output and str(runs[1]) in result.output
    assert "bound rests on" in result.output
    r = invoke("calibrate", patchcore_bundle, runs[0], "--confidence", "1.5")
    assert r.exit_code == 1 and "--confidence 1.5" in r.output


def test_calibrate_refuses_the_images_the_model_was_fitted_on(
    patchcore_bundle, synthetic_data, tmp_path, caplog
):
    """All of them: an error, nothing written; some: left out, said with how many."""
    fitted = tmp_path / "fitted"
    fitted.mkdir()
    from edgead.data.images import file_digest

    hashes = set((patchcore_bundle / "fit_images.txt").read_text().split())
    for p in sorted((synthetic_data / "train" / "good").glob("*.png")):
        if file_digest(p) in hashes:
            shutil.copy(p, fitted / p.name)
    r = invoke("calibrate", patchcore_bundle, fitted, "--out", tmp_path / "out")
    assert r.exit_code == 1 and "all 14 images are ones the model was fitted on" in r.output
    assert not (tmp_path / "out").exists()
    with caplog.at_level(logging.WARNING):
        r = invoke(
            "calibrate",
            patchcore_bundle,
            synthetic_data / "train" / "good",
            "--out",
            tmp_path / "out",
        )
    assert r.exit_code == 0, r.output
    said = " ".join(x.getMessage() for x in caplog.records)
    assert "14 of 16 images were left out: the model was fitted on them" in said


def test_drift_verb_is_quiet_on_good_parts_and_alarms_on_defects(
    patchcore_bundle, synthetic_data, tmp_path
):
    good = invoke("drift", patchcore_bundle, synthetic_data / "test" / "good", *SMALL_WINDOW)
    assert good.exit_code == 0, good.output
    assert "no drift: 3 checks over 6 parts" in good.output
    report = tmp_path / "drift.json"
    bad = invoke(
        "drift",
        patchcore_bundle,
        synthetic_data / "test" / "scratch",
        "--drift-min-parts",
        "4",
        "--drift-window",
        "4",
        "--json",
        report,
    )
    assert bad.exit_code == EXIT_DRIFT, bad.output
    assert "flag rate 100.0% over the promised 1.0%" in bad.output
    assert "recalibrate" in bad.output
    checks = json.loads(report.read_text())["checks"]
    assert checks and checks[0]["state"] == "drift" and checks[0]["flagged"] == 4
    few = invoke("drift", patchcore_bundle, synthetic_data / "test" / "good")
    assert few.exit_code == 0 and "fewer than the 100 a check needs" in few.output


def test_run_rows_carry_the_drift_state_and_an_alarm_is_said(
    patchcore_bundle, synthetic_data, tmp_path, caplog
):
    folder = tmp_path / "line"
    folder.mkdir()
    for i, p in enumerate(sorted((synthetic_data / "test" / "scratch").glob("*.png"))):
        shutil.copy(p, folder / f"{i:03d}.png")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        result = invoke(
            "run",
            patchcore_bundle,
            folder,
            "--out",
            out,
            "--no-overlays",
            "--drift-window",
            "4",
            "--drift-min-parts",
            "4",
        )
    assert result.exit_code == 0, result.output
    with open(out / "results.csv", newline="") as f:
        states = [r["drift"] for r in csv.DictReader(f)]
    assert states == ["warming up"] * 3 + ["drift"]
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "drift from" in said and "003.png on (part 4): flag rate 100.0%" in said


def test_a_bundle_without_a_reference_runs_with_drift_off_said_once(
    synthetic_data, tmp_path, caplog
):
    pytest.importorskip("faiss")
    images = synthetic_data / "test" / "good"
    with caplog.at_level(logging.WARNING):
        result = invoke("run", OLD_BUNDLE, images, "--out", tmp_path / "out", "--no-overlays")
    assert result.exit_code == 0, result.output
    said = [r for r in caplog.records if "drift checks are off" in r.getMessage()]
    assert len(said) == 1
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        assert {r["drift"] for r in csv.DictReader(f)} == {"off"}
    r = invoke("drift", OLD_BUNDLE, images)
    assert r.exit_code == 1 and "no calibration reference" in r.output
