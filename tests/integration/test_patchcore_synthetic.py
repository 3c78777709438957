"""PatchCore end to end on the synthetic set: fit, save, export, run, parity, through the CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from edgead.bundle import open_bundle
from edgead.cli import main
from edgead.runtime.parity import run_parity
from tests.conftest import rewrite_manifest

FAST = ["--image-size", "128", "--coreset-ratio", "0.1"]


def cli(*args: object):
    return CliRunner().invoke(main, ["-q", *map(str, args)])


def test_fitted_model_separates_defects(saved_patchcore):
    m = saved_patchcore.evaluation.metrics
    assert m.image_rocauc > 0.9 and m.pixel_rocauc > 0.9 and m.aupro > 0.5
    assert m.n_images == 6 + 4 * 3 and m.n_anomalous == 12


def test_bundle_contents(patchcore_bundle, saved_patchcore):
    b = open_bundle(patchcore_bundle)
    m = b.manifest
    assert {a.role for a in m.artifacts} == {
        "graph",
        "graph_fp16",
        "index",
        "golden",
        "reference_scores",
        "fit_images",
    }
    assert m.detector == "patchcore" and m.scorer.kind == "knn"
    assert (m.input.height, m.input.width) == (128, 128)
    assert m.graph.output_shapes["embedding"] == ["batch", 16, 16, 152]
    assert m.metrics.image_rocauc == saved_patchcore.evaluation.metrics.image_rocauc
    assert m.normalization.image_threshold is not None
    assert "torch" in m.libraries and "onnxruntime" in m.libraries
    assert not list(Path(patchcore_bundle).glob("*.pt*"))  # no pickles


def test_parity_passes(patchcore_bundle, synthetic_data):
    # the default the bundle measured where it was exported (any backend and precision that
    # held parity there), then onnxruntime FP32, which scores as the PyTorch model does
    report = run_parity(patchcore_bundle, synthetic_data, quiet=True)
    assert report.passed, report.table()
    report = run_parity(
        patchcore_bundle, synthetic_data, quiet=True, backend="onnxruntime", precision="fp32"
    )
    assert report.passed, report.table()
    checks = {r.check.split(" (")[0]: r for r in report.rows}
    assert checks["image ROCAUC"].ok and checks["pixel ROCAUC"].ok
    assert checks["per-image score"].diff < 1e-4
    assert len(report.latency) == 18


def test_parity_fails_when_the_bundle_does_not_match(patchcore_bundle, synthetic_data, tmp_path):
    """A claimed ROCAUC 5 points off must make `edgead parity` exit 1."""
    copy = tmp_path / "tampered"
    shutil.copytree(patchcore_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["metrics"]["pixel_rocauc"] -= 0.05
    rewrite_manifest(copy / "manifest.json", manifest)
    result = cli("parity", copy, synthetic_data)
    assert result.exit_code == 1
    assert "FAIL" in result.output


def test_cli_fit_then_export_model_then_run(tmp_path, synthetic_data):
    model = tmp_path / "model"
    result = cli("fit", "patchcore", "--data", synthetic_data, "--out", model, *FAST)
    assert result.exit_code == 0, result.output
    assert "image ROCAUC %" in result.output
    assert {p.name for p in model.iterdir()} == {
        "config.json",
        "model.safetensors",
        "evaluation.json",
        "holdout.json",
        "golden.npz",
    }

    bundle = tmp_path / "bundle"
    result = cli("export", "patchcore", "--model", model, "--out", bundle)
    assert result.exit_code == 0, result.output
    result = cli("parity", bundle)  # golden outputs only: no dataset needed
    assert result.exit_code == 0, result.output
    assert "golden embedding" in result.output

    images = tmp_path / "images"
    shutil.copytree(synthetic_data / "test", images)
    (images / "good" / "zz_corrupt.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    result = cli("run", bundle, images, "--out", out)
    assert result.exit_code == 3, result.output  # some inputs skipped: its own exit status
    assert "1 skipped" in result.output and "graph" in result.output
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 19
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and bad[0]["path"].endswith("zz_corrupt.png")
    good = [r for r in rows if not r["error"]]
    assert all(float(r["graph_ms"]) > 0 and r["label"] in ("good", "anomalous") for r in good)
    defect_labels = [r["label"] for r in good if "/good/" not in r["path"]]
    assert defect_labels.count("anomalous") >= len(defect_labels) - 2
    assert len(list((out / "overlays").glob("*.png"))) == 18


def test_run_jsonl_and_batches(patchcore_bundle, synthetic_data, tmp_path):
    result = cli(
        "run",
        patchcore_bundle,
        synthetic_data / "test" / "scratch",
        "--out",
        tmp_path,
        "--format",
        "jsonl",
        "--batch",
        "3",
        "--no-overlays",
    )
    assert result.exit_code == 0, result.output
    with open(tmp_path / "results.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 4 and all(r["label"] == "anomalous" for r in rows)
    # each verdict says where: a region box on the drawn defect (its ground-truth mask)
    for r in rows:
        stem = Path(r["path"]).stem
        mask = cv2.imread(str(synthetic_data / "ground_truth" / "scratch" / f"{stem}_mask.png"), 0)
        assert r["regions"] and r["largest_region_area"] == max(g["area"] for g in r["regions"])
        assert any(
            mask[g["y"] : g["y"] + g["height"], g["x"] : g["x"] + g["width"]].any()
            for g in r["regions"]
        ), r


def test_export_with_reweighting_and_ivfpq(saved_patchcore, synthetic_data, tmp_path):
    from edgead.workflows import export_model

    saved_patchcore.model.config.reweight = True
    try:
        bundle = export_model(saved_patchcore, tmp_path / "rw")
        # the runtime's faiss re-weighting matches the torch model's (golden image score)
        report = run_parity(bundle, None)
        assert report.passed, report.table()
    finally:
        saved_patchcore.model.config.reweight = False
    bundle = export_model(saved_patchcore, tmp_path / "ivfpq", index="ivfpq", nprobe=4)
    m = open_bundle(bundle).manifest
    assert m.artifact("index").meta["type"] == "IndexIVFPQ" and m.scorer.params.nprobe == 4
    report = run_parity(bundle, synthetic_data, quiet=True)
    rows = {r.check.split(" (")[0]: r for r in report.rows}
    assert rows["image ROCAUC"].ok, report.table()


def test_failed_export_leaves_nothing(saved_patchcore, tmp_path, monkeypatch):
    from edgead.detectors.patchcore import export as export_patchcore
    from edgead.workflows import export_model

    def explode(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_patchcore, "build_index", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        export_model(saved_patchcore, tmp_path / "bundle")
    assert list(tmp_path.iterdir()) == []


def test_cli_errors_are_one_line(tmp_path, synthetic_data):
    result = cli("parity", tmp_path / "nope")
    assert result.exit_code == 1 and "no bundle folder" in result.output
    result = cli("export", "patchcore", "--out", tmp_path / "b")
    assert result.exit_code == 2 and "exactly one of --data" in result.output
    result = cli("fit", "patchcore", "--data", tmp_path, "--out", tmp_path / "m")
    assert result.exit_code == 1 and "no images found" in result.output


def test_demo_runs(tmp_path):
    result = cli("demo", "--workdir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "demo passed" in result.output and "score" in result.output
    assert f"kept: data, bundle and results in {Path(tmp_path).resolve()}" in result.output
    # it ends with what to try next, with its own paths
    assert f"edgead run {Path(tmp_path).resolve() / 'bundle'}" in result.output


def test_search_folded_into_the_graph(saved_patchcore, synthetic_data, tmp_path):
    """--search graph: exact kNN inside the ONNX graph; same scores, FP16 graph included."""
    from edgead.errors import EdgeadError
    from edgead.workflows import export_model

    bundle = export_model(saved_patchcore, tmp_path / "graph", search="graph")
    m = open_bundle(bundle).manifest
    assert m.scorer.kind == "patch_scores" and not m.has_artifact("index")
    assert m.graph.output_names == ["patch_scores"]
    for precision in ("fp32", "fp16"):
        report = run_parity(bundle, synthetic_data, quiet=True, precision=precision)
        assert report.passed, report.table()
    saved_patchcore.model.config.reweight = True
    try:
        with pytest.raises(EdgeadError, match="drop --reweight"):
            export_model(saved_patchcore, tmp_path / "no", search="graph")
    finally:
        saved_patchcore.model.config.reweight = False
