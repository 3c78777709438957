"""``python -m edgead.cli``: the command line (``python -m edgead`` also handles signals from
its first instruction: ``edgead.entry``)."""

from edgead.cli import main

main()
