"""Writing bundles atomically and reading them back with verification.

Writing: everything goes into a temporary sibling folder, each file is flushed and fsynced,
checksums are taken from what is on disk, and only then is the folder renamed into place.
A crash leaves either the old bundle or the new one, never half of one.

Reading: the manifest must parse, have a compatible schema version and match its own digest
(``edgead.bundle.integrity``: an edit names the fields it changed); every artifact must exist
with the recorded size and sha256; with a public key, the bundle must carry a valid signature.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgead.bundle.integrity import check_manifest_digest
from edgead.bundle.manifest import MANIFEST_NAME, SCHEMA_VERSION, Artifact, Manifest
from edgead.errors import BundleError

log = logging.getLogger(__name__)

REEXPORT_HINT = "re-export it with `edgead export <detector> ... --out BUNDLE`"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class BundleWriter:
    """Collects artifacts in a staging folder; :meth:`commit` moves it into place atomically."""

    def __init__(self, staging: Path):
        self.staging = staging
        self.artifacts: list[Artifact] = []

    def path(self, name: str) -> Path:
        """Where to write an artifact called ``name`` (relative path inside the bundle)."""
        target = self.staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def add(
        self, name: str, role: str, fmt: str, precision: str | None = None, **meta: object
    ) -> Artifact:
        """Register a file already written at ``self.path(name)``; checksums it from disk."""
        target = self.staging / name
        if not target.is_file():
            raise BundleError(f"{target}: artifact was not written")
        _fsync_file(target)
        artifact = Artifact(
            path=name,
            role=role,
            format=fmt,
            sha256=sha256_file(target),
            size=target.stat().st_size,
            precision=precision,
            meta=dict(meta),
        )
        self.artifacts = [a for a in self.artifacts if a.path != name] + [artifact]
        return artifact

    def write_manifest(self, manifest: Manifest) -> None:
        manifest.artifacts = list(self.artifacts)
        manifest.schema_version = SCHEMA_VERSION
        if not manifest.created:
            manifest.created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        target = self.staging / MANIFEST_NAME
        target.write_text(manifest.to_json())
        _fsync_file(target)


def write_file_atomic(path: Path, data: bytes) -> int:
    """Write ``data`` to a temporary sibling, fsync it and rename it over ``path``: readers see
    the old file or the whole new one. Returns the bytes written."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(data)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_staging(out: Path) -> list[Path]:
    """Remove the staging and replaced folders that a killed write to ``out`` left behind
    (``.NAME.staging-PID-*`` and ``.NAME.old-PID`` whose process is gone)."""
    out = Path(out).absolute()
    removed = []
    if not out.parent.is_dir():
        return removed
    for kind in ("staging", "old"):
        for path in out.parent.glob(f".{out.name}.{kind}-*"):
            pid = path.name.removeprefix(f".{out.name}.{kind}-").split("-")[0]
            if pid.isdigit() and (int(pid) == os.getpid() or _alive(int(pid))):
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed %d folder(s) left by an interrupted write to %s", len(removed), out)
    return removed


@contextlib.contextmanager
def atomic_directory(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging folder that replaces ``out`` only if the block finishes cleanly."""
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise BundleError(f"{out}: already exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-{os.getpid()}-", dir=out.parent))
    try:
        yield staging
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(staging, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        with contextlib.suppress(OSError):  # make the rename durable where the OS allows
            fd = os.open(out.parent, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def write_bundle(out: str | Path, overwrite: bool = False) -> Iterator[BundleWriter]:
    """Stage a bundle and move it to ``out`` only if the block finishes without an exception."""
    with atomic_directory(out, overwrite) as staging:
        writer = BundleWriter(staging)
        yield writer
        if not (staging / MANIFEST_NAME).is_file():
            raise BundleError(f"{out}: internal error, bundle has no manifest")


@contextlib.contextmanager
def amend_bundle(root: str | Path) -> Iterator[tuple[BundleWriter, Manifest]]:
    """Add artifacts to a bundle, atomically: the block works on a staged copy (the writer
    holds the manifest's artifacts; write the manifest at the end), which replaces the bundle
    only if the block finishes cleanly."""
    bundle = open_bundle(root)
    with atomic_directory(bundle.root, overwrite=True) as staging:
        for item in bundle.root.iterdir():
            target = staging / item.name
            if item.is_dir():
                shutil.copytree(item, target)
            else:
                shutil.copy2(item, target)
        writer = BundleWriter(staging)
        writer.artifacts = list(bundle.manifest.artifacts)
        yield writer, bundle.manifest


@dataclass
class Bundle:
    """A verified bundle on disk."""

    root: Path
    manifest: Manifest

    def path(self, role: str) -> Path:
        return self.root / self.manifest.artifact(role).path

    def has(self, role: str) -> bool:
        return self.manifest.has_artifact(role)


def _newer_than(version: str, than: str) -> bool:
    try:
        return tuple(int(v) for v in version.split(".")) > tuple(int(v) for v in than.split("."))
    except ValueError:
        return True  # an unreadable version claims nothing older: the digest is required


_said_undigested: set[Path] = set()


def _say_undigested(path: Path) -> None:
    """Bundles written before manifests carried a digest load; that edits to them cannot be
    detected is said once per bundle."""
    if path in _said_undigested:
        return
    _said_undigested.add(path)
    log.warning(
        "%s: written by an older edgead without a manifest digest: an edit to it cannot be "
        "detected; `edgead calibrate` or a re-export adds one",
        path,
    )


def read_manifest(root: str | Path) -> Manifest:
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"{root}: no bundle folder here; create one with `edgead export`")
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path}: missing; {REEXPORT_HINT}")
    try:
        data = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc}); {REEXPORT_HINT}") from exc
    version = str(data.get("schema_version", "")) if isinstance(data, dict) else ""
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise BundleError(
            f"{manifest_path}: schema version {version or '(none)'} is not supported by this "
            f"edgead (reads {SCHEMA_VERSION.split('.')[0]}.x); {REEXPORT_HINT} with this version"
        )
    if "digest" in data or _newer_than(version, "1.1"):
        check_manifest_digest(data, manifest_path, REEXPORT_HINT)
    else:
        _say_undigested(manifest_path)
    try:
        return Manifest.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{manifest_path}: malformed manifest ({exc}); {REEXPORT_HINT}") from exc


def open_bundle(
    root: str | Path, verify: bool = True, public_key: str | Path | None = None
) -> Bundle:
    """Read a bundle's manifest and (by default) verify every artifact's size and checksum;
    with ``public_key``, also that the bundle is signed by its holder."""
    root = Path(root)
    manifest = read_manifest(root)
    if verify:
        for artifact in manifest.artifacts:
            verify_artifact(root, artifact)
    if public_key is not None:
        from edgead.bundle.integrity import verify_signature

        verify_signature(root, public_key)
    return Bundle(root, manifest)


def verify_artifact(root: Path, artifact: Artifact) -> None:
    path = root / artifact.path
    if not path.is_file():
        raise BundleError(f"{path}: missing {artifact.role} file; {REEXPORT_HINT}")
    size = path.stat().st_size
    if size != artifact.size:
        raise BundleError(
            f"{path}: {artifact.role} file is {size} bytes, the manifest says {artifact.size} "
            f"(truncated or replaced); {REEXPORT_HINT}"
        )
    digest = sha256_file(path)
    if digest != artifact.sha256:
        raise BundleError(
            f"{path}: {artifact.role} file checksum does not match the manifest "
            f"(modified after export); {REEXPORT_HINT}"
        )
