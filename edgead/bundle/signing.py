"""``edgead sign``: an Ed25519 signature over a verified bundle (edgead.bundle.integrity)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path

from edgead.bundle.integrity import SIGNATURE_NAME, key_id, load_key, raw_public
from edgead.bundle.io import open_bundle, write_file_atomic


def sign_bundle(root: str | Path, private_key: str | Path, signer: str = "") -> dict:
    """Sign ``root/manifest.json``; writes ``root/signature.json`` atomically."""
    bundle = open_bundle(root)  # verified first: a broken bundle is not signed
    key = load_key(private_key, private=True)
    manifest = (bundle.root / "manifest.json").read_bytes()
    raw = raw_public(key.public_key())
    record = {
        "algorithm": "Ed25519",
        "signed": "manifest.json",
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "public_key": base64.b64encode(raw).decode(),
        "key_id": key_id(raw),
        "signer": signer,
        "signed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "signature": base64.b64encode(key.sign(manifest)).decode(),
    }
    write_file_atomic(bundle.root / SIGNATURE_NAME, json.dumps(record, indent=1).encode())
    return record
