"""Credentials that renew themselves: one object per account, shared by all of its lanes.

An assumed role's session is aiobotocore's :class:`AioRefreshableCredentials`, whose refresh
is an AssumeRole (the caller passes it in, wrapped in the engine's retry, so a transient STS
error is retried like any other). botocore renews it before every request that finds it
near its expiry, under its own lock: no timer of ours. (``AioAssumeRoleCredentialFetcher``
would do the STS call itself, outside our retry and error translation, and keeps botocore's
fixed 15-minute window, so it is not used.)

**Margins follow the session.** botocore renews 15 min (advisory) / 10 min (mandatory)
before expiry: a 15-minute session would be renewed on every request. Here the advisory
margin is ``renew_fraction`` (default 0.15) of the session's lifetime as this machine sees it
(``Expiration`` minus the moment the answer came), the mandatory one half of that. With a
0.15 fraction a session is renewed once 85 % of it has passed: over a run of N sessions that
is ~1.18 N renewals (no storm), and the mandatory margin of a 900 s session (67 s) exceeds
the default request timeout (60 s). Measuring the lifetime instead of trusting
``duration_s`` makes a time-scaled endpoint (the mock) scale the margins with no knob.

**An expiry answer** (``ExpiredToken``/``RequestExpired``, ErrorKind.AUTH_EXPIRED) calls
:meth:`AccountCredentials.renew` (the lane does, see ``engine/lane.py``): one forced renewal
for all the requests signed before it, then the request is resent. ``RequestExpired`` also
means a clock more than 5 minutes off: after :data:`MAX_UNHELPFUL_RENEWALS` renewals in a row
with no success in between, the account's lanes stop with :class:`CredentialsExpired`. The
caller's own credentials, when botocore cannot refresh them (environment keys, a session
token), stop at the first expiry answer with ``own=True``: the whole run must stop.

A stopped object raises before anything is signed, so its lanes send nothing more.
Nothing here ever shows a key: ``repr`` names the account only.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
from aiobotocore.credentials import (
    AioCredentialResolver,
    AioCredentials,
    AioRefreshableCredentials,
)
from aiobotocore.session import AioSession
from botocore.credentials import CredentialProvider, ReadOnlyCredentials
from botocore.exceptions import BotoCoreError

from fleetimage.aws.clients import Credentials
from fleetimage.core.errors import AwsError, CredentialsExpired

__all__ = [
    "MAX_UNHELPFUL_RENEWALS",
    "AccountCredentials",
    "account_session",
    "assumed_role_credentials",
    "own_credentials",
    "own_expired",
    "renewal_margins",
]

MAX_UNHELPFUL_RENEWALS = 3
METHOD = "fleetimage-assume-role"
_CLOCK = "this machine's clock is more than 5 minutes off AWS's (sync it: NTP, chrony)"
_STILL_EXPIRED = "still expired"  # botocore's RuntimeError when fresh keys are already stale


def _stops(own: bool) -> str:
    what = "no new work is started" if own else "this account's lanes stop"
    return f"{what}; resume the run once fixed"


Fetch = Callable[[], Awaitable[Credentials]]


def renewal_margins(lifetime_s: float, renew_fraction: float) -> tuple[float, float]:
    """(advisory, mandatory) seconds before expiry for a session of ``lifetime_s``."""
    advisory = lifetime_s * renew_fraction
    return advisory, advisory / 2


class AccountCredentials(AioCredentials):  # type: ignore[misc]
    """What every lane of one account signs with: renewing credentials, a renewal hook, a stop.

    botocore asks it for keys (:meth:`get_frozen_credentials`) before signing each request.
    It is a botocore ``Credentials`` (botocore checks for one) that holds no key itself: the
    keys live in ``inner`` only, so nothing of ours can print them.
    """

    access_key = secret_key = token = account_id = None  # botocore's fields: never set here

    def __init__(self, inner: Any, *, label: str, own: bool) -> None:  # no super(): no keys
        self.inner = inner  # botocore credentials: static, or refreshable
        self.label = label  # "account 210987654321 (role ...)", never a key
        self.own = own  # the caller's own credentials: every account depends on them
        self.method = getattr(inner, "method", METHOD)
        self.generation = 0  # forced renewals so far; a request remembers the one it was sent at
        self.stopped: CredentialsExpired | None = None
        self._streak = 0  # forced renewals since the last success
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else f"renewals={self.generation}"
        return f"AccountCredentials({self.label}, {state})"

    @property
    def refreshable(self) -> bool:
        return isinstance(self.inner, AioRefreshableCredentials)

    # --- what botocore calls --------------------------------------------------------------

    async def get_frozen_credentials(self) -> ReadOnlyCredentials:
        if self.stopped is not None:
            raise self.stopped
        try:
            frozen: ReadOnlyCredentials = await self.inner.get_frozen_credentials()
        except CredentialsExpired as error:  # a renewal that had to succeed did not
            raise self._stop(error) from None
        except RuntimeError as exc:
            if _STILL_EXPIRED not in str(exc):
                raise
            raise self._stop(_clock_error(self, str(exc))) from None
        return frozen

    def get_account_id(self) -> Any:
        return self.inner.get_account_id()

    # --- what the lane calls --------------------------------------------------------------

    async def renew(self, error: AwsError, generation: int) -> None:
        """``error`` (AUTH_EXPIRED) answered a request sent at ``generation``: renew, or stop.

        Returns when the request may be resent; raises :class:`CredentialsExpired` when
        renewing cannot help (then every later request of the account fails before sending).
        """
        async with self._lock:
            if self.stopped is not None:
                raise self.stopped
            if generation != self.generation:
                return  # renewed since that request was signed: just resend it
            if not self.refreshable:
                raise self._stop(own_expired(error))
            if self._streak >= MAX_UNHELPFUL_RENEWALS:
                raise self._stop(
                    CredentialsExpired(
                        f"{self.label}: AWS still answers {error.code} after "
                        f"{self._streak} credential renewals in a row: {_CLOCK}, or these "
                        f"credentials are refused as expired; {_stops(self.own)}",
                        action=error.action,
                        own=self.own,
                    )
                )
            self._streak += 1
            try:
                await _force_refresh(self.inner)
            except CredentialsExpired as exc:  # ours (AssumeRole) could not renew
                raise self._stop(exc) from None
            except RuntimeError as exc:
                if _STILL_EXPIRED not in str(exc):
                    raise
                raise self._stop(_clock_error(self, str(exc))) from None
            except BotoCoreError:  # botocore's own refresh of the caller's credentials failed
                raise self._stop(own_expired(error)) from None
            self.generation += 1

    def worked(self) -> None:
        """A request signed with these credentials succeeded: the renewals helped."""
        self._streak = 0

    # --- internals ------------------------------------------------------------------------

    def _stop(self, error: CredentialsExpired) -> CredentialsExpired:
        if self.stopped is None:
            self.stopped = error
        return self.stopped


def own_expired(error: AwsError) -> CredentialsExpired:
    """The caller's own credentials got ``error`` (an expiry answer): they cannot be renewed."""
    return CredentialsExpired(
        f"your own AWS credentials stopped working ({error.action}: {error.code}) and "
        "cannot be renewed from here: they expired (get new ones, e.g. aws sso login or a "
        f"new session token) or {_CLOCK}; {_stops(True)}",
        action=error.action,
        own=True,
    )


