"""Many products, one command: ``edgead export-many PRODUCTS.yaml`` fits and exports a bundle
per product as Ray tasks (ray.io), on this machine or on a Ray cluster.

The products file::

    defaults:                 # optional: options every product starts from
      detector: patchcore
      options: {image_size: 224}
    products:
      - name: tire
        data: /data/tire      # MVTec layout or a plain folder of good images
        bundle: bundles/tire  # optional; default: <output>/<name>
        detector: padim       # optional; default: defaults.detector
        options: {coreset_chunk: 100000}   # the options of `edgead export <detector>`

Each product runs ``edgead export`` in a process of its own on a Ray worker (its log in a file,
its failure its own), with the threads its share of the cores gives it. Relative paths are
taken from the products file's folder. Data and bundle paths must be the same paths on the
machine that submits and on every worker (a shared file system on a cluster): they are checked
before anything is submitted (``edgead.cli.many``), and again on the worker before it fits.

A finished bundle is not refitted: ``edgead export`` records a fingerprint of the training data
(every file's content), the detector, its resolved options and the edgead version in the
manifest (``fit.fingerprint``); a product whose bundle holds the fingerprint it would get is
skipped. Ray (not hand-written process pools): the same code runs on one machine and on a
cluster, with per-task resources, retries and logs.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgead.errors import EdgeadError

# the detector of a product that names none, in the product or the file's defaults
DEFAULT_DETECTOR = "patchcore"
# options export-many sets itself for every product
RESERVED = {"data", "model", "out", "overwrite", "threads", "quiet"}


@dataclass
class Product:
    """One product of the products file, checked and resolved."""

    name: str
    detector: str
    data: str
    bundle: str
    args: list[str]
    fingerprint: str
    log: str


@dataclass
class Outcome:
    """What became of one product (a row of the results table)."""

    product: str
    detector: str
    status: str  # done, skipped (bundle up to date), failed
    bundle: str
    log: str = ""
    seconds: float | None = None
    image_rocauc: float | None = None
    pixel_rocauc: float | None = None
    image_threshold: float | None = None
    error: str = ""
    host: str = ""


def failed(product: Product, error: str, **kw: Any) -> Outcome:
    """The results row of a product that failed (on its worker, or as a Ray task)."""
    return Outcome(product.name, product.detector, "failed", product.bundle, error=error, **kw)


def data_digest(data: Path) -> list[tuple[str, str]]:
    """(relative path, content digest) of every file under ``data``, sorted."""
    from edgead.data.images import file_digest

    files = sorted(p for p in data.rglob("*") if p.is_file() and not p.name.startswith("."))
    return [(str(p.relative_to(data)), file_digest(p)) for p in files]


def fingerprint(detector: str, data: str | Path, options: dict[str, Any]) -> str:
    """What a bundle was fitted from: data content, detector, resolved options, version."""
    import edgead

    record = {
        "edgead": edgead.__version__,
        "detector": detector,
        "options": {k: v for k, v in sorted(options.items()) if k not in RESERVED},
        "data": data_digest(Path(data)),
    }
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def bundle_fingerprint(bundle: Path) -> str | None:
    try:
        manifest = json.loads((bundle / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return (manifest.get("fit") or {}).get("fingerprint")


def outcome_from_bundle(product: Product, status: str, **kw: Any) -> Outcome:
    """The results row of a product whose bundle is written: figures from its manifest."""
    manifest = json.loads((Path(product.bundle) / "manifest.json").read_text())
    metrics = manifest.get("metrics") or {}
    norm = manifest.get("normalization") or {}
    return Outcome(
        product.name,
        product.detector,
        status,
        product.bundle,
        log=product.log,
        image_rocauc=metrics.get("image_rocauc"),
        pixel_rocauc=metrics.get("pixel_rocauc"),
        image_threshold=norm.get("image_threshold"),
        host=socket.gethostname(),
        **kw,
    )


def run_product(product: Product, threads: int) -> Outcome:
    """Fit and export one product in a process of its own (on a Ray worker, or here)."""
    host = socket.gethostname()
    data, bundle, log = Path(product.data), Path(product.bundle), Path(product.log)
    if not data.is_dir():
        return failed(
            product,
            f"{data}: not found on worker {host} (data must be on a path every worker reads)",
            host=host,
        )
    if bundle_fingerprint(bundle) == product.fingerprint:
        return outcome_from_bundle(product, "skipped")
    log.parent.mkdir(parents=True, exist_ok=True)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "edgead",
        "export",
        product.detector,
        "--data",
        product.data,
        "--out",
        product.bundle,
        "--overwrite",
        "--threads",
        str(threads),
        *product.args,
    ]
    t = time.perf_counter()
    with log.open("w") as f:
        f.write(" ".join(command) + "\n")
        f.flush()
        rc = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, check=False).returncode
    seconds = round(time.perf_counter() - t, 1)
    if rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        error = f"export exited {rc}: " + " | ".join(tail)
        return failed(product, error, log=product.log, seconds=seconds, host=host)
    return outcome_from_bundle(product, "done", seconds=seconds)


def run_all(
    products: list[Product | Outcome],
    address: str | None,
    threads: int,
    progress: Callable[[Outcome, int, int], None],
) -> list[Outcome]:
    """Every checked product as a Ray task asking for ``threads`` CPUs (Ray runs as many at
    once as the cluster's CPUs hold), on a local Ray of this process's cores when no
    ``address`` is given; outcomes in the products file's order."""
    try:
        import ray
    except ImportError as exc:
        raise EdgeadError("export-many runs on Ray: pip install 'edgead[ray]'") from exc
    from edgead.threads import usable_cores

    todo = [p for p in products if isinstance(p, Product)]
    results: dict[str, Outcome] = {p.product: p for p in products if isinstance(p, Outcome)}
    total = len(products)
    for outcome in results.values():
        progress(outcome, len(results), total)
    if todo:
        if address is None:
            # a Ray of this machine only: Ray maps 127.0.0.1 to the host's address and binds its
            # servers there unless it runs as a local-only (non-cluster) node
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            ray.init(
                num_cpus=usable_cores(),
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                logging_level="WARNING",
                log_to_driver=False,
            )
        else:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        try:
            task = ray.remote(num_cpus=threads, max_retries=0)(run_product)
            pending = {task.remote(p, threads): p for p in todo}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                product = pending.pop(ready[0])
                try:
                    outcome = ray.get(ready[0])
                except Exception as exc:  # a worker that died: that product fails, not the run
                    outcome = failed(product, f"Ray task failed: {exc}", log=product.log)
                results[product.name] = outcome
                progress(outcome, len(results), total)
        finally:
            ray.shutdown()
    order = [p.name if isinstance(p, Product) else p.product for p in products]
    return [results[name] for name in order]


COLUMNS = [
    ("product", "product"),
    ("detector", "detector"),
    ("status", "status"),
    ("fit + export (s)", "seconds"),
    ("image ROCAUC", "image_rocauc"),
    ("pixel ROCAUC", "pixel_rocauc"),
    ("threshold", "image_threshold"),
    ("bundle", "bundle"),
    ("log / error", "error"),
]


def _cell(outcome: Outcome, key: str) -> str:
    value = getattr(outcome, key)
    if key == "error":
        return outcome.error or outcome.log
    if value is None:
        return ""
    if key.endswith("rocauc"):
        return f"{100 * value:.2f}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_results(outcomes: list[Outcome], prefix: Path) -> list[Path]:
    """The results table as Markdown, JSON and HTML (``prefix``.md/.json/.html)."""
    import html

    from edgead.bundle.io import write_file_atomic

    prefix.parent.mkdir(parents=True, exist_ok=True)
    head = [title for title, _ in COLUMNS]
    rows = [[_cell(o, key) for _, key in COLUMNS] for o in outcomes]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    page = (
        "<!doctype html><meta charset=utf-8><title>edgead export-many</title>"
        "<style>td,th{padding:2px 8px;border-bottom:1px solid #ccc;text-align:left}</style>"
        f"<table><tr>{cells}</tr>{body}</table>"
    )
    paths = [prefix.with_suffix(s) for s in (".md", ".json", ".html")]
    texts = ["\n".join(md), json.dumps([asdict(o) for o in outcomes], indent=2), page]
    for path, text in zip(paths, texts, strict=True):
        write_file_atomic(path, (text + "\n").encode())
    return paths
