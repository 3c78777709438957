"""The drift monitor: flag rate, score distribution and median against the calibration's."""

from __future__ import annotations

import numpy as np
import pytest

from edgead.bundle.manifest import Normalization
from edgead.runtime.drift import (
    DriftMonitor,
    DriftReference,
    DriftSettings,
    check_window,
    psi,
)


def reference(n: int = 40, seed: int = 0) -> DriftReference:
    rng = np.random.default_rng(seed)
    scores = np.sort(rng.gumbel(10.0, 1.0, n))
    return DriftReference(tuple(scores), threshold=16.0, target_frr=0.01)


def test_the_reference_comes_from_the_calibration_record_and_old_bundles_have_none():
    import dataclasses

    from edgead.metrics.calibration import calibration_record

    record = calibration_record([9.0, 10.0, 11.0], [1.0, 2.0, 3.0], [0.0] * 3, 0.01, "good/")
    norm = Normalization(image_threshold=16.0, calibration=record)
    ref = DriftReference.from_normalization(norm)
    assert ref.scores == (9.0, 10.0, 11.0) and ref.threshold == 16.0 and ref.median == 10.0
    # a record written before the reference scores were kept reads back without them
    written = dataclasses.replace(record, scores=[]).to_dict()
    del written["scores"]
    old = Normalization(image_threshold=16.0, calibration=written)
    assert DriftReference.from_normalization(old) is None
    monitor = DriftMonitor.for_normalization(old)
    assert not monitor.enabled and monitor.add(20.0, True) is None
    assert monitor.status().state == "off"


def test_flag_rate_3_in_100_at_1_percent_is_no_alarm_and_12_is():
    ref = reference()
    rng = np.random.default_rng(1)
    window = rng.gumbel(10.0, 1.0, 100)
    calm = check_window(ref, window, 3, DriftSettings())
    assert calm.state == "ok" and calm.flag_p_value > 0.05 and calm.alarms == []
    loud = check_window(ref, window, 12, DriftSettings())
    assert loud.state == "drift" and loud.flag_p_value < 1e-6
    assert "flag rate 12.0% over the promised 1.0%" in loud.alarms[0]
    assert "recalibrate" in loud.advice


def test_no_drift_rarely_alarms_and_a_shift_always_does():
    """Same distribution: at most 1 alarm in 100 windows (references of 25-60 images); scores
    up by 3 scale units and 20% wider (8% flagged where 1% was promised): an alarm in every
    window."""
    rng = np.random.default_rng(2)
    settings = DriftSettings()
    false_alarms = caught = 0
    for i in range(100):
        ref = reference(n=int(rng.integers(25, 61)), seed=100 + i)
        same = rng.gumbel(10.0, 1.0, 500)
        flagged = int((same >= ref.threshold).sum())
        false_alarms += check_window(ref, same, flagged, settings).state == "drift"
        moved = rng.gumbel(13.0, 1.2, 500)
        caught += check_window(ref, moved, int((moved >= 16.0).sum()), settings).state == "drift"
    assert false_alarms <= 1
    assert caught == 100


def test_psi_and_median_shift():
    ref = reference(60)
    edges = ref.bin_edges()
    assert len(edges) == 5  # 60 images: 6 bins
    r = np.asarray(ref.scores)
    assert psi(r, r, edges) == pytest.approx(0.0)
    assert psi(r, r + 3.0, edges) > 1.0
    # the median moved 60% of the way to the threshold: the median check alone fires
    span = ref.threshold - ref.median
    window = np.full(200, ref.median + 0.6 * span)
    status = check_window(ref, window, 0, DriftSettings(psi_limit=1e9))
    assert status.median_shift == pytest.approx(0.6)
    assert status.state == "drift" and "towards the threshold" in status.alarms[0]
    down = check_window(ref, np.full(200, ref.median - 0.6 * span), 0, DriftSettings(psi_limit=1e9))
    assert "down, away from the threshold" in down.alarms[0]


def test_scores_that_moved_without_breaking_the_promise_are_a_notice_not_the_alarm():
    """The window sits a little higher than the reference (a third of the way to the
    threshold), nothing is flagged: PSI says the distribution moved; the promise holds."""
    ref = reference(60)
    span = ref.threshold - ref.median
    rng = np.random.default_rng(4)
    window = ref.median + 0.3 * span + rng.normal(0, 0.2, 500)
    status = check_window(ref, window, 0, DriftSettings())
    assert status.state == "shift" and status.alarms == []
    assert "score distribution moved (PSI" in status.notices[0]
    assert "the promise holds" in status.advice


def test_the_monitor_warms_up_then_checks_every_n_parts():
    monitor = DriftMonitor(reference(), DriftSettings(window=50, min_parts=20, check_every=5))
    rng = np.random.default_rng(3)
    ran = []
    for i in range(40):
        if monitor.add(float(rng.gumbel(10.0, 1.0)), False) is not None:
            ran.append(i + 1)
        if i + 1 < 20:
            assert monitor.status().state == "warming up"
    assert ran == [20, 25, 30, 35, 40] and monitor.status().state == "ok"
    assert monitor.status().checked_at_part == 40 and monitor.status().parts == 40
    for _ in range(60):  # a run of flagged parts: the window fills with them
        monitor.add(30.0, True)
    assert monitor.status().state == "drift" and monitor.status().parts == 50


def test_settings_are_checked():
    with pytest.raises(ValueError, match="min_parts 600"):
        DriftSettings(window=500, min_parts=600)
    with pytest.raises(ValueError, match="alpha"):
        DriftSettings(alpha=0.7)
