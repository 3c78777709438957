"""Which good images are held out to set the threshold on: the newest, or whole runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgead.data.holdout import detect_runs, natural_key, split_holdout_paths
from edgead.errors import DatasetError


def files(tmp_path: Path, names: list[str]) -> list[Path]:
    out = []
    for name in names:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
        out.append(p)
    return out


def test_newest_holds_out_the_last_images_in_natural_name_order(tmp_path):
    paths = files(tmp_path, [f"img{i}.png" for i in range(20)])  # img2 < img10
    fit, held, source = split_holdout_paths(paths, 0.1, "newest", root=tmp_path)
    assert sorted(p.name for p in held) == ["img18.png", "img19.png"]
    assert len(fit) == 18 and "newest 10% by name (img18.png on)" in source
    assert natural_key("img9") < natural_key("img10")


def test_auto_without_runs_is_the_newest_by_name(tmp_path):
    paths = files(tmp_path, [f"{i:03d}.png" for i in range(30)])
    _, held, source = split_holdout_paths(paths, 0.1, root=tmp_path)
    assert [p.name for p in held] == ["027.png", "028.png", "029.png"]
    assert "by name" in source


def test_auto_holds_out_the_newest_whole_run_from_file_name_prefixes(tmp_path):
    names = [f"2026-05-{d:02d}_{i:04d}.png" for d in (1, 2, 3, 4) for i in range(10)]
    paths = files(tmp_path, names)
    runs, what = detect_runs(paths, tmp_path)
    assert len(runs) == 4 and what == "file-name prefixes"
    fit, held, source = split_holdout_paths(paths, 0.1, root=tmp_path)
    # 10% is 4 images, but the run is kept whole: all ten of the newest day
    assert {p.name[:10] for p in held} == {"2026-05-04"} and len(held) == 10
    assert not {p.name[:10] for p in fit} & {"2026-05-04"}
    assert "newest of 4 runs by file-name prefixes (2026-05-04)" in source


def test_auto_reads_runs_from_subfolders(tmp_path):
    paths = files(tmp_path, [f"run{r}/{i}.png" for r in (1, 2, 10) for i in range(8)])
    _, held, source = split_holdout_paths(paths, 0.2, root=tmp_path)
    assert {p.parent.name for p in held} == {"run10"} and "subfolders" in source


def test_auto_never_holds_out_more_than_half_to_keep_a_run_whole(tmp_path):
    # three runs, the newest holding most images: the newest images instead
    names = [f"a_{i}.png" for i in range(3)] + [f"b_{i}.png" for i in range(3)]
    names += [f"c_{i}.png" for i in range(20)]
    paths = files(tmp_path, names)
    _, held, source = split_holdout_paths(paths, 0.1, root=tmp_path)
    assert len(held) == 3 and "by name" in source


def test_group_regex_keeps_runs_whole_and_refuses_what_it_cannot_place(tmp_path):
    names = [f"lot{lot}-cam-{i}.png" for lot in (7, 8, 9) for i in range(5)]
    paths = files(tmp_path, names)
    fit, held, source = split_holdout_paths(paths, 0.1, r"group:lot(\d+)", root=tmp_path)
    assert {p.name[:4] for p in held} == {"lot9"} and len(fit) == 10
    assert "runs by group:lot(\\d+) (9)" in source
    stray = files(tmp_path, ["other.png"])
    with pytest.raises(DatasetError, match="1 of 16 images of train/good match no run"):
        split_holdout_paths(paths + stray, 0.1, r"group:lot(\d+)", root=tmp_path)
    with pytest.raises(DatasetError, match="all images of train/good are one run"):
        split_holdout_paths(paths, 0.1, r"group:lot", root=tmp_path)
    with pytest.raises(DatasetError, match="not a regular expression"):
        split_holdout_paths(paths, 0.1, "group:(", root=tmp_path)
    with pytest.raises(DatasetError, match="expected one of auto, newest"):
        split_holdout_paths(paths, 0.1, "oldest", root=tmp_path)


def test_mtime_and_random(tmp_path):
    paths = files(tmp_path, [f"{i}.png" for i in range(10)])
    for i, p in enumerate(paths):  # written in reverse order of their names
        os.utime(p, ns=(10**18 - i * 10**9, 10**18 - i * 10**9))
    _, held, _ = split_holdout_paths(paths, 0.2, "mtime", root=tmp_path)
    assert sorted(p.name for p in held) == ["0.png", "1.png"]
    _, a, source = split_holdout_paths(paths, 0.2, "random", seed=1, root=tmp_path)
    _, b, _ = split_holdout_paths(paths, 0.2, "random", seed=1, root=tmp_path)
    assert a == b and len(a) == 2 and "at random (20%, seed 1)" in source
    assert split_holdout_paths(paths, 0.0, root=tmp_path)[1] == []
