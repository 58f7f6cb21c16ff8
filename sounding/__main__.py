"""``python -m sounding`` runs the CLI."""

from sounding.cli import main

main()
