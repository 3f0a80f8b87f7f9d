"""The ``fleetimage`` command. Only this module (and the sub-apps it mounts) prints."""

from __future__ import annotations

import typer

from fleetimage.mock.cli import mock_app

__all__ = ["app", "main"]

app = typer.Typer(
    help="Take AMIs of a whole EC2 fleet as fast as AWS's rate limits allow.",
    no_args_is_help=True,
)
app.add_typer(mock_app, name="mock")


@app.callback()
def _root() -> None:
    """fleetimage: fleet-wide EC2 CreateImage, rate-limit aware and idempotent."""


def main() -> None:
    app()
