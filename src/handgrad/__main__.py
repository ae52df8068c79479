"""``python -m handgrad`` runs the command line."""

from handgrad.cli.main import run

run()
