"""STS actions: AssumeRole and GetCallerIdentity.

AssumeRole hands out ``ASIA`` + 12-digit account + random suffix access keys, so later calls
signed with them land in the role's account (see :func:`account_of_key`).
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field

from fleetimage.mock.protocol import ApiError, Params, esc, iso

__all__ = ["KEY_ACCOUNT_RE", "StsState", "account_of_key"]

KEY_ACCOUNT_RE = re.compile(r"^(?:AKIA|ASIA)(\d{12})")
_ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/((?:[\w+=,.@-]+/)*([\w+=,.@-]+))$")
_SESSION_RE = re.compile(r"^[\w+=,.@-]{2,64}$")
_ALNUM = string.ascii_uppercase + string.digits


def account_of_key(access_key: str, default: str) -> str:
    match = KEY_ACCOUNT_RE.match(access_key)
    return match.group(1) if match else default


@dataclass
class StsState:
    """Sessions handed out by AssumeRole, and the roles (or accounts) that are denied."""

    denied: frozenset[str]
    rng: random.Random
    sessions: dict[str, str] = field(default_factory=dict)  # access key -> assumed-role ARN

    def _rand(self, n: int, alphabet: str = _ALNUM) -> str:
        return "".join(self.rng.choices(alphabet, k=n))

    def assume_role(self, caller_arn: str, params: Params, wall: float) -> str:
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
        try:
            duration = int(params.get("DurationSeconds", "3600"))
        except ValueError:
            raise ApiError("ValidationError", "DurationSeconds must be an integer") from None
        if not 900 <= duration <= 43200:
            raise ApiError(
                "ValidationError",
                "1 validation error detected: Value at 'durationSeconds' failed to satisfy "
                "constraint: Member must have value between 900 and 43200",
            )
        account, role_name = match.group(1), match.group(3)
        if role_arn in self.denied or account in self.denied:
            raise ApiError(
                "AccessDenied",
                f"User: {caller_arn} is not authorized to perform: sts:AssumeRole on "
                f"resource: {role_arn}",
                403,
            )
        key = f"ASIA{account}{self._rand(4)}"
        secret = self._rand(40, string.ascii_letters + string.digits + "+/")
        token = "FwoGZXIvYXdzE" + self._rand(200, string.ascii_letters + string.digits)
        assumed_arn = f"arn:aws:sts::{account}:assumed-role/{role_name}/{session}"
        role_id = f"AROA{self._rand(17)}"
        self.sessions[key] = f"{role_id}:{session}|{assumed_arn}"
        return (
            f"<Credentials><AccessKeyId>{key}</AccessKeyId>"
            f"<SecretAccessKey>{esc(secret)}</SecretAccessKey>"
            f"<SessionToken>{token}</SessionToken>"
            f"<Expiration>{iso(wall + duration)}</Expiration></Credentials>"
            f"<AssumedRoleUser><AssumedRoleId>{role_id}:{esc(session)}</AssumedRoleId>"
            f"<Arn>{esc(assumed_arn)}</Arn></AssumedRoleUser>"
        )

    def caller(self, access_key: str, account: str) -> tuple[str, str]:
        """``(user_id, arn)`` of the caller signing with ``access_key``."""
        known = self.sessions.get(access_key)
        if known is not None:
            user_id, _, arn = known.partition("|")
            return user_id, arn
        return f"AIDA{access_key[-12:].upper():0>12}", f"arn:aws:iam::{account}:user/mock-user"

    def get_caller_identity(self, access_key: str, account: str) -> str:
        user_id, arn = self.caller(access_key, account)
        return f"<UserId>{esc(user_id)}</UserId><Account>{account}</Account><Arn>{esc(arn)}</Arn>"
