"""Who each lane acts as: the caller's own account, or an assumed role's, and the one
credentials object (renewing itself) that every lane of that account signs with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiobotocore.session import AioSession

from fleetimage.aws import clients
from fleetimage.aws.credentials import (
    AccountCredentials,
    account_session,
    assumed_role_credentials,
    own_credentials,
    own_expired,
)
from fleetimage.config import AccountSpec, FleetConfig
from fleetimage.core.errors import AwsError, ErrorKind
from fleetimage.engine.retry import RetryPolicy, retrying

__all__ = ["Access", "resolve_account"]

T = TypeVar("T")


@dataclass(slots=True)
class Access:
    """One account: its id, its credentials and the session its lanes' clients come from
    (``session`` is None only with ``error``)."""

    account: str | None = None
    credentials: AccountCredentials | None = None
    session: AioSession | None = None
    role_arn: str | None = None
    error: AwsError | None = None


async def _sts(policy: RetryPolicy, call: Callable[[], Awaitable[T]]) -> T:
    """An STS call with the retry policy EC2 calls get (they are idempotent). STS calls are
    signed with the caller's own credentials: an expiry answer means those expired."""
    async for attempt in retrying(policy):
        with attempt:
            try:
                return await call()
            except AwsError as error:
                if error.kind is ErrorKind.AUTH_EXPIRED:
                    raise own_expired(error) from None
                raise
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


async def resolve_account(
    session: AioSession,
    account: AccountSpec | None,
    *,
    region: str,
    endpoint_url: str | None,
    config: FleetConfig,
) -> Access:
    cfg = clients.client_config(
        max_pool_connections=2, request_timeout_s=config.retry.request_timeout_s
    )
    try:
        if account is None:
            own = await _sts(
                config.wall_retry,
                lambda: clients.caller_account(
                    session, region=region, endpoint_url=endpoint_url, config=cfg
                ),
            )
            mine = await own_credentials(session, own)
            # No credentials at all: the lanes' first call says so (NoCredentialsError).
            return Access(own, mine, account_session(session, mine) if mine else session)
        spec = account

        async def fetch() -> clients.Credentials:
            return await _sts(
                config.wall_retry,
                lambda: clients.assume_role(
                    session,
                    role_arn=spec.role_arn,
                    external_id=spec.external_id,
                    session_name=spec.session_name,
                    region=region,
                    endpoint_url=endpoint_url,
                    config=cfg,
                    duration_s=spec.duration_s,
                ),
            )

        number = clients.account_of_role(spec.role_arn)
        creds = await assumed_role_credentials(
            fetch, account=number, role_arn=spec.role_arn, renew_fraction=spec.renew_fraction
        )
        return Access(number, creds, account_session(session, creds), spec.role_arn)
    except AwsError as error:
        label = clients.account_of_role(account.role_arn) if account else "self"
        return Access(account=label, role_arn=account.role_arn if account else None, error=error)
