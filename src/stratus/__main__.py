"""`python -m stratus` is the `stratus` command."""

from stratus.cli.main import run

run()
