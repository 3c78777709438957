"""PatchCore's own command-line options."""

from __future__ import annotations

import click

from edgead.detectors.options import augment_option
from edgead.detectors.patchcore.choices import INDEXES

FIT = [
    augment_option("none"),
    click.option(
        "--embed-dim",
        default=1024,
        show_default=True,
        help="Patch feature dimension after projection.",
    ),
    click.option(
        "--coreset-ratio",
        default=0.1,
        show_default=True,
        help="Fraction of training patches kept in the memory bank.",
    ),
    click.option(
        "--coreset-projection",
        default=128,
        show_default=True,
        help="Random projection dimension for coreset selection (0: none).",
    ),
    click.option(
        "--coreset-chunk",
        type=int,
        default=250_000,
        show_default=True,
        help="Patches per chunk of a composable coreset, used when a fit has more than about "
        "1.5 chunks of patches (each chunk of consecutive images picks its share, then a tenth of "
        "the picks are made over all patches; README, Speed on the CPU). 0: always one greedy.",
    ),
    click.option(
        "--reweight/--no-reweight",
        default=False,
        show_default=True,
        help="The paper's image-score re-weighting by neighbourhood density.",
    ),
]


def _graph_alias(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        click.echo(
            "warning: export's --search is deprecated (it collides with the runtime's "
            "--search placement); use --in-graph-search",
            err=True,
        )
    return value


EXPORT = [
    click.option(
        "--index",
        type=click.Choice(INDEXES),
        default="auto",
        show_default=True,
        help="Memory-bank search on the CPU. auto: the fastest of exact flat, exact numpy "
        "matrix products (gemm) and HNSW that keeps recall@1 >= 0.999 and the scores, "
        "measured on held-out good images. Or force one (ivfpq: approximate, for big banks).",
    ),
    click.option("--nprobe", default=8, show_default=True, help="IVF lists searched (ivfpq)."),
    click.option(
        "--in-graph-search",
        is_flag=True,
        help="Fold exact search into the graph (matrix product + min; no faiss at run time): "
        "the fastest form on a GPU.",
    ),
    click.option(
        "--search",
        "legacy_search",
        type=click.Choice(["faiss", "graph"]),
        default=None,
        callback=_graph_alias,
        hidden=True,
        help="Deprecated spelling: --search graph is --in-graph-search.",
    ),
]
