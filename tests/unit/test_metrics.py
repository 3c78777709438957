import numpy as np
import pytest

from edgead.metrics import aupro, f1_optimal_threshold, image_rocauc, pixel_rocauc, summarize


def test_image_rocauc():
    assert image_rocauc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert image_rocauc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert image_rocauc([0, 0], [0.1, 0.2]) is None


def test_f1_threshold_separates():
    thr, f1 = f1_optimal_threshold([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert 0.2 < thr <= 0.8 and f1 == 1.0


def test_aupro_perfect_and_random():
    rng = np.random.default_rng(0)
    masks, maps = [], []
    for _ in range(4):
        m = np.zeros((32, 32), np.uint8)
        m[5:12, 5:12] = 1
        m[20:25, 18:30] = 1
        masks.append(m)
        maps.append(m + rng.uniform(0, 0.5, m.shape))  # regions strictly above background
    assert aupro(masks, maps) == pytest.approx(1.0, abs=1e-9)
    noise = [rng.uniform(size=(32, 32)) for _ in masks]
    # random maps: PRO ~ FPR, so the normalized area up to 0.3 is ~0.15
    assert aupro(masks, noise) == pytest.approx(0.15, abs=0.05)


def brute_force_aupro(masks, maps, limit=0.3):
    """Threshold by threshold, straight from the definition."""
    import cv2

    thresholds = np.unique(np.concatenate([m.ravel() for m in maps]))[::-1]
    fprs, pros = [0.0], [0.0]
    ok = sum(int((m == 0).sum()) for m in masks)
    for t in thresholds:
        fp, overlaps = 0, []
        for mask, amap in zip(masks, maps, strict=True):
            pred = amap >= t
            fp += int((pred & (mask == 0)).sum())
            n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
            overlaps += [(pred & (lab == k)).sum() / (lab == k).sum() for k in range(1, n)]
        fprs.append(fp / ok)
        pros.append(float(np.mean(overlaps)))
    fprs, pros = np.array([*fprs, 1.0]), np.array([*pros, 1.0])
    cut = np.searchsorted(fprs, limit, side="right")
    x = np.concatenate((fprs[:cut], [limit]))
    y = np.concatenate((pros[:cut], [np.interp(limit, fprs, pros)]))
    return np.trapezoid(y, x) / limit


def test_aupro_matches_definition():
    rng = np.random.default_rng(1)
    masks, maps = [], []
    for _ in range(3):
        m = np.zeros((12, 12), np.uint8)
        m[2:5, 2:6] = 1
        m[8:11, 7:9] = 1
        masks.append(m)
        maps.append(np.round(m * 0.3 + rng.uniform(size=m.shape), 2))
    assert aupro(masks, maps) == pytest.approx(brute_force_aupro(masks, maps), abs=1e-9)


def test_pixel_rocauc_and_summary():
    masks = [np.array([[0, 1], [0, 0]]), np.zeros((2, 2))]
    maps = [np.array([[0.1, 0.9], [0.2, 0.3]]), np.full((2, 2), 0.05)]
    assert pixel_rocauc(masks, maps) == 1.0
    s = summarize([1, 0], [0.9, 0.05], masks, maps, pixel_f1=True)
    assert s.image_rocauc == 1.0 and s.pixel_rocauc == 1.0 and s.pixel_threshold is not None
    assert summarize([1, 0], [0.9, 0.05]).pixel_rocauc is None
    assert summarize([1, 0], [0.9, 0.05], masks, maps).pixel_threshold is None


def test_threshold_at_frr_from_good_scores_alone():
    import numpy as np

    from edgead.metrics.calibration import threshold_at_frr, verdicts_at

    rng = np.random.default_rng(0)
    good = rng.gumbel(10.0, 1.0, 40)
    t = threshold_at_frr(good, 0.01)
    # the Gumbel's 99% quantile is loc - scale * ln(-ln 0.99) = 10 + 4.6; never under the
    # largest held-out score (then the estimated rate is below the target)
    assert t.method.startswith("gumbel") and abs(t.value - 14.6) < 1.5
    assert t.value >= good.max() and t.estimated_frr <= 0.01 + 1e-6
    assert 0 <= t.frr_interval[0] <= t.estimated_frr <= t.frr_interval[1] < 0.2
    # many images: the empirical quantile, read off directly
    many = threshold_at_frr(rng.gumbel(10.0, 1.0, 5000), 0.01)
    assert many.method == "empirical" and abs(many.value - 14.6) < 0.5
    # a heavy tail the fit misses: never below the largest held-out score
    tail = threshold_at_frr([*rng.normal(10, 0.1, 24), 20.0], 0.01)
    assert tail.value == 20.0 and "raised" in tail.method
    v = verdicts_at(12.0, [0, 0, 1, 1], [11.0, 13.0, 12.5, 3.0])
    assert (v.false_rejects, v.detections, v.frr, v.detection_rate) == (1, 1, 0.5, 0.5)


def test_threshold_refuses_bad_targets_and_too_few_scores():
    from edgead.errors import EdgeadError
    from edgead.metrics.calibration import threshold_at_frr

    with pytest.raises(EdgeadError, match="--target-frr"):
        threshold_at_frr([1.0, 2.0, 3.0], 0.7)
    with pytest.raises(EdgeadError, match="at least 2"):
        threshold_at_frr([1.0], 0.01)
