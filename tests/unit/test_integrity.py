"""The manifest's digest names what an edit changed; signatures say who made a bundle."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from edgead.bundle.integrity import SIGNATURE_NAME, manifest_digest, new_key, verify_signature
from edgead.bundle.io import open_bundle
from edgead.errors import BundleError

REPO = Path(__file__).resolve().parents[2]
OLD_BUNDLE = REPO / "tests" / "fixtures" / "bundle_v1_0_patchcore"


@pytest.fixture()
def bundle(tmp_path) -> Path:
    """The old fixture bundle, rewritten by this edgead (so it carries a digest)."""
    from edgead.bundle.io import read_manifest

    path = tmp_path / "bundle"
    shutil.copytree(OLD_BUNDLE, path)
    m = read_manifest(path)
    m.schema_version = "1.2"
    (path / "manifest.json").write_text(m.to_json())
    return path


def edit(path: Path, change) -> None:
    data = json.loads((path / "manifest.json").read_text())
    change(data)
    (path / "manifest.json").write_text(json.dumps(data, indent=2))


def test_the_digest_round_trips_and_an_edit_is_named(bundle):
    assert open_bundle(bundle).manifest.digest["algorithm"] == "sha256"
    data = json.loads((bundle / "manifest.json").read_text())
    assert manifest_digest(data)["manifest"] == data["digest"]["manifest"]

    def threshold(d):
        d["normalization"]["image_threshold"] += 10.0

    edit(bundle, threshold)
    with pytest.raises(BundleError, match=r"normalization.image_threshold changed after"):
        open_bundle(bundle)


def test_channel_order_and_a_stripped_digest_are_refused(bundle):
    edit(bundle, lambda d: d["input"].update(channel_order="BGR"))
    with pytest.raises(BundleError, match=r"input.channel_order changed"):
        open_bundle(bundle)
    edit(bundle, lambda d: d.pop("digest"))
    with pytest.raises(BundleError, match="digest"):
        open_bundle(bundle)


def test_a_bundle_written_before_digests_loads_and_says_so_once(tmp_path, caplog):
    path = tmp_path / "old"
    shutil.copytree(OLD_BUNDLE, path)
    with caplog.at_level(logging.WARNING):
        open_bundle(path)
        open_bundle(path)
    said = [r for r in caplog.records if "without a manifest digest" in r.getMessage()]
    assert len(said) == 1


def test_sign_and_verify(bundle, tmp_path):
    pytest.importorskip("cryptography")
    from edgead.bundle.signing import sign_bundle

    private, public = new_key(tmp_path / "site.key")
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(BundleError, match="never overwritten"):
        new_key(tmp_path / "site.key")
    with pytest.raises(BundleError, match="not signed"):
        open_bundle(bundle, public_key=public)
    record = sign_bundle(bundle, private, signer="line 3")
    assert record["signer"] == "line 3" and (bundle / SIGNATURE_NAME).is_file()
    assert open_bundle(bundle, public_key=public).manifest.detector == "patchcore"
    # another site's key
    _, other = new_key(tmp_path / "other.key")
    with pytest.raises(BundleError, match="not made by the site that holds that key"):
        verify_signature(bundle, other)
    # changed after signing (with a valid digest: only the signature can tell)
    from edgead.bundle.io import read_manifest

    m = read_manifest(bundle)
    m.normalization.image_threshold = 1.0
    (bundle / "manifest.json").write_text(m.to_json())
    with pytest.raises(BundleError, match="changed after it was signed"):
        open_bundle(bundle, public_key=public)
    with pytest.raises(BundleError, match="not a readable public key"):
        verify_signature(bundle, private.with_name("missing.pub"))
