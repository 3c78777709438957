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
    # the Gumbel's 99% quantile is loc - scale * ln(-ln 0.99) = 10 + 4.6; the threshold is its
    # 95% upper bound (above it), the point estimate near it
    assert t.method == "gumbel" and abs(t.point_value - 14.6) < 1.5 and t.value > t.point_value
    assert t.value >= good.max() and t.estimated_frr < 0.01
    assert t.frr_bound == pytest.approx(0.01, rel=0.02) and t.confidence == 0.95
    assert 0 <= t.frr_interval[0] <= t.estimated_frr <= t.frr_interval[1] <= t.frr_bound
    assert t.images_needed == 299 and not t.model_free and "Gumbel model" in t.basis()
    # many images: no model, an order statistic
    many = threshold_at_frr(rng.gumbel(10.0, 1.0, 5000), 0.01)
    assert many.method == "order statistic" and many.model_free
    assert 14.6 < many.value < 15.3 and many.frr_bound <= 0.01
    # a heavy tail the fit misses: never below the largest held-out score
    tail = threshold_at_frr([*rng.normal(10, 0.1, 24), 20.0], 0.01)
    assert tail.value == 20.0 and "raised" in tail.method
    v = verdicts_at(12.0, [0, 0, 1, 1], [11.0, 13.0, 12.5, 3.0])
    assert (v.false_rejects, v.detections, v.frr, v.detection_rate) == (1, 1, 0.5, 0.5)


@pytest.mark.parametrize("n", [25, 60])
def test_the_threshold_keeps_the_target_with_its_confidence_over_repeated_samples(n):
    """Drawn 200 times from a Gumbel, the true false-reject rate at the threshold is at or below
    the 1% target in about 95% of the draws; at the point estimate's threshold only about half."""
    import numpy as np
    from scipy import stats

    from edgead.metrics.calibration import threshold_at_frr

    rng = np.random.default_rng(7)
    kept = kept_point = 0
    for _ in range(200):
        t = threshold_at_frr(rng.gumbel(3.0, 0.5, n), 0.01, warn=False)
        kept += stats.gumbel_r.sf(t.value, 3.0, 0.5) <= 0.01
        kept_point += stats.gumbel_r.sf(t.point_value, 3.0, 0.5) <= 0.01
    assert 0.90 <= kept / 200 <= 0.99
    assert kept_point / 200 < 0.7


def test_without_a_model_the_order_statistic_keeps_the_target_for_any_distribution():
    import numpy as np
    from scipy import stats

    from edgead.metrics.calibration import images_for_a_bound, threshold_at_frr

    assert images_for_a_bound(0.01, 0.95) == 299
    rng = np.random.default_rng(3)
    kept = 0
    for _ in range(200):  # a heavy, skewed tail no Gumbel describes
        t = threshold_at_frr(rng.lognormal(0.0, 1.0, 400), 0.01)
        assert t.method == "order statistic"
        kept += stats.lognorm.sf(t.value, 1.0) <= 0.01
    assert kept / 200 >= 0.90


def test_threshold_refuses_bad_targets_and_too_few_scores():
    from edgead.errors import EdgeadError
    from edgead.metrics.calibration import threshold_at_frr

    with pytest.raises(EdgeadError, match="--target-frr"):
        threshold_at_frr([1.0, 2.0, 3.0], 0.7)
    with pytest.raises(EdgeadError, match="at least 2"):
        threshold_at_frr([1.0], 0.01)
