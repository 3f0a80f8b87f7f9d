"""Credentials, checked once before anything else: found? accepted? Else one line with the fix.

Without this a machine with no credentials printed a plan table whose ``problem`` column read
``GetCallerI… NoCredenti…`` once per region. :func:`check_credentials` runs before planning:

- no credentials in the chain (environment, ``AWS_PROFILE``, config files, SSO, IMDS):
  nothing is sent at all;
- credentials that AWS rejects (``InvalidClientTokenId``, ``SignatureDoesNotMatch``,
  ``UnrecognizedClientException``, ``AuthFailure``), expired ones (``ExpiredToken``,
  ``RequestExpired``) or an SSO session that expired: one GetCallerIdentity call, nothing
  else;

and each raises a :class:`CredentialsError` whose message says what is missing and how to
provide it. It never contains a key, a secret or a token. Roles (``accounts:``) are assumed
per account by the plan, once each; a denied AssumeRole is that account's problem, shown
under the plan's table in full.
"""

from __future__ import annotations

import os

from aiobotocore.session import AioSession

from fleetimage.aws import clients
from fleetimage.core.errors import AwsError, ConfigError

__all__ = ["CredentialsError", "check_credentials", "credentials_problem"]

REJECTED = frozenset(
    {
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "AuthFailure",
        "InvalidAccessKeyId",
    }
)
EXPIRED = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
)
SSO = frozenset(
    {"UnauthorizedSSOTokenError", "SSOTokenLoadError", "SSOError", "TokenRetrievalError"}
)
MISSING = frozenset({"NoCredentialsError", "PartialCredentialsError", "ProfileNotFound"})

_HOW = (
    "provide them with AWS_PROFILE=<profile> (for an SSO profile, after `aws sso login "
    "--profile <profile>`), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
    "AWS_SESSION_TOKEN for temporary ones) in the environment"
)


class CredentialsError(ConfigError):
    """No usable AWS credentials: a setup problem (exit 2), found before any EC2 call."""


def _source() -> str:
    profile = os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE")
    if profile:
        return f"profile {profile!r}"
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return "the AWS_ACCESS_KEY_ID in the environment"
    return "the credentials found"


def credentials_problem(error: AwsError) -> CredentialsError | None:
    """The one-line CredentialsError for a GetCallerIdentity failure that is about the
    credentials themselves; None for anything else (throttling, network...)."""
    code = error.code
    if code in MISSING:
        return CredentialsError(f"no AWS credentials found; {_HOW}; nothing was sent")
    if code in SSO or "sso" in code.lower():
        profile = os.environ.get("AWS_PROFILE") or "<profile>"
        return CredentialsError(
            f"the AWS SSO session of {_source()} has expired or is not logged in; run "
            f"`aws sso login --profile {profile}` and try again; nothing was sent"
        )
    if code in EXPIRED:
        return CredentialsError(
            f"AWS rejected {_source()}: they have expired ({code}); renew them (`aws sso "
            f"login`, or new temporary keys) or {_HOW}; nothing was sent"
        )
    if code in REJECTED:
        return CredentialsError(
            f"AWS rejected {_source()} ({code}: the key is unknown, disabled or its secret "
            f"does not match); {_HOW}; nothing was sent"
        )
    return None


async def check_credentials(
    session: AioSession, *, region: str, endpoint_url: str | None, request_timeout_s: float
) -> str:
    """The caller's account id; CredentialsError when credentials are missing or rejected.

    Missing credentials are found locally (nothing sent); otherwise one GetCallerIdentity.
    Other failures (network, throttling) are left to planning, which retries them.
    """
    try:
        found = await session.get_credentials()
    except Exception as exc:  # a broken profile or SSO cache fails while resolving
        problem = credentials_problem(clients.to_aws_error(exc, "GetCallerIdentity"))
        if problem is not None:
            raise problem from None
        raise
    if found is None:
        raise CredentialsError(f"no AWS credentials found; {_HOW}; nothing was sent")
    cfg = clients.client_config(max_pool_connections=1, request_timeout_s=request_timeout_s)
    try:
        return await clients.caller_account(
            session, region=region, endpoint_url=endpoint_url, config=cfg
        )
    except AwsError as error:
        problem = credentials_problem(error)
        if problem is not None:
            raise problem from None
        return ""  # not about credentials: planning retries and reports it per lane
