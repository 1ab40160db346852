"""``python -m snnas.runtime PLAN``: one device's process (torchrun's entry point)."""

from snnas.runtime._worker import main

main()
