"""``python -m edgead.cli``: the command line (as ``python -m edgead``)."""

from edgead.cli import main

main()
