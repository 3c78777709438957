"""``edgead export-many PRODUCTS.yaml``: a bundle per product, as Ray tasks (``edgead.many``)."""

from __future__ import annotations

from pathlib import Path

import click

from edgead.cli.main import EXIT_ERROR, main


@main.command("export-many")
@click.argument("products", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder of the bundles (those not given a path of their own), logs/ and the results "
    "table (results.md, .json, .html) [default: bundles/ beside PRODUCTS].",
)
@click.option(
    "--address",
    default=None,
    help="A Ray cluster: ray://HOST:10001 (Ray Client), HOST:6379, or 'auto' (the cluster this "
    "machine is part of). Default: a Ray of this machine's cores, started and stopped here.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Products fitted at once on this machine; each gets its share of the cores as threads.",
)
@click.option(
    "--threads",
    "threads_per_product",
    type=click.IntRange(min=1),
    default=None,
    help="CPUs (threads) each product asks of Ray [default: this machine's cores / --workers].",
)
def export_many(
    products: str,
    out: str | None,
    address: str | None,
    workers: int,
    threads_per_product: int | None,
) -> None:
    """Fit and export a bundle for every product of PRODUCTS (YAML: data folder, detector,
    options, bundle path per product; see the docs). Every product is checked before any is
    submitted; one product's failure is reported with its log and does not stop the others; a
    bundle whose manifest holds the fingerprint of the same data and options is not refitted.
    Data and bundle paths must be readable at the same path on every Ray worker."""
    from edgead.many import load_products, run_all, write_results
    from edgead.threads import usable_cores

    products_path = Path(products).resolve()
    output = Path(out).resolve() if out else products_path.parent / "bundles"
    checked = load_products(products_path, output)
    threads = threads_per_product or max(1, usable_cores() // workers)
    click.echo(f"{len(checked)} products, {threads} threads each; logs in {output / 'logs'}")

    def progress(outcome, done: int, total: int) -> None:
        figures = ""
        if outcome.image_rocauc is not None:
            figures = f", image ROCAUC {100 * outcome.image_rocauc:.2f}"
        took = f" in {outcome.seconds:.0f} s" if outcome.seconds is not None else ""
        line = f"[{done}/{total}] {outcome.product}: {outcome.status}{took}{figures}"
        if outcome.error:
            line += f"\n    {outcome.error}"
        click.echo(line, err=outcome.status == "failed")

    outcomes = run_all(checked, address, threads, progress)
    paths = write_results(outcomes, output / "results")
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    click.echo(
        f"{counts['done']} done, {counts['skipped']} up to date, {counts['failed']} failed; "
        f"results: {paths[0]} (.json, .html)"
    )
    if counts["failed"]:
        raise SystemExit(EXIT_ERROR)
