"""``python -m edgead``: the command line."""

from edgead.entry import run

run()
