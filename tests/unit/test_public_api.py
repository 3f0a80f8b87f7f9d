"""Pins the public API: a change here is a change users see, so it must be deliberate."""

from __future__ import annotations

import inspect

import fleetimage

EXPECTED = {
    "Available",
    "AwsError",
    "ConfigError",
    "Created",
    "Discovered",
    "DryRunChecked",
    "ErrorKind",
    "Event",
    "Failed",
    "FleetConfig",
    "FleetImageError",
    "ImageResult",
    "JournalError",
    "MockError",
    "Outcome",
    "Requested",
    "Retried",
    "RunReport",
    "Skipped",
    "Subscriber",
    "Throttled",
    "image_fleet",
    "load_config",
    "parse_config",
    "run_fleet",
}


def test_all_is_pinned_and_importable() -> None:
    assert set(fleetimage.__all__) == EXPECTED
    for name in fleetimage.__all__:
        assert getattr(fleetimage, name) is not None


def test_one_exception_root() -> None:
    for name in ("AwsError", "ConfigError", "JournalError", "MockError"):
        assert issubclass(getattr(fleetimage, name), fleetimage.FleetImageError)


def test_image_fleet_signature() -> None:
    params = inspect.signature(fleetimage.image_fleet).parameters
    assert next(iter(params)) == "config"
    keyword_only = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert {"endpoint_url", "on_event", "dry_run", "deadline", "stop", "resume"} <= keyword_only
    assert inspect.iscoroutinefunction(fleetimage.image_fleet)
    assert not inspect.iscoroutinefunction(fleetimage.run_fleet)
