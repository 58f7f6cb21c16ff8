"""``python -m sounding`` runs the CLI (supervised: a native crash is reported, see sounding/supervise.py)."""

from sounding.supervise import main

main()
