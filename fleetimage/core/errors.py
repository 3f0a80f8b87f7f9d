"""The exception tree and the classification of AWS error codes.

Every exception fleetimage raises derives from :class:`FleetImageError`::

    FleetImageError
     ├── ConfigError        bad config file / value; raised before any API call
     ├── JournalError       the run journal is unreadable, locked, or of another schema
     ├── RunDeclined        the caller's confirm callback said no: nothing was sent
     ├── UsageError         arguments that do not fit (a flag combination, a run's state)
     ├── MockError          the mock endpoint was asked for something it cannot do
     ├── NotificationError  a notification could not be delivered (logged; never fails a run)
     └── AwsError           an AWS API call failed; ``kind`` says what to do about it
          └── CredentialsExpired  expired credentials that renewing cannot fix: stop, resumable

``classify`` maps an EC2/STS error code (and HTTP status) to an :class:`ErrorKind`, which is
the only thing the retry policy looks at.
"""

from __future__ import annotations

import enum
from typing import Any

from fleetimage.core.redaction import scrub_text

__all__ = [
    "AwsError",
    "ConfigError",
    "CredentialsExpired",
    "ErrorKind",
    "FleetImageError",
    "JournalError",
    "MockError",
    "NotificationError",
    "RunDeclined",
    "UsageError",
    "classify",
]


class FleetImageError(Exception):
    """Root of every exception fleetimage raises on purpose."""


class ConfigError(FleetImageError):
    """A config file or value is invalid. The message names the file, the field and the fix."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None) -> None:
        self.file = file
        self.field = field
        prefix = ""
        if file:
            prefix += f"{file}: "
        if field:
            prefix += f"{field}: "
        super().__init__(prefix + message)


class JournalError(FleetImageError):
    """The run journal cannot be used (corrupt, locked, unknown run, other schema)."""


class RunDeclined(FleetImageError):
    """A run or resume was declined at its confirmation: nothing was sent."""


class UsageError(FleetImageError):
    """Arguments that do not fit together or with a run's state; raised before anything is sent."""


class MockError(FleetImageError):
    """The mock endpoint was misconfigured (e.g. asked to bind a non-loopback address)."""


class NotificationError(FleetImageError):
    """A notification could not be delivered. The message never holds the webhook URL."""


class ErrorKind(enum.Enum):
    """What the retry policy does with an error."""

    THROTTLE = "throttle"  # RequestLimitExceeded: retry, and slow the lane's bucket down
    TRANSIENT = "transient"  # 5xx / connection: retry with backoff (idempotent calls)
    AMBIGUOUS = "ambiguous"  # may have been applied (timeout, reset after send): look up first
    QUOTA = "quota"  # snapshot/resource limits: retry after a long backoff, bounded
    DUPLICATE_NAME = "duplicate_name"  # InvalidAMIName.Duplicate: adopt or fail
    AUTH_EXPIRED = "auth_expired"  # ExpiredToken/RequestExpired: renew the credentials, retry
    FATAL = "fatal"  # bad instance, bad state, no permission: record and move on


_THROTTLE_CODES = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})
_TRANSIENT_CODES = frozenset(
    {"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable", "RequestTimeout"}
)
# Expired session credentials (STS: ExpiredToken, EC2: RequestExpired, some services add
# "Exception"). RequestExpired also answers a request whose timestamp is more than 5 minutes
# off AWS's clock: renewing cannot fix that, which is why renewals are bounded (aws.credentials).
_AUTH_EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
_QUOTA_CODES = frozenset(
    {
        "ConcurrentSnapshotLimitExceeded",
        "SnapshotCreationPerVolumeRateExceeded",
        "PendingSnapshotLimitExceeded",
        "ResourceLimitExceeded",
        "InsufficientInstanceCapacity",
    }
)


def classify(code: str, http_status: int | None = None) -> ErrorKind:
    """Classify an AWS error code; unknown 5xx answers count as transient, all else fatal."""
    if code in _THROTTLE_CODES:
        return ErrorKind.THROTTLE
    if code == "InvalidAMIName.Duplicate":
        return ErrorKind.DUPLICATE_NAME
    if code in _QUOTA_CODES:
        return ErrorKind.QUOTA
    if code in _AUTH_EXPIRED_CODES:
        return ErrorKind.AUTH_EXPIRED
    if code in _TRANSIENT_CODES or (http_status is not None and http_status >= 500):
        return ErrorKind.TRANSIENT
    return ErrorKind.FATAL


class AwsError(FleetImageError):
    """An AWS call failed with ``code``; ``kind`` drives retries. Never carries credentials."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        action: str,
        http_status: int | None = None,
        kind: ErrorKind | None = None,
    ) -> None:
        self.code = code
        # AWS messages can echo request values; never let one carry a credential onward.
        self.message = scrub_text(message)
        self.action = action
        self.http_status = http_status
        self.kind = kind if kind is not None else classify(code, http_status)
        super().__init__(f"{action}: {code}: {self.message}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled to a worker process with a plan (a lane's planning error): the default
        # rebuilds from ``args`` (one string) and would miss the keyword-only fields.
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


def _rebuild(cls: type[AwsError], text: str, fields: dict[str, Any]) -> AwsError:
    error = cls.__new__(cls)
    Exception.__init__(error, text)
    error.__dict__.update(fields)
    return error


class CredentialsExpired(AwsError):
    """Credentials that expired and that renewing does not fix: the lane (or the run) stops.

    Never a target's fault: its targets are left unstarted (resumable), never failed.
    ``own`` is True when the caller's own credentials (environment, profile) expired and
    cannot be refreshed here: every account depends on them, so the whole run must stop new
    work. Otherwise one account's credentials cannot be renewed (a renewal refused, or
    ``RequestExpired`` after three renewals in a row: a clock off by more than 5 minutes)
    and only that account's lanes stop. The message is one line naming the causes.
    """

    CODE = "CredentialsExpired"

    def __init__(self, message: str, *, action: str, own: bool) -> None:
        super().__init__(self.CODE, message, action=action, kind=ErrorKind.FATAL)
        self.own = own
