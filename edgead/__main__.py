"""``python -m edgead``: the command line."""

from edgead.cli import main

main()
