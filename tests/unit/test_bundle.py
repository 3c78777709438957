import json

import pytest

from edgead.bundle import (
    GraphSpec,
    InputSpec,
    Manifest,
    Metrics,
    Normalization,
    ParityTolerance,
    PostprocessSpec,
    ScorerSpec,
    open_bundle,
    write_bundle,
)
from edgead.errors import BundleError
from tests.conftest import rewrite_manifest


def manifest() -> Manifest:
    return Manifest(
        detector="patchcore",
        params={"k": 1},
        input=InputSpec(64, 48),
        backbone={"name": "x"},
        graph=GraphSpec("g.onnx", "input", ["e"], {"e": ["batch", 8, 6, 4]}),
        scorer=ScorerSpec("knn", {"output": "e"}),
        postprocess=PostprocessSpec(64, 48),
        normalization=Normalization(image_threshold=1.5),
        metrics=Metrics(image_rocauc=0.9),
        parity=ParityTolerance(),
    )


def make(tmp_path, name="b"):
    out = tmp_path / name
    with write_bundle(out) as w:
        w.path("g.onnx").write_bytes(b"graph-bytes")
        w.add("g.onnx", role="graph", fmt="onnx")
        w.path("stats/s.npz").write_bytes(b"0123456789")
        w.add("stats/s.npz", role="statistics", fmt="npz")
        w.write_manifest(manifest())
    return out


def test_round_trip(tmp_path):
    b = open_bundle(make(tmp_path))
    m = b.manifest
    assert m.input == InputSpec(64, 48) and m.metrics.image_rocauc == 0.9
    assert m.schema_version == "1.4" and m.created and m.revision == 1
    assert (
        m.digest["algorithm"] == "sha256" and "normalization.image_threshold" in m.digest["fields"]
    )
    assert {a.role for a in m.artifacts} == {"graph", "statistics"}
    assert b.path("statistics").read_bytes() == b"0123456789"
    assert Manifest.from_dict(json.loads(m.to_json())) == m


def test_refuses_to_overwrite_unless_asked(tmp_path):
    make(tmp_path)
    with pytest.raises(BundleError, match="--overwrite"):
        make(tmp_path)


def test_crash_leaves_old_bundle_and_no_staging(tmp_path):
    out = make(tmp_path)
    before = (out / "manifest.json").read_text()
    with pytest.raises(RuntimeError), write_bundle(out, overwrite=True) as w:
        w.path("g.onnx").write_bytes(b"half")
        raise RuntimeError("power cut")
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_crash_on_first_export_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), write_bundle(tmp_path / "new"):
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: (b / "stats" / "s.npz").unlink(), "missing statistics file"),
        (lambda b: (b / "g.onnx").write_bytes(b"graph"), "truncated or replaced"),
        (lambda b: (b / "g.onnx").write_bytes(b"graph-bytez"), "checksum does not match"),
        (lambda b: (b / "manifest.json").unlink(), "manifest.json: missing"),
        (lambda b: (b / "manifest.json").write_text("{not json"), "not valid JSON"),
    ],
)
def test_damaged_bundle_errors_name_the_file(tmp_path, damage, message):
    out = make(tmp_path)
    damage(out)
    with pytest.raises(BundleError, match=message) as err:
        open_bundle(out)
    assert str(out) in str(err.value) and "edgead export" in str(err.value)


def test_schema_version_and_unknown_fields(tmp_path):
    out = make(tmp_path)
    data = json.loads((out / "manifest.json").read_text())
    data["schema_version"] = "2.0"
    (out / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"schema version 2\.0"):
        open_bundle(out)
    data["schema_version"] = "1.2"
    data["surprise"] = 1
    rewrite_manifest(out / "manifest.json", data)  # a writer's bug, not an edit
    with pytest.raises(BundleError, match="unknown fields"):
        open_bundle(out)
    with pytest.raises(BundleError, match="no bundle folder"):
        open_bundle(tmp_path / "nothing")
