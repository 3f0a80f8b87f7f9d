"""STS actions: AssumeRole and GetCallerIdentity.

AssumeRole hands out ``ASIA`` + 12-digit account + random suffix access keys, so later calls
signed with them land in the role's account (see :func:`account_of_key`).

``DurationSeconds`` (default 3600) must be in 900..43200, at most the role's
MaxSessionDuration (``MockConfig.role_max_session_s``, default 3600), and at most 3600 when
the caller itself signs with a session key this mock issued (role chaining). The session
expires ``DurationSeconds`` AWS seconds later; ``Expiration`` is the wall moment of that
(see :mod:`fleetimage.mock.clock`).
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass

from fleetimage.mock.clock import MockClock
from fleetimage.mock.credentials import CredentialTable, Session
from fleetimage.mock.protocol import ApiError, Params, esc, iso

__all__ = ["KEY_ACCOUNT_RE", "StsState", "account_of_key"]

KEY_ACCOUNT_RE = re.compile(r"^(?:AKIA|ASIA)(\d{12})")
_ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/((?:[\w+=,.@-]+/)*([\w+=,.@-]+))$")
_SESSION_RE = re.compile(r"^[\w+=,.@-]{2,64}$")
_ALNUM = string.ascii_uppercase + string.digits
DEFAULT_DURATION_S = 3600
DEFAULT_MAX_SESSION_S = 3600  # IAM's default MaxSessionDuration
CHAINED_MAX_S = 3600


def account_of_key(access_key: str, default: str) -> str:
    match = KEY_ACCOUNT_RE.match(access_key)
    return match.group(1) if match else default


@dataclass
class StsState:
    """AssumeRole and GetCallerIdentity over a :class:`CredentialTable`; ``denied`` holds
    role ARNs or accounts whose AssumeRole is denied, ``role_max`` MaxSessionDurations."""

    denied: frozenset[str]
    rng: random.Random
    table: CredentialTable
    clock: MockClock
    role_max: Mapping[str, int]

    def _rand(self, n: int, alphabet: str = _ALNUM) -> str:
        return "".join(self.rng.choices(alphabet, k=n))

    def assume_role(self, caller_key: str, caller_arn: str, params: Params, aws_now: float) -> str:
        role_arn = params.get("RoleArn", "")
        session = params.get("RoleSessionName", "")
        if not role_arn:
            raise ApiError("ValidationError", "1 validation error detected: RoleArn is required")
        match = _ROLE_ARN_RE.match(role_arn)
        if match is None or len(role_arn) < 20:
            raise ApiError("ValidationError", f"{role_arn} is invalid")
        if not _SESSION_RE.match(session):
            raise ApiError(
                "ValidationError",
                "1 validation error detected: Value at 'roleSessionName' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*",
            )
        duration = _duration(params)
        account, role_name = match.group(1), match.group(3)
        if role_arn in self.denied or account in self.denied:
            raise ApiError(
                "AccessDenied",
                f"User: {caller_arn} is not authorized to perform: sts:AssumeRole on "
                f"resource: {role_arn}",
                403,
            )
        if duration > CHAINED_MAX_S and self.table.is_session(caller_key):
            raise ApiError(
                "ValidationError",
                "The requested DurationSeconds exceeds the 1 hour session limit for roles "
                "assumed by role chaining.",
            )
        if duration > self.role_max.get(role_arn, DEFAULT_MAX_SESSION_S):
            raise ApiError(
                "ValidationError",
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
            )
        key = f"ASIA{account}{self._rand(4)}"
        secret = self._rand(40, string.ascii_letters + string.digits + "+/")
        token = "FwoGZXIvYXdzE" + self._rand(200, string.ascii_letters + string.digits)
        assumed_arn = f"arn:aws:sts::{account}:assumed-role/{role_name}/{session}"
        role_id = f"AROA{self._rand(17)}"
        expires_at = aws_now + duration
        self.table.issue(
            key, Session(f"{role_id}:{session}", assumed_arn, role_arn, aws_now, expires_at)
        )
        return (
            f"<Credentials><AccessKeyId>{key}</AccessKeyId>"
            f"<SecretAccessKey>{esc(secret)}</SecretAccessKey>"
            f"<SessionToken>{token}</SessionToken>"
            f"<Expiration>{iso(self.clock.wall_at(expires_at))}</Expiration></Credentials>"
            f"<AssumedRoleUser><AssumedRoleId>{role_id}:{esc(session)}</AssumedRoleId>"
            f"<Arn>{esc(assumed_arn)}</Arn></AssumedRoleUser>"
        )

    def caller(self, access_key: str, account: str) -> tuple[str, str]:
        """``(user_id, arn)`` of the caller signing with ``access_key``."""
        known = self.table.sessions.get(access_key)
        if known is not None:
            return known.user_id, known.arn
        return f"AIDA{access_key[-12:].upper():0>12}", f"arn:aws:iam::{account}:user/mock-user"

    def get_caller_identity(self, access_key: str, account: str) -> str:
        user_id, arn = self.caller(access_key, account)
        return f"<UserId>{esc(user_id)}</UserId><Account>{account}</Account><Arn>{esc(arn)}</Arn>"


def _duration(params: Params) -> int:
    """``DurationSeconds`` (default 3600), in 900..43200 as the STS API model demands."""
    raw = params.get("DurationSeconds")
    if raw is None:
        return DEFAULT_DURATION_S
    try:
        duration = int(raw)
    except ValueError:
        raise ApiError(
            "ValidationError",
            f"1 validation error detected: Value '{raw}' at 'durationSeconds' failed to "
            "satisfy constraint: Member must be an integer",
        ) from None
    for ok, bound in (
        (duration >= 900, "greater than or equal to 900"),
        (duration <= 43200, "less than or equal to 43200"),
    ):
        if not ok:
            raise ApiError(
                "ValidationError",
                f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed "
                f"to satisfy constraint: Member must have value {bound}",
            )
    return duration
