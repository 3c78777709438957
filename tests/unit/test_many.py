"""The products file of ``edgead export-many``: every product checked before any is submitted,
the fingerprint that decides a refit, the results table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgead.cli.many import load_products
from edgead.errors import EdgeadError
from edgead.many import Outcome, Product, fingerprint, write_results


def category(root: Path) -> Path:
    good = root / "train" / "good"
    good.mkdir(parents=True)
    (good / "0.png").write_bytes(b"a")
    (good / "1.png").write_bytes(b"b")
    return root


def products_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "products.yaml"
    path.write_text(body)
    return path


def test_products_resolve_paths_options_and_defaults(tmp_path: Path):
    category(tmp_path / "a")
    path = products_file(
        tmp_path,
        """
defaults: {detector: padim, options: {image_size: 128}}
products:
  - {name: one, data: a, options: {image-size: 160, batch_size: 4}}
  - {data: a, detector: patchcore, bundle: elsewhere/b, options: {coreset_ratio: 0.05}}
""",
    )
    one, two = load_products(path, tmp_path / "out")
    assert isinstance(one, Product) and isinstance(two, Product)
    assert one.detector == "padim" and one.data == str(tmp_path / "a")
    assert one.bundle == str(tmp_path / "out" / "one")
    assert one.args == ["--image-size", "160", "--batch-size", "4"]
    assert two.name == "a" and two.bundle == str(tmp_path / "elsewhere" / "b")
    assert two.args == ["--image-size", "128", "--coreset-ratio", "0.05"]
    assert one.fingerprint != two.fingerprint


@pytest.mark.parametrize(
    "item, words",
    [
        ("{name: x, data: a, detector: nope}", ["unknown detector 'nope'", "padim"]),
        ("{name: x, data: a, options: {colour: red}}", ["option 'colour'", "image_size"]),
        ("{name: x, data: a, options: {threads: 3}}", ["option 'threads'", "set by export-many"]),
        ("{name: x, data: a, options: {image_size: big}}", ["product 'x'", "big"]),
        ("{name: x, data: missing}", ["product 'x'", "missing: no such folder"]),
    ],
)
def test_a_bad_product_is_refused_before_anything_runs_and_says_why(tmp_path, item, words):
    category(tmp_path / "a")
    path = products_file(tmp_path, f"products:\n  - {item}\n  - {{name: ok, data: a}}\n")
    bad, ok = load_products(path, tmp_path / "out")
    assert isinstance(bad, Outcome) and bad.status == "failed"
    assert str(path) in bad.error
    for word in words:
        assert word in bad.error
    assert isinstance(ok, Product)  # the others go on


def test_a_malformed_products_file_names_the_file(tmp_path: Path):
    path = products_file(tmp_path, "products: {a: 1}\n")
    with pytest.raises(EdgeadError, match=r"products\.yaml: expected a mapping with a list"):
        load_products(path, tmp_path)
    path.write_text("products:\n  - {name: a, data: x}\n  - {name: a, data: y}\n")
    with pytest.raises(EdgeadError, match="'a' appears twice"):
        load_products(path, tmp_path)


def test_the_fingerprint_follows_data_content_and_options_only(tmp_path: Path):
    data = category(tmp_path / "a")
    base = fingerprint("patchcore", data, {"image_size": (224, 224), "out": "x"})
    assert base == fingerprint("patchcore", data, {"image_size": (224, 224), "out": "y"})
    assert base != fingerprint("patchcore", data, {"image_size": (256, 256)})
    assert base != fingerprint("padim", data, {"image_size": (224, 224)})
    (data / "train" / "good" / "1.png").write_bytes(b"c")  # same name, other content
    assert base != fingerprint("patchcore", data, {"image_size": (224, 224)})


def test_results_are_written_as_markdown_json_and_html(tmp_path: Path):
    outcomes = [
        Outcome(
            "a", "patchcore", "done", "/b/a", seconds=12.5, image_rocauc=0.987, image_threshold=3.2
        ),
        Outcome("b", "padim", "failed", "/b/b", error="x: no such folder"),
    ]
    md, js, page = write_results(outcomes, tmp_path / "results")
    assert "| a | patchcore | done | 12.5 | 98.70 |  | 3.2 | /b/a |" in md.read_text()
    assert json.loads(js.read_text())[1]["error"] == "x: no such folder"
    assert "<td>x: no such folder</td>" in page.read_text()
