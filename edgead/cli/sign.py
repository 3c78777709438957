"""``edgead keygen`` and ``edgead sign``: who made a bundle, provable on the line."""

from __future__ import annotations

import click

from edgead.cli.main import main


@main.command()
@click.argument("key", type=click.Path(dir_okay=False))
def keygen(key: str) -> None:
    """Make an Ed25519 key pair: KEY (private, mode 0600: keep it where bundles are made) and
    KEY.pub (public: give it to the machines that run them, `--require-signature KEY.pub`)."""
    from edgead.bundle.integrity import new_key

    private, public = new_key(key)
    click.echo(f"private key: {private} (keep it secret)\npublic key: {public}")


@main.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--key",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The private key (PEM, from `edgead keygen`).",
)
@click.option("--signer", default="", help="Who signs (a name kept in the signature record).")
def sign(bundle: str, key: str, signer: str) -> None:
    """Sign BUNDLE (verified first) with KEY: signature.json covers the manifest, which holds
    every artifact's checksum. A machine that runs with `--require-signature KEY.pub` refuses
    a bundle that is unsigned, signed by another key, or changed after signing."""
    from edgead.bundle.signing import sign_bundle

    record = sign_bundle(bundle, key, signer)
    click.echo(f"signed {bundle} with key {record['key_id']} ({record['signed_at']})")
