"""Who each lane acts as: the caller's own account, or an assumed role's (one STS call each)."""

from __future__ import annotations

from dataclasses import dataclass

from aiobotocore.session import AioSession

from fleetimage.aws import clients
from fleetimage.config import AccountSpec, FleetConfig
from fleetimage.core.errors import AwsError
from fleetimage.engine.retry import retrying

__all__ = ["Access", "resolve_account"]


@dataclass(slots=True)
class Access:
    account: str | None = None
    credentials: clients.Credentials | None = None
    role_arn: str | None = None
    error: AwsError | None = None


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
        # STS calls are idempotent: throttles and 5xx get the same retry policy as EC2's.
        async for attempt in retrying(config.retry):
            with attempt:
                if account is None:
                    own = await clients.caller_account(
                        session, region=region, endpoint_url=endpoint_url, config=cfg
                    )
                    return Access(account=own)
                creds = await clients.assume_role(
                    session,
                    role_arn=account.role_arn,
                    external_id=account.external_id,
                    session_name=account.session_name,
                    region=region,
                    endpoint_url=endpoint_url,
                    config=cfg,
                )
                return Access(clients.account_of_role(account.role_arn), creds, account.role_arn)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover
    except AwsError as error:
        label = clients.account_of_role(account.role_arn) if account else "self"
        return Access(account=label, role_arn=account.role_arn if account else None, error=error)
