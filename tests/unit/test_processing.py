import cv2
import numpy as np
import pytest

from edgead.bundle.manifest import InputSpec, Normalization, PostprocessSpec
from edgead.runtime.postprocess import anomaly_map, normalize_score, overlay, verdict
from edgead.runtime.preprocess import (
    PARALLEL_FROM,
    affine,
    preprocess,
    preprocess_batch,
    resize_batch,
)


def test_preprocess_by_hand():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    spec = InputSpec(20, 16, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0), interpolation="bilinear")
    out = preprocess(img, spec)
    resized = cv2.resize(img, (16, 20), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    want = ((resized - [0.1, 0.2, 0.3]) / [0.5, 0.25, 2.0]).transpose(2, 0, 1)
    assert out.shape == (3, 20, 16) and out.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
    bgr = preprocess(
        img,
        InputSpec(
            20,
            16,
            channel_order="BGR",
            interpolation="bilinear",
            mean=(0.1, 0.2, 0.3),
            std=(0.5, 0.25, 2.0),
        ),
    )
    assert not np.allclose(bgr, out)


def test_batch_preprocessing_in_threads_equals_one_by_one():
    rng = np.random.default_rng(1)
    sizes = [(40, 30), (20, 16), (64, 48), (33, 77), (20, 16), (50, 50)]
    images = [rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in sizes]
    assert len(images) >= PARALLEL_FROM  # the threaded path
    spec = InputSpec(20, 16, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0), interpolation="area")
    batch = preprocess_batch(images, spec)
    assert batch.shape == (6, 3, 20, 16) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, np.stack([preprocess(im, spec) for im in images]))
    assert preprocess_batch([], spec).shape == (0, 3, 20, 16)


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_uint8_batch_normalized_on_a_device_equals_host_preprocessing(order):
    """The device path (resize on the host, uint8 * scale + offset on the GPU) computes the
    host's float32 input bit for bit: the same two roundings in the same order."""
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in [(40, 30), (20, 16)] * 3]
    spec = InputSpec(20, 16, channel_order=order, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    u8 = resize_batch(images, spec, np.empty((6, 20, 16, 3), np.uint8))
    scale, offset = affine(spec)
    nchw = u8.transpose(0, 3, 1, 2).astype(np.float32)
    on_device = nchw * scale[None, :, None, None] + offset[None, :, None, None]
    np.testing.assert_array_equal(on_device, preprocess_batch(images, spec))


def test_anomaly_map_upsamples_and_blurs():
    patch = np.zeros((8, 8), np.float32)
    patch[4, 4] = 1.0
    sharp = anomaly_map(patch, PostprocessSpec(64, 64, blur_sigma=0))
    smooth = anomaly_map(patch, PostprocessSpec(64, 64, blur_sigma=4))
    assert sharp.shape == smooth.shape == (64, 64)
    assert smooth.max() < sharp.max()
    assert np.unravel_index(smooth.argmax(), smooth.shape) == pytest.approx((36, 36), abs=2)


def test_normalization_and_verdict():
    norm = Normalization(image_threshold=2.0, image_min=1.0, image_max=5.0)
    assert normalize_score(2.0, norm) == 0.5
    assert normalize_score(100.0, norm) == 1.0
    assert verdict(2.5, norm) == "anomalous" and verdict(1.5, norm) == "good"
    assert verdict(1.0, Normalization()) is None and normalize_score(1.0, Normalization()) is None


def test_overlay_is_at_image_size():
    img = np.zeros((50, 70, 3), np.uint8)
    amap = np.zeros((16, 16), np.float32)
    amap[8, 8] = 1
    out = overlay(img, amap, Normalization(pixel_threshold=0.5))
    assert out.shape == (50, 70, 3) and out.any()
