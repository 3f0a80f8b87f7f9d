"""fleetimage: take AMIs of a whole EC2 fleet as fast as AWS's rate limits allow.

The public API::

    config = load_config("fleet.yaml")
    report = await image_fleet(config, on_event=print)   # or run_fleet(config) from sync code
    report.write("report.json")
"""

from fleetimage.config import FleetConfig, load_config, parse_config
from fleetimage.core.errors import (
    AwsError,
    ConfigError,
    ErrorKind,
    FleetImageError,
    JournalError,
    MockError,
)
from fleetimage.core.models import (
    Available,
    Created,
    Discovered,
    DryRunChecked,
    Event,
    Failed,
    ImageResult,
    Outcome,
    Requested,
    Retried,
    Skipped,
    Throttled,
)
from fleetimage.engine.api import run_fleet
from fleetimage.engine.run import Subscriber, image_fleet
from fleetimage.output.report import RunReport

__all__ = [
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
]
__version__ = "0.1.0"
