"""Defect regions: connected components above the pixel threshold, in original image pixels."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from edgead.bundle.manifest import Normalization
from edgead.runtime.pipeline import judged
from edgead.runtime.postprocess import overlay, verdict
from edgead.runtime.regions import MAX_REGIONS, Region, VerdictRules, find_regions


def two_blobs() -> np.ndarray:
    amap = np.zeros((100, 100), np.float32)
    amap[10:20, 10:30] = 5.0  # 200 map pixels, peak 5
    amap[15, 15] = 7.0
    amap[60:62, 70:72] = 4.0  # 4 map pixels
    return amap


def test_regions_are_components_scaled_to_the_original_image():
    regions = find_regions(two_blobs(), 3.0, image_size=(400, 200))  # 4x taller, 2x wider
    assert len(regions) == 2
    big, small = regions  # largest peak first
    assert big == Region(x=20, y=40, width=40, height=40, area=200 * 8, peak=7.0)
    assert small.area == 4 * 8 and small.peak == 4.0 and (small.x, small.y) == (140, 240)
    # without a size: map pixels
    assert find_regions(two_blobs(), 3.0)[0].area == 200
    assert find_regions(two_blobs(), 8.0) == [] and find_regions(two_blobs(), None) == []


def test_min_area_drops_small_regions_and_rules_can_require_one():
    amap = two_blobs()
    kept = find_regions(amap, 3.0, image_size=(400, 200), min_area=100)
    assert [r.peak for r in kept] == [7.0]
    norm = Normalization(image_threshold=1.0, pixel_threshold=3.0)
    need = VerdictRules(min_region_area=10_000, require_region=True)
    assert verdict(2.0, norm, [], need) == "good"  # over the threshold, no region left
    assert verdict(2.0, norm, kept, need) == "anomalous"
    assert verdict(2.0, norm, [], VerdictRules()) == "anomalous"  # the default: score alone
    assert verdict(0.5, norm, kept, need) == "good"
    with pytest.raises(ValueError, match="min_region_area -1"):
        VerdictRules(min_region_area=-1)


def test_a_noisy_map_reports_at_most_the_cap():
    rng = np.random.default_rng(0)
    amap = (rng.random((200, 200)) > 0.97).astype(np.float32)
    assert len(find_regions(amap, 0.5)) == MAX_REGIONS


def test_judged_predictions_carry_regions_and_the_rows_hold_them():
    from edgead.cli.output import ResultWriter, prediction_row

    norm = Normalization(image_threshold=1.0, pixel_threshold=3.0, image_min=0.0, image_max=10.0)
    preds = judged(np.array([7.0]), [two_blobs()], norm, ["a.png"], [(400, 200)], VerdictRules(100))
    p = preds[0]
    assert p.label == "anomalous" and [r.area for r in p.regions] == [1600]
    row = prediction_row(p)
    assert row["largest_region_area"] == 1600
    buf = io.StringIO()
    ResultWriter(buf, "csv").write(row)
    cell = next(csv.DictReader(io.StringIO(buf.getvalue())))["regions"]
    assert json.loads(cell)[0] == {
        "x": 20,
        "y": 40,
        "width": 40,
        "height": 40,
        "area": 1600,
        "peak": 7.0,
    }
    buf = io.StringIO()
    ResultWriter(buf, "jsonl").write(row)
    assert json.loads(buf.getvalue())["regions"][0]["area"] == 1600
    # the overlay draws the boxes (red) at the original size
    image = np.zeros((400, 200, 3), np.uint8)
    drawn = overlay(image, two_blobs(), norm, regions=p.regions)
    assert drawn.shape == (400, 200, 3) and (drawn[40, 20:60] == (0, 0, 255)).all()
