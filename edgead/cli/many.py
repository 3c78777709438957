"""``edgead export-many PRODUCTS.yaml``: a bundle per product, as Ray tasks (``edgead.many``);
here the products file is read and every product checked against ``edgead export``'s own
options before any is submitted."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from edgead.cli.main import EXIT_ERROR, main
from edgead.errors import EdgeadError
from edgead.many import DEFAULT_DETECTOR, RESERVED, Outcome, Product, fingerprint


def option_args(command: Any, options: dict[str, Any], where: str) -> list[str]:
    """The command-line arguments of ``options`` (option names as in the products file:
    ``image_size`` or ``image-size``) for ``edgead export <detector>``."""
    params = {p.name: p for p in command.params if p.name}
    args: list[str] = []
    for key, value in options.items():
        name = str(key).replace("-", "_")
        param = params.get(name)
        if param is None or name in RESERVED:
            known = ", ".join(sorted(n for n in params if n not in RESERVED))
            reason = "set by export-many" if name in RESERVED else f"known: {known}"
            raise EdgeadError(f"{where}: option {key!r} is not one of the export's ({reason})")
        flag = param.opts[0]
        if getattr(param, "is_flag", False):
            if value:
                args.append(flag)
            elif param.secondary_opts:
                args.append(param.secondary_opts[0])
            continue
        values = value if isinstance(value, list | tuple) else [value]
        if getattr(param, "multiple", False) or (param.nargs or 1) != 1:
            for v in values:
                args += [flag, str(v)]
        else:
            args += [flag, ",".join(str(v) for v in values)]
    return args


def resolved_options(command: Any, args: list[str], where: str) -> dict[str, Any]:
    """The export's options as it will see them (click parses ``args``, defaults filled in):
    a bad value fails here, before anything runs."""
    import click

    try:
        ctx = command.make_context(command.name, ["--data", ".", "--out", "x", *args])
    except click.ClickException as exc:
        raise EdgeadError(f"{where}: {exc.format_message()}") from exc
    return dict(ctx.params)


def load_products(path: Path, output: Path) -> list[Product | Outcome]:
    """The products of ``path``, each checked (detector, options, data) before any is
    submitted; a product that fails a check is an Outcome ``failed`` saying why."""
    import yaml

    from edgead.cli.detector_verbs import make_export
    from edgead.detectors.registry import detector_names, get_detector
    from edgead.workflows import check_data

    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise EdgeadError(f"{path}: not a readable YAML products file: {exc}") from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("products"), list):
        raise EdgeadError(f"{path}: expected a mapping with a list under 'products'")
    defaults = spec.get("defaults") or {}
    base = path.parent
    out: list[Product | Outcome] = []
    names: set[str] = set()
    for i, item in enumerate(spec["products"]):
        if not isinstance(item, dict) or "data" not in item:
            raise EdgeadError(f"{path}: products[{i}]: expected a mapping with 'data'")
        name = str(item.get("name") or Path(item["data"]).name)
        if name in names:
            raise EdgeadError(f"{path}: product name {name!r} appears twice")
        names.add(name)
        detector = str(item.get("detector") or defaults.get("detector") or DEFAULT_DETECTOR)
        data = (base / str(item["data"])).resolve()
        bundle = (base / str(item["bundle"])).resolve() if "bundle" in item else output / name
        log = output / "logs" / f"{name}.log"
        where = f"{path}: product {name!r}"
        try:
            if detector not in detector_names():
                known = ", ".join(detector_names())
                raise EdgeadError(f"{where}: unknown detector {detector!r} (known: {known})")
            command = make_export(get_detector(detector))
            options = {
                str(k).replace("-", "_"): v
                for layer in (defaults.get("options"), item.get("options"))
                for k, v in (layer or {}).items()
            }
            args = option_args(command, options, where)
            resolved = resolved_options(command, args, where)
            try:  # the values the detector checks itself (sizes, layers, ranges)
                get_detector(detector).config_from_options(dict(resolved))
            except (ValueError, TypeError, EdgeadError) as exc:
                raise EdgeadError(f"{where}: {exc}") from exc
            try:
                check_data(data)
                if not os.access(data, os.R_OK | os.X_OK):
                    raise EdgeadError(f"{data}: not readable by this user")
            except EdgeadError as exc:
                raise EdgeadError(
                    f"{where}: {exc} (data must be readable here and on workers)"
                ) from exc
            out.append(
                Product(
                    name,
                    detector,
                    str(data),
                    str(bundle),
                    args,
                    fingerprint(detector, data, resolved),
                    str(log),
                )
            )
        except EdgeadError as exc:
            out.append(Outcome(name, detector, "failed", str(bundle), error=str(exc)))
    return out


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
    from edgead.many import run_all, write_results
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
