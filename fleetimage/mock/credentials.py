"""Which access keys the mock knows, when they expire, and how often roles were assumed.

The mock reads the access key id from the SigV4 ``Credential=AKID/...`` scope of each request
(it never sees secrets). Keys it issued through AssumeRole (``ASIA...``) are *sessions*: they
expire ``DurationSeconds`` AWS seconds after issue. Keys it never issued (the caller's own,
typically ``AKIA...``) never expire, unless ``MockConfig.own_credentials_expire_after_s`` says
so or a test expires them (:meth:`CredentialTable.expire_key`). An expired key gets EC2
``RequestExpired`` (HTTP 400) or STS ``ExpiredToken`` (HTTP 403) on every call.

All times here are AWS seconds since the mock started (:class:`~fleetimage.mock.clock.MockClock`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from fleetimage.mock.protocol import ApiError

__all__ = ["CredentialTable", "Session", "expired_error"]

_EC2_EXPIRED = ("RequestExpired", "Request has expired.", 400)
_STS_EXPIRED = ("ExpiredToken", "The security token included in the request is expired", 403)


def expired_error(service: str) -> ApiError:
    """The answer to a call signed with an expired key, as ``service`` (ec2/sts) gives it."""
    code, message, status = _STS_EXPIRED if service == "sts" else _EC2_EXPIRED
    return ApiError(code, message, status)


@dataclass(slots=True)
class Session:
    """One set of temporary credentials issued by AssumeRole."""

    user_id: str  # AROA...:session-name
    arn: str  # arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION
    role_arn: str
    issued_at_s: float
    expires_at_s: float


@dataclass
class CredentialTable:
    """Issued sessions, forced expiries, and AssumeRole counts per role ARN."""

    own_expire_at_s: float | None = None
    sessions: dict[str, Session] = field(default_factory=dict)
    forced: dict[str, float] = field(default_factory=dict)  # access key -> AWS expiry time
    assumed: Counter[str] = field(default_factory=Counter)  # role ARN -> successful calls

    def issue(self, access_key: str, session: Session) -> None:
        self.sessions[access_key] = session
        self.assumed[session.role_arn] += 1

    def is_session(self, access_key: str) -> bool:
        """Whether ``access_key`` was issued by this mock (role chaining if it calls STS)."""
        return access_key in self.sessions

    def expires_at(self, access_key: str) -> float:
        """AWS time at which ``access_key`` stops working (``inf``: never)."""
        at = math.inf
        session = self.sessions.get(access_key)
        if session is not None:
            at = session.expires_at_s
        elif self.own_expire_at_s is not None:
            at = self.own_expire_at_s
        forced = self.forced.get(access_key)
        return at if forced is None else min(at, forced)

    def expired(self, access_key: str, aws_now: float) -> bool:
        return aws_now >= self.expires_at(access_key)

    def expire_key(self, access_key: str, at_s: float) -> None:
        """Make ``access_key`` (issued or not) expire at AWS time ``at_s``."""
        self.forced[access_key] = at_s

    def expire_all_sessions(self, at_s: float) -> int:
        """Make every issued session expire at ``at_s`` at the latest; returns how many."""
        for session in self.sessions.values():
            session.expires_at_s = min(session.expires_at_s, at_s)
        return len(self.sessions)

    def assume_role_count(self, role_arn: str | None = None, account: str | None = None) -> int:
        """Successful AssumeRole calls, for one role ARN and/or the roles of one account."""
        return sum(
            n
            for arn, n in self.assumed.items()
            if (role_arn is None or arn == role_arn)
            and (account is None or arn.split(":")[4] == account)
        )

    def snapshot(self, aws_now: float) -> dict[str, object]:
        by_account: Counter[str] = Counter()
        for arn, n in self.assumed.items():
            by_account[arn.split(":")[4]] += n
        return {
            "assume_role": dict(sorted(self.assumed.items())),
            "assume_role_by_account": dict(sorted(by_account.items())),
            "own_credentials_expire_at_s": self.own_expire_at_s,
            "sessions": [
                {
                    "access_key_id": key,
                    "role_arn": s.role_arn,
                    "issued_at_s": s.issued_at_s,
                    "expires_at_s": self.expires_at(key),
                    "expired": self.expired(key, aws_now),
                }
                for key, s in self.sessions.items()
            ],
            "forced": dict(self.forced),
        }
