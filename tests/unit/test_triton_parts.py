"""The Triton models' request handling, without a server: what a request may carry, what
comes back, and where a model finds its bundle."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgead.runtime.pipeline import Prediction
from edgead.triton.backend_model import (
    RequestError,
    bundle_path,
    images_of,
    outputs_of,
    threads_for,
)


def test_pixels_come_back_as_one_image_per_batch_row():
    batch = np.random.default_rng(0).integers(0, 255, (3, 32, 40, 3), dtype=np.uint8)
    images = images_of(batch, None)
    assert len(images) == 3 and all(
        np.array_equal(a, b) for a, b in zip(images, batch, strict=True)
    )


@pytest.mark.parametrize(
    ("image", "encoded", "message"),
    [
        (None, None, "exactly one input"),
        (np.zeros((1, 32, 32, 3), np.uint8), np.array([[b"x"]], object), "exactly one input"),
        (np.zeros((1, 32, 32, 3), np.float32), None, "must be uint8"),
        (np.zeros((32, 32, 3), np.uint8), None, "[batch, height, width, 3]"),
        (np.zeros((1, 32, 32, 4), np.uint8), None, "[batch, height, width, 3]"),
        (np.zeros((1, 4, 32, 3), np.uint8), None, "too small"),
        (None, np.array([[b"\x89PNG\r\n\x1a\n cut"]], object), "request ENCODED[0]"),
    ],
)
def test_a_request_that_cannot_be_scored_says_why(image, encoded, message):
    with pytest.raises(RequestError) as err:
        images_of(image, encoded, "request")
    assert message in str(err.value)


def test_encoded_files_decode_to_rgb():
    bgr = np.zeros((24, 24, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's order
    ok, png = cv2.imencode(".png", bgr)
    assert ok
    (image,) = images_of(None, np.array([[png.tobytes()]], dtype=object))
    assert image.shape == (24, 24, 3) and image[0, 0].tolist() == [200, 0, 0]


def test_outputs_without_a_threshold_say_so_with_nan():
    amap = np.ones((4, 4), np.float32)
    results = [Prediction(2.0, None, None, amap), Prediction(3.0, 0.7, "anomalous", amap)]
    out = outputs_of(results)
    assert out["SCORE"].shape == (2, 1) and out["SCORE"].dtype == np.float32
    assert np.isnan(out["NORMALIZED_SCORE"][0, 0]) and out["NORMALIZED_SCORE"][
        1, 0
    ] == pytest.approx(0.7)
    assert out["ANOMALOUS"].tolist() == [[False], [True]]
    assert out["MAP"].shape == (2, 4, 4)


def test_a_model_finds_its_bundle_in_its_version_folder_or_the_repository():
    args = {"model_repository": "/repo/m", "model_version": "1", "model_config": json.dumps({})}
    assert bundle_path(args, {}) == Path("/repo/m/1/bundle")
    assert bundle_path(args, {"edgead_bundle": "@repo/other/1/bundle"}) == Path(
        "/repo/other/1/bundle"
    )


def test_cpu_instances_share_the_cores_unless_threads_are_given():
    two = {"instance_group": [{"count": 2, "kind": "KIND_CPU"}]}
    assert threads_for({}, two, cores=8) == 4
    assert threads_for({"edgead_threads": "0"}, two, cores=3) == 1
    assert threads_for({"edgead_threads": "6"}, two, cores=8) == 6
    assert threads_for({}, {"instance_group": [{"count": 1, "kind": "KIND_GPU"}]}, 8) == 8
