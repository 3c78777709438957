"""The manifest's own digest, and optional Ed25519 signatures of whole bundles.

Every artifact is covered by the sha256 the manifest records; the manifest itself is covered
by ``digest``: sha256 of its canonical JSON (sorted keys, no spaces) without the digest, and
one per field (``normalization.image_threshold``, ``input.channel_order``, ...), so that an
edit names what it changed. Writers (export, ``edgead calibrate``) add it as part of writing;
every open checks it. A digest protects against edits and damage, not against someone who
recomputes it: a site that needs to know *who* made a bundle signs it.

Signing (``edgead sign``, ``--require-signature``): an Ed25519 signature (the ``cryptography``
library) over the exact bytes of ``manifest.json``, which hold every artifact's sha256 and the
manifest digest, so the signature covers the whole bundle. It is kept in ``signature.json``
beside the manifest with the signer's public key; a new revision (``edgead calibrate``) is
written unsigned and must be signed again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from edgead.errors import BundleError

SIGNATURE_NAME = "signature.json"
_NO_CRYPTO = "signatures need the cryptography package: pip install 'edgead[sign]'"


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sha(value: Any) -> str:
    return hashlib.sha256(_canonical(value)).hexdigest()


def manifest_digest(data: dict[str, Any]) -> dict[str, Any]:
    """The digest of a manifest's JSON object (its ``digest`` key left out)."""
    body = {k: v for k, v in data.items() if k != "digest"}
    fields: dict[str, str] = {}
    for key, value in body.items():
        if isinstance(value, dict) and value:
            fields.update({f"{key}.{k}": _sha(v) for k, v in value.items()})
        else:
            fields[key] = _sha(value)
    return {"algorithm": "sha256", "manifest": _sha(body), "fields": fields}


def check_manifest_digest(data: dict[str, Any], path: Path, hint: str) -> None:
    """Raise BundleError naming the fields that no longer match the recorded digest."""
    recorded = data.get("digest") or {}
    now = manifest_digest(data)
    if recorded.get("manifest") == now["manifest"]:
        return
    before = recorded.get("fields") or {}
    changed = sorted(
        k for k in set(before) | set(now["fields"]) if before.get(k) != now["fields"].get(k)
    )
    what = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
    raise BundleError(
        f"{path}: {what or 'its digest'} changed after the bundle was written (the manifest's "
        f"digest does not match): edited by hand or damaged. Nothing was run with it; {hint}"
    )


# -- signatures --------------------------------------------------------------------------------
def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise BundleError(_NO_CRYPTO) from exc
    return serialization, ed25519


def new_key(path: str | Path) -> tuple[Path, Path]:
    """A new Ed25519 key pair: ``path`` (private, PEM, mode 0600) and ``path.pub`` (public)."""
    serialization, ed25519 = _crypto()
    path = Path(path)
    public_path = path.with_name(path.name + ".pub")
    for p in (path, public_path):
        if p.exists():
            raise BundleError(f"{p}: already exists; a key is never overwritten")
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path, public_path


def load_key(path: str | Path, private: bool):
    serialization, ed25519 = _crypto()
    path = Path(path)
    try:
        data = path.read_bytes()
        key = (
            serialization.load_pem_private_key(data, password=None)
            if private
            else serialization.load_pem_public_key(data)
        )
    except (OSError, ValueError, TypeError) as exc:
        kind = "private" if private else "public"
        raise BundleError(f"{path}: not a readable {kind} key in PEM ({exc})") from exc
    wanted = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, wanted):
        raise BundleError(f"{path}: not an Ed25519 key (`edgead keygen` makes one)")
    return key


def raw_public(key) -> bytes:
    serialization, _ = _crypto()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(raw_public: bytes) -> str:
    return hashlib.sha256(raw_public).hexdigest()[:16]


def verify_signature(root: str | Path, public_key: str | Path) -> dict:
    """Check that ``root`` is signed by the holder of ``public_key``; the signature record."""
    root = Path(root)
    key = load_key(public_key, private=False)
    from cryptography.exceptions import InvalidSignature

    path = root / SIGNATURE_NAME
    if not path.is_file():
        raise BundleError(
            f"{root}: not signed ({SIGNATURE_NAME} missing) and a signature is required; "
            f"sign it with `edgead sign {root} --key PRIVATE_KEY`"
        )
    try:
        record = json.loads(path.read_text())
        signature = base64.b64decode(record["signature"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{path}: not a readable signature record ({exc})") from exc
    expected = key_id(raw_public(key))
    if record.get("key_id") != expected:
        raise BundleError(
            f"{path}: signed with key {record.get('key_id')}, not with {Path(public_key).name} "
            f"({expected}): not made by the site that holds that key"
        )
    try:
        key.verify(signature, (root / "manifest.json").read_bytes())
    except InvalidSignature as exc:
        raise BundleError(
            f"{path}: the signature does not match manifest.json: the bundle changed after it "
            f"was signed (a recalibration is signed again with `edgead sign`)"
        ) from exc
    return record
