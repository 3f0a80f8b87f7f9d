"""AWS's default token buckets per EC2 action, from the packaged ``limits.yaml``."""

from __future__ import annotations

import functools
from importlib import resources

import yaml

__all__ = ["load_default_limits"]


@functools.cache
def _default_limits() -> tuple[tuple[str, int, float], ...]:
    text = resources.files("fleetimage.config").joinpath("limits.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)
    return tuple((a, int(v["burst"]), float(v["rate_per_s"])) for a, v in raw.items())


def load_default_limits() -> dict[str, tuple[int, float]]:
    """AWS's default ``{action: (burst, rate_per_s)}`` from the packaged limits.yaml (a copy)."""
    return {action: (burst, rate) for action, burst, rate in _default_limits()}
