"""The ``fleetimage`` command: typer app, options, prompts, progress, exit codes, the demo.

May import every other package; nothing imports it. Only here is logging configured or printed.
"""

from fleetimage.cli.app import app, main

__all__ = ["app", "main"]
