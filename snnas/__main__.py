"""``python -m snnas`` runs the CLI."""

from snnas.cli import main

main()
