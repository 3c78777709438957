"""`edgead bench` and the report script produce the tables and pictures they promise."""

from __future__ import annotations

import importlib.util
import json

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from edgead.cli import main
from tests.conftest import REPO


def test_bench_markdown_json_html(fitted, synthetic_data, tmp_path):
    bundle = str(fitted.bundle("padim"))
    result = CliRunner().invoke(
        main,
        [
            "bench",
            bundle,
            "--backend",  # not the bundle's measured default, which depends on the machine
            "onnxruntime",
            "--data",
            str(synthetic_data),
            "--batch",
            "1,4",
            "--iterations",
            "5",
            "--warmup",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    for stage in ("decode", "preprocess", "graph", "score", "postprocess", "total"):
        assert f"| {stage}" in result.output
    assert "padim | onnxruntime" in result.output and "fp32 | input 3x128x128" in result.output
    assert "scorer statistics in memory" in result.output and "MiB" in result.output

    result = CliRunner().invoke(
        main,
        [
            "bench",
            bundle,
            "--format",
            "json",
            "--batch",
            "2",
            "--iterations",
            "3",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["throughput"]["2"] > 0 and report["latency_ms"]["graph"]["p50"] > 0
    assert "decode" not in report["latency_ms"]  # synthetic images: nothing was decoded
    assert report["scorer_memory_bytes"] > 0 and report["bundle_bytes"] > 0

    result = CliRunner().invoke(
        main, ["bench", bundle, "--format", "html", "--iterations", "3", "--precision", "fp16"]
    )
    assert result.exit_code == 0 and "<table>" in result.output and "fp16" in result.output


def test_report_script(fitted, synthetic_data, tmp_path):
    spec = importlib.util.spec_from_file_location("report", REPO / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    # reuse the session's bundles instead of fitting again
    for name in ("patchcore", "spade"):
        import shutil

        shutil.copytree(fitted.bundle(name), tmp_path / "bundles" / f"{name}-{synthetic_data.name}")
    out = report.run(
        synthetic_data.parent,
        tmp_path,
        ["patchcore", "spade"],
        [synthetic_data.name],
        (1, 2),
        quick=True,
        iterations=3,
    )
    text = (tmp_path / "report.md").read_text()
    assert text == out["markdown"]
    assert text.count("**average**") == 2 and "| patchcore  | parts" in text
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 * 2 + 1  # histograms, overlays, ROC
    results = json.loads((tmp_path / "results.json").read_text())
    assert {r["detector"] for r in results} == {"patchcore", "spade"}
    assert all(r["passed"] for r in results)
