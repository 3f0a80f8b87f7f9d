"""Pins the public API: a change here is a change users see, so it must be deliberate."""

from __future__ import annotations

import inspect
import sys

import fleetimage

EXPECTED = {
    "Available",
    "AwsError",
    "ConfigError",
    "Created",
    "CredentialsExpired",
    "Discovered",
    "DryRunChecked",
    "ErrorKind",
    "Event",
    "Failed",
    "FleetConfig",
    "FleetImageError",
    "ImageResult",
    "JournalError",
    "LaneFailed",
    "LaneFailure",
    "LanePlanned",
    "MockError",
    "Outcome",
    "Requested",
    "ResumePlan",
    "Retried",
    "RunDeclined",
    "RunReport",
    "Skipped",
    "Subscriber",
    "Throttled",
    "UsageError",
    "image_fleet",
    "load_config",
    "new_session",
    "parse_config",
    "resume_fleet",
    "resume_fleet_sync",
    "resume_prune",
    "resume_prune_sync",
    "prune_fleet",
    "prune_fleet_sync",
    "PruneReport",
    "run_fleet",
}


def test_all_is_pinned_and_importable() -> None:
    assert set(fleetimage.__all__) == EXPECTED
    for name in fleetimage.__all__:
        value = getattr(fleetimage, name)
        if name == "Subscriber":  # a type alias (Callable[...]): its home is the bus
            assert value is sys.modules["fleetimage.engine.bus"].Subscriber
            continue
        # Each name is the object its home module defines under that name, not a stand-in
        # (a None, a re-bound alias or an object that merely has a __name__).
        home = sys.modules[value.__module__]
        assert home.__name__.startswith("fleetimage."), (name, home.__name__)
        assert getattr(home, name) is value, name


def test_one_exception_root() -> None:
    for name in (
        "AwsError",
        "ConfigError",
        "JournalError",
        "MockError",
        "RunDeclined",
        "UsageError",
    ):
        assert issubclass(getattr(fleetimage, name), fleetimage.FleetImageError)


def test_image_fleet_signature() -> None:
    params = inspect.signature(fleetimage.image_fleet).parameters
    assert next(iter(params)) == "config"
    keyword_only = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert {
        "journal",
        "run_id",
        "confirm",
        "endpoint_url",
        "on_event",
        "dry_run",
        "deadline",
        "stop",
    } <= keyword_only
    assert inspect.iscoroutinefunction(fleetimage.image_fleet)
    assert not inspect.iscoroutinefunction(fleetimage.run_fleet)


def test_resume_fleet_signature() -> None:
    params = inspect.signature(fleetimage.resume_fleet).parameters
    assert next(iter(params)) == "run_id"
    keyword_only = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert {"journal", "confirm", "endpoint_url", "on_event", "deadline", "stop"} <= keyword_only
    assert inspect.iscoroutinefunction(fleetimage.resume_fleet)
    assert not inspect.iscoroutinefunction(fleetimage.resume_fleet_sync)
