"""The figures the documentation quotes (README.md and docs/) are the ones the benchmarks wrote
to benchmarks/results/: a table edited by hand, or a benchmark rerun without updating the docs,
fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"


def docs_text() -> str:
    """README.md and every page of docs/, in one text."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    return "\n".join(p.read_text() for p in pages)


def readme_table(first_header: str, must_have: str) -> list[dict[str, str]]:
    """The Markdown table of the docs whose header row starts with ``first_header`` and holds
    ``must_have``, as dicts by column name."""
    lines = docs_text().splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_header and must_have in cells:
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                values = [c.strip() for c in row.strip().strip("|").split("|")]
                rows.append(dict(zip(cells, values, strict=True)))
            return rows
    raise AssertionError(f"the docs have no table with {first_header!r} and {must_have!r}")


def test_the_thresholds_table_is_the_benchmarks_latest_results():
    results = json.loads((RESULTS / "thresholds_defaults.json").read_text())
    rows = readme_table("detector", "good flagged (test)")
    assert len(rows) == len(results) == 9
    for row, res in zip(rows, results, strict=True):
        test = res["calibration"]["test"]
        assert (row["detector"], row["category"]) == (res["detector"], res["category"])
        assert row["good flagged (test)"] == f"{test['false_rejects']}/{test['n_good']}"
        assert row["detected (test)"] == f"{100 * test['detection_rate']:.1f}%"
        assert row["threshold set on"] == res["calibration"]["source"]


def test_the_holdout_figures_quoted_are_the_benchmarks():
    results = json.loads((RESULTS / "thresholds_holdout.json").read_text())
    by = {(r["detector"], r["category"], r["holdout_by"]): r for r in results}
    text = docs_text()
    random = by[("padim", "mvtec3d_tire", "random")]["calibration"]["test"]["false_rejects"]
    newest = by[("padim", "mvtec3d_tire", "newest")]["calibration"]["test"]["false_rejects"]
    assert f"flagged **{random} of 25** good test tires with a random holdout" in text
    assert f"**{newest} of 25** with the newest" in text


@pytest.mark.parametrize(
    "name",
    [
        "thresholds_defaults.json",
        "thresholds_holdout.json",
        "shift.jsonl",
        "sinks.json",
        "coreset_scale.jsonl",
        "coreset_chunks_rocauc.jsonl",
        "precision.jsonl",
        "tensorrt_int8_standin.jsonl",
        "openvino_layers.json",
    ],
)
def test_every_results_file_is_named_in_the_docs(name):
    assert f"benchmarks/results/{name}" in docs_text()


def test_the_shifts_table_is_the_benchmarks_latest_results():
    rows = [
        json.loads(line)
        for line in (RESULTS / "shift.jsonl").read_text().splitlines()
        if line.strip()
    ]
    table = readme_table("detector", "drift alarm on")
    assert len(table) == 42  # 3 detectors x 2 fits x 7 shifts
    for line in table:
        part = [
            r
            for r in rows
            if (r["detector"], r["augment"], r["shift"])
            == (line["detector"], line["fit"], line["shift"])
        ]
        assert len(part) == 3, line
        flagged = sum(r["flagged"] for r in part)
        assert line["good flagged"] == f"{flagged}/{sum(r['good'] for r in part)}"
        alarmed = [r["category"] for r in part if r["alarm_at_part"]]
        assert line["drift alarm on"] == (", ".join(alarmed) or "-")


def test_the_sinks_table_is_the_benchmarks_latest_results():
    results = json.loads((RESULTS / "sinks.json").read_text())
    rows = readme_table("sink", "CPU per verdict, ms (median)")
    assert [r["sink"] for r in rows] == [r["sink"] for r in results["rows"]]
    for row, res in zip(rows, results["rows"], strict=True):
        assert row["offer on the scoring thread, µs"] == f"{res['offer_us']:.1f}"
        if "cpu_ms_per_message" in res:
            assert row["CPU per verdict, ms (median)"] == f"{res['cpu_ms_per_message']:.2f}"
            assert row["runs, ms"] == ", ".join(f"{x:.2f}" for x in res["cpu_ms_runs"])
            assert row["delivered"] == str(res["delivered"])
    assert results["context"]["date"] in docs_text()


def test_the_precision_table_is_the_benchmarks_latest_results():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "precision_benchmark", REPO / "benchmarks" / "precision.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = [json.loads(line) for line in (RESULTS / "precision.jsonl").read_text().splitlines()]
    expected = [dict(zip(module.HEADERS, r, strict=True)) for r in module.table_rows(rows)]
    assert readme_table("CPU", "vs onnxruntime fp32") == expected


def _benchmark_module(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_coreset_tables_are_the_benchmarks_latest_results():
    pytest.importorskip("torch", reason="benchmarks/coreset.py imports torch (the fit extra)")
    module = _benchmark_module("coreset")
    for headers, make, name, must_have in (
        (
            module.SCALE_HEADERS,
            module.scale_rows,
            "coreset_scale.jsonl",
            "radius vs the one greedy",
        ),
        (module.ESTIMATE_HEADERS, module.estimate_rows, "coreset_estimate.jsonl", "said / took"),
    ):
        rows = [
            json.loads(line) for line in (RESULTS / name).read_text().splitlines() if line.strip()
        ]
        expected = [dict(zip(headers, r, strict=True)) for r in make(rows)]
        assert readme_table("CPU", must_have) == expected


def test_the_int8_variants_table_is_the_benchmarks_result():
    results = json.loads((RESULTS / "int8_variants.json").read_text())
    rows = results["rows"]
    base = next(r for r in rows if (r["variant"], r["backend"]) == ("fp32", "onnxruntime"))
    table = readme_table("variant", "mean relative error")
    assert [(t["variant"], t["backend"]) for t in table] == [
        (r["variant"], r["backend"]) for r in rows
    ]
    for t, r in zip(table, rows, strict=True):
        assert t["p50 ms"] == f"{r['p50_ms']:.2f}"
        assert t["vs onnxruntime fp32"] == f"{r['p50_ms'] / base['p50_ms']:.2f}x"
        assert t["mean relative error"] == f"{100 * r['mean_relative_error']:.1f}%"


def test_the_tensorrt_int8_standin_table_is_the_benchmarks_latest_results():
    module = _benchmark_module("tensorrt_int8_standin")
    rows = [
        json.loads(line)
        for line in (RESULTS / "tensorrt_int8_standin.jsonl").read_text().splitlines()
        if line.strip()
    ]
    expected = [dict(zip(module.HEADERS, r, strict=True)) for r in module.table_rows(rows)]
    assert readme_table("CPU", "gate on onnxruntime") == expected


def test_the_openvino_layers_table_is_the_benchmarks_result():
    results = json.loads((RESULTS / "openvino_layers.json").read_text())
    table = readme_table("layers", "openvino int8 ms")
    assert [t["layers"] for t in table] == [r["layers"] for r in results["rows"]]
    for t, r in zip(table, results["rows"], strict=True):
        assert (t["openvino fp32 ms"], t["openvino int8 ms"]) == (
            f"{r['fp32']:.3f}",
            f"{r['int8']:.3f}",
        )
    reference = (
        f"onnxruntime FP32 ({results['p50_ms']['onnxruntime fp32']:.2f} ms in the same loop)"
    )
    assert reference in " ".join(docs_text().split())
