"""The synchronous entry point for batch jobs that are not async themselves."""

from __future__ import annotations

import functools
from typing import Any

import anyio

from fleetimage.config import FleetConfig
from fleetimage.engine.run import image_fleet
from fleetimage.output.report import RunReport

__all__ = ["run_fleet"]


def run_fleet(config: FleetConfig, **kwargs: Any) -> RunReport:
    """``image_fleet`` in a fresh event loop; takes the same keyword arguments."""
    return anyio.run(functools.partial(image_fleet, config, **kwargs))
