"""`python -m edgead`: the command line without the console script (e.g. from PYTHONPATH)."""

from edgead.cli import main

main()