def _clock_error(holder: AccountCredentials, detail: str) -> CredentialsExpired:
    return CredentialsExpired(
        f"{holder.label}: credentials fresh from AWS are already expired by this machine's "
        f"clock ({detail.rstrip('.')}): {_CLOCK}; {_stops(holder.own)}",
        action="AssumeRole",
        own=holder.own,
    )


async def _force_refresh(creds: AioRefreshableCredentials) -> None:
    # botocore has no public "refresh now". This is exactly what its own _refresh does once
    # the mandatory margin is reached (aiobotocore 3.x; pinned by
    # tests/unit/test_credential_renewal.py).
    async with creds._refresh_lock:
        await creds._protected_refresh(is_mandatory=True)


def _metadata(creds: Credentials) -> dict[str, str]:
    assert creds.expiration is not None
    return {
        "access_key": creds.access_key_id,
        "secret_key": creds.secret_access_key,
        "token": creds.session_token or "",
        "expiry_time": creds.expiration.isoformat(),
    }


async def assumed_role_credentials(
    fetch: Fetch, *, account: str, role_arn: str, renew_fraction: float
) -> AccountCredentials:
    """An assumed role's session (``fetch``: one AssumeRole, retried), renewing itself.

    The first AssumeRole happens now: a refused role fails here, as an AwsError.
    """
    label = f"account {account} (role {role_arn})"
    first = await fetch()
    if first.expiration is None:  # not an STS answer we know: use the keys as they are
        static = AioCredentials(first.access_key_id, first.secret_access_key, first.session_token)
        return AccountCredentials(static, label=label, own=False)

    async def refresh() -> dict[str, str]:
        try:
            return _metadata(await fetch())
        except CredentialsExpired:
            raise
        except AwsError as error:
            raise CredentialsExpired(
                f"{label}: renewing the session failed ({error}); {_stops(False)}",
                action="AssumeRole",
                own=False,
            ) from None

    lifetime_s = (first.expiration - datetime.now(UTC)).total_seconds()
    advisory_s, mandatory_s = renewal_margins(max(lifetime_s, 0.0), renew_fraction)
    holder = AccountCredentials(
        AioRefreshableCredentials.create_from_metadata(
            metadata=_metadata(first),
            refresh_using=refresh,
            method=METHOD,
            advisory_timeout=advisory_s,
            mandatory_timeout=mandatory_s,
        ),
        label=label,
        own=False,
    )
    if lifetime_s <= 0:
        raise _clock_error(holder, f"the new session ended {-lifetime_s:.0f} s ago")
    return holder


async def own_credentials(session: AioSession, account: str) -> AccountCredentials | None:
    """The caller's own credentials (the session's chain), guarded; None when there are none."""
    inner = await session.get_credentials()
    if inner is None:
        return None
    return AccountCredentials(inner, label=f"your own credentials (account {account})", own=True)


class _Provider(CredentialProvider):  # type: ignore[misc]
    METHOD = "fleetimage"

    def __init__(self, credentials: AccountCredentials) -> None:
        self._credentials = credentials

    async def load(self) -> AccountCredentials:
        return self._credentials


def account_session(base: AioSession, credentials: AccountCredentials) -> AioSession:
    """A session whose clients all sign with ``credentials`` and are otherwise ``base``'s: its
    profile and the variables set on it (a ``ca_bundle`` or proxy configured there reaches
    every lane), a copy of its event handlers (a caller's hooks see the lanes' calls), its
    answer parser and its loader (so its first client costs what a later one does: ~10 ms,
    not ~200 ms of CPU)."""
    session = AioSession(
        profile=base.profile,
        event_hooks=copy.copy(base.get_component("event_emitter")),
        include_builtin_handlers=False,  # the copy has them
    )
    for name, value in base.instance_variables().items():
        session.set_config_variable(name, value)
    for component in ("data_loader", "response_parser_factory"):
        session.register_component(component, base.get_component(component))
    session.register_component(
        "credential_provider", AioCredentialResolver(providers=[_Provider(credentials)])
    )
    return session
