"""The manifest's typed contracts: scorer params per kind, the calibration record, and the
runtime settings, read with validation, written back as they were read, and old bundles loading."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from edgead.bundle import open_bundle
from edgead.bundle.manifest import Manifest, Normalization, ScorerSpec
from edgead.bundle.records import CalibrationRecord, Threshold, Verdicts
from edgead.bundle.scorer_params import (
    PARAMS,
    EfficientAdParams,
    KnnParams,
    SpadeParams,
    params_from_dict,
    params_to_dict,
)
from edgead.errors import BundleError
from edgead.runtime.settings import RuntimeSettings
from tests.conftest import rewrite_manifest

REPO = Path(__file__).resolve().parents[2]
OLD_BUNDLE = REPO / "tests" / "fixtures" / "bundle_v1_0_patchcore"


def test_every_scorer_kind_the_runtime_knows_has_a_params_class():
    from edgead.runtime.scorers import SCORERS

    assert set(SCORERS) == set(PARAMS)


def test_an_old_bundle_reads_its_params_typed():
    m = open_bundle(OLD_BUNDLE).manifest
    assert isinstance(m.scorer.params, KnnParams)
    assert m.scorer.params.output == "embedding" and m.scorer.params.neighbors == 9
    assert m.scorer.host_search == "faiss"  # written before the search was measured


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"neighbors": "nine"}, "scorer.params.neighbors: expected an integer"),
        ({"outptu": "embedding"}, "unknown key(s) ['outptu']"),
        ({"reweight": 1}, "scorer.params.reweight: expected true or false"),
    ],
)
def test_a_wrong_param_is_refused_naming_the_file_and_the_key(tmp_path, change, message):
    copy = tmp_path / "bundle"
    shutil.copytree(OLD_BUNDLE, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["scorer"]["params"].update(change)
    rewrite_manifest(copy / "manifest.json", data)
    with pytest.raises(BundleError) as err:
        open_bundle(copy)
    assert str(copy / "manifest.json") in str(err.value) and message in str(err.value)


def test_a_missing_required_param_is_named():
    with pytest.raises(TypeError, match=r"scorer.params.k: missing \(required by SpadeParams\)"):
        params_from_dict("spade", {"outputs": ["a"], "pooled": "p", "gallery_k": 3})


def test_params_write_back_as_they_were_read():
    written = {
        "score": "ead_score",
        "map": "anomaly_map",
        "puad": {
            "output": "pooled",
            "dim": 4,
            "weight": 1.0,
            "ead_mean": 0.1,
            "ead_std": 1.0,
            "mahalanobis_mean": 2.0,
            "mahalanobis_std": 0.5,
            "feature": "x",
            "form": "f",
        },
    }
    params = params_from_dict("efficientad", written)
    assert isinstance(params, EfficientAdParams) and params.puad.dim == 4
    assert params_to_dict(params) == written
    spade = params_from_dict(
        "spade", {"outputs": ["a", "b"], "pooled": "p", "k": 5, "gallery_k": 3}
    )
    assert spade == SpadeParams(("a", "b"), "p", 5, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spade.k = 1  # type: ignore[misc]


def test_a_plugin_kind_without_a_params_class_keeps_its_dict():
    spec = ScorerSpec("my_scorer", {"anything": 1})
    assert spec.params == {"anything": 1} and spec.host_search == "faiss"


def _record() -> CalibrationRecord:
    from edgead.metrics.calibration import calibration_record, normalization_from

    scores = [10.0 + 0.1 * i for i in range(30)]
    cal = calibration_record(scores, scores, [0.0] * 30, 0.01, "30 held-out good images")
    norm = normalization_from(cal, [0, 0, 1, 1], [10.0, 11.0, 20.0, 9.0], Normalization())
    return norm.calibration


def test_the_calibration_record_round_trips_through_the_manifest_json():
    record = _record()
    assert isinstance(record.image, Threshold) and isinstance(record.test, Verdicts)
    data = record.to_dict()
    # the file keeps what readers of the JSON want (the basis, the rates, the note)
    assert data["image"]["basis"] and data["test"]["detection_rate"] == 0.5
    assert data["f1_optimal"]["note"].startswith("diagnostic only")
    back = CalibrationRecord.from_dict(json.loads(json.dumps(data)))
    assert back == record


def test_a_record_from_before_confidence_bounds_loads_and_a_wrong_one_is_named():
    data = _record().to_dict()
    for key in ("confidence", "scores"):
        del data[key]
    for key in ("confidence", "frr_bound", "point_value", "images_needed", "basis"):
        del data["image"][key]
    old = CalibrationRecord.from_dict(data)
    assert old.confidence is None and old.image.confidence is None and old.scores == []
    data["image"]["n_images"] = "thirty"
    with pytest.raises(TypeError, match=r"calibration.image.n_images: expected an integer"):
        CalibrationRecord.from_dict(data)


def test_an_uncalibrated_bundle_has_no_record_and_writes_an_empty_one():
    m = open_bundle(OLD_BUNDLE).manifest
    assert m.normalization.calibration is None
    assert json.loads(m.to_json())["normalization"]["calibration"] == {}
    again = Manifest.from_dict(json.loads(m.to_json()))
    assert again.scorer.params == m.scorer.params and again.normalization == m.normalization


def test_runtime_settings_are_checked_and_replaced_by_name():
    s = RuntimeSettings(backend="openvino", threads=2)
    assert s.replace(precision="int8") == RuntimeSettings("openvino", None, "int8", threads=2)
    assert RuntimeSettings.of(s, search="faiss").search == "faiss"
    with pytest.raises(TypeError):
        s.replace(backnd="onnxruntime")
    with pytest.raises(TypeError, match="name the field"):
        RuntimeSettings.of("openvino")  # type: ignore[arg-type]
    for bad in ({"gray": "maybe"}, {"batch": 0}, {"threads": 0}):
        with pytest.raises(ValueError):
            RuntimeSettings(**bad)


def test_the_pipeline_takes_the_settings_whole():
    from edgead.runtime import Pipeline

    settings = RuntimeSettings(backend="onnxruntime", precision="fp32", threshold=99.0)
    with Pipeline(OLD_BUNDLE, settings) as pipe:
        assert pipe.settings == settings and pipe.normalization.image_threshold == 99.0
        with pipe.reopen() as again:
            assert again.settings == settings
    with pytest.raises(TypeError, match="name the field"):
        Pipeline(OLD_BUNDLE, "onnxruntime")  # type: ignore[arg-type]
