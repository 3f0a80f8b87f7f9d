"""fleetimage: take AMIs of a whole EC2 fleet as fast as AWS's rate limits allow.

The public API::

    config = load_config("fleet.yaml")
    report = await image_fleet(config, journal="journal.sqlite3", run_id="nightly-1")
    report = await resume_fleet("nightly-1", journal="journal.sqlite3")   # after a crash
    report.write("report.json")

``run_fleet`` and ``resume_fleet_sync`` are the same for code that is not async.
Retention: ``await prune_fleet(config, journal=...)`` (``prune_fleet_sync``), and
``resume_prune(prune_id, journal=...)`` (``resume_prune_sync``) after a crash.
"""

from fleetimage.aws.clients import new_session
from fleetimage.config import FleetConfig, load_config, parse_config
from fleetimage.core.errors import (
    AwsError,
    ConfigError,
    CredentialsExpired,
    ErrorKind,
    FleetImageError,
    JournalError,
    MockError,
    RunDeclined,
    UsageError,
)
from fleetimage.core.models import (
    Available,
    Created,
    Discovered,
    DryRunChecked,
    Event,
    Failed,
    ImageResult,
    LaneFailed,
    LaneFailure,
    LanePlanned,
    Outcome,
    Requested,
    Retried,
    Skipped,
    Throttled,
)
from fleetimage.engine.api import (
    ResumePlan,
    image_fleet,
    resume_fleet,
    resume_fleet_sync,
    run_fleet,
)
from fleetimage.engine.bus import Subscriber
from fleetimage.engine.prune import prune_fleet, prune_fleet_sync, resume_prune, resume_prune_sync
from fleetimage.output.prune_report import PruneReport
from fleetimage.output.report import RunReport

__all__ = [
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
    "PruneReport",
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
    "prune_fleet",
    "prune_fleet_sync",
    "resume_fleet",
    "resume_fleet_sync",
    "resume_prune",
    "resume_prune_sync",
    "run_fleet",
]
__version__ = "0.1.0"
