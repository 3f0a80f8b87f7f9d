"""aiobotocore sessions and clients per (account, region); assume-role; the wire boundary.

This module (with ``mock/``) is the only one that knows the wire. Everything above it sees
:class:`~fleetimage.core.errors.AwsError` with a classified ``kind``, never a botocore exception.
The IAM permissions each call needs are declared here, next to the calls, as data
(:data:`PERMISSIONS`), so ``fleetimage permissions`` prints exactly what the engine uses.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import platform
import re
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import aiohttp
import botocore.exceptions
import botocore.utils
from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession
from aiobotocore.session import AioSession
from botocore.awsrequest import AWSRequest
from botocore.parsers import ResponseParserError

from fleetimage.aws.loading import open_client
from fleetimage.aws.model import LeanLoader
from fleetimage.aws.parsing import LeanParserFactory
from fleetimage.core.errors import AwsError, ErrorKind

__all__ = [
    "MUTATING_ACTIONS",
    "PERMISSIONS",
    "Credentials",
    "assume_role",
    "caller_account",
    "client_config",
    "ec2_client",
    "new_session",
    "to_aws_error",
]

# The IAM actions the engine's calls need: the source of `fleetimage permissions`.
PERMISSIONS: Mapping[str, str] = {
    "DescribeInstances": "ec2:DescribeInstances",
    "CreateImage": "ec2:CreateImage",
    "DescribeImages": "ec2:DescribeImages",
    # CreateImage with TagSpecifications needs ec2:CreateTags on the image and snapshots.
    "CreateTags": "ec2:CreateTags",
    # fleetimage prune: deletion (limited to this fleet's tag) and the safety checks.
    "DeregisterImage": "ec2:DeregisterImage",
    "DeleteSnapshot": "ec2:DeleteSnapshot",
    "DescribeSnapshots": "ec2:DescribeSnapshots",
    "DescribeImageReferences": "ec2:DescribeImageReferences",
    "ListRules": "rbin:ListRules",
    # copy: (cross-region copies), sent in the destination region.
    "CopyImage": "ec2:CopyImage",
    "AssumeRole": "sts:AssumeRole",
    "GetCallerIdentity": "sts:GetCallerIdentity",
}

# Calls that change state: a failure after the request may have been sent is ambiguous.
MUTATING_ACTIONS = frozenset(
    {"CreateImage", "CopyImage", "CreateTags", "DeregisterImage", "DeleteSnapshot"}
)

_ACCOUNT_IN_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/.+$")


@dataclass(frozen=True, slots=True)
class Credentials:
    """Temporary or static credentials for one account. ``repr`` never shows the secrets.
    ``expiration``: when temporary credentials stop working (AssumeRole's ``Expiration``)."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    expiration: datetime | None = None

    def __repr__(self) -> str:
        return "Credentials(<redacted>)"

    def client_kwargs(self) -> dict[str, str]:
        kwargs = {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
        }
        if self.session_token:
            kwargs["aws_session_token"] = self.session_token
        return kwargs


# The EC2 operations a client of ours has: those declared in PERMISSIONS (so a call missing
# there fails in every test, not in a user's IAM policy). A client builds a method per
# operation of its model when it is created; EC2 has ~800, which cost ~60 ms a client.
_EC2_OPERATIONS = frozenset(a for a, p in PERMISSIONS.items() if p.startswith("ec2:"))


def new_session(profile: str | None = None) -> AioSession:
    """The session ``session=None`` builds: the standard credential chain (``profile`` or
    ``AWS_PROFILE``, environment, config files), the EC2 model cut to :data:`PERMISSIONS`'s
    operations (its clients have no others) and the lean parser. A session made otherwise
    is used as given, without either: ~60 ms more a client, more CPU an answer."""
    session = AioSession(profile=profile)  # get_session(), with the profile
    data_path = session.get_config_variable("data_path")
    paths = [os.path.expanduser(os.path.expandvars(p)) for p in (data_path or "").split(os.pathsep)]
    session.register_component(
        "data_loader", LeanLoader([p for p in paths if p], operations=_EC2_OPERATIONS)
    )
    # botocore parses every timestamp with dateutil: ~60 % of planning's CPU goes to
    # DescribeInstances answers, half of it to their LaunchTime/AttachTime fields. EC2's
    # answers go through a parser that does botocore's per-element bookkeeping once per shape.
    parsers = LeanParserFactory()
    parsers.set_parser_defaults(timestamp_parser=parse_timestamp)
    session.register_component("response_parser_factory", parsers)
    session.register("before-sign", _encode_body_once)
    return session


def _encode_body_once(request: AWSRequest, **_: Any) -> None:
    """A query request's body (EC2, STS) stays a dict until it is sent, and botocore
    urlencodes it again each time it is read: to sign it, then to send it. Encoded once
    here, before signing (botocore's hook for changing a request), the same bytes are
    signed and sent."""
    if isinstance(request.data, dict):
        request.data = encode_query(request.data)


def encode_query(params: Mapping[str, Any]) -> bytes:
    """``params`` as botocore would encode them (``urlencode`` with ``quote_plus``), faster.

    A tagged CreateImage has ~25 parameters; quoting them was ~10 % of a call's CPU. Their
    names repeat from call to call ("TagSpecification.1.Tag.2.Key"), and so do most values
    (tag keys and values, "true"), so each distinct string is quoted once (a bounded cache);
    the rest (instance ids, names) are mostly characters quoting leaves alone."""
    parts = []
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            # anything the query serializer does not make: as botocore would
            return urllib.parse.urlencode(list(params.items()), doseq=True).encode()
        parts.append(f"{_quoted(key)}={_quoted(str(value))}")
    return "&".join(parts).encode()


@functools.lru_cache(maxsize=4096)
def _quoted(text: str) -> str:
    return text if _UNQUOTED.fullmatch(text) else urllib.parse.quote_plus(text)


# What quote_plus leaves as it is: ASCII letters and digits, and _.-~
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]*")


def parse_timestamp(value: str | int | float) -> datetime:
    """EC2's ISO 8601 timestamps through the stdlib's fast parser; anything else via botocore."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:  # EC2 always sends one; others keep botocore's rules
                return parsed
    return cast(datetime, botocore.utils.parse_timestamp(value))


def _version() -> str:
    try:
        return importlib.metadata.version("fleetimage")
    except importlib.metadata.PackageNotFoundError:  # a checkout that was never installed
        return "0"


# The session adds botocore's own name and version after it.
USER_AGENT = (
    f"fleetimage/{_version()} Python/{platform.python_version()} "
    f"{platform.system()}/{platform.release()}"
)


class SharedTLSSession(AIOHTTPSession):  # type: ignore[misc]
    """aiobotocore's HTTP session, with the TLS contexts built once per process.

    aiobotocore builds a new TLS context for each client, loading the whole CA bundle into
    it: ~30 ms of CPU a client, ten times what creating the client costs. With one client per
    lane that is a quarter of a second before a fleet of 8 lanes can discover, and seconds
    for an organisation's hundreds. The contexts depend only on the verify, client certificate
    and proxy settings (the proxy's URL, CA bundle and client certificate), so clients with
    the same ones share them (an ``SSLContext`` may serve any number of connections).
    """

    def _build_ssl_contexts(self, proxy_url: str | None) -> Any:
        proxy = self._proxy_config.settings
        key = (
            self._verify,
            self._cert_file,
            self._key_file,
            proxy_url,
            proxy.get("proxy_ca_bundle"),
            proxy.get("proxy_client_cert"),
        )
        with _TLS_LOCK:  # aiobotocore builds them in worker threads
            built = _TLS_CONTEXTS.get(key)
            if built is None:
                built = _TLS_CONTEXTS[key] = super()._build_ssl_contexts(proxy_url)
            return built


_TLS_LOCK = threading.Lock()
_TLS_CONTEXTS: dict[tuple[Any, ...], Any] = {}


def client_config(*, max_pool_connections: int, request_timeout_s: float) -> AioConfig:
    # botocore's own retries would stack with tenacity's and hide throttles from the limiter.
    # Its parameter validation is skipped: every value we send was built from a validated
    # config or from EC2's own answers (it costs ~5 % of a call's CPU).
    return AioConfig(
        retries={"total_max_attempts": 1},
        parameter_validation=False,
        # A fixed User-Agent (botocore's documented override): botocore otherwise builds it
        # again for every request from ~30 sanitised components, ~8 % of a call's CPU.
        user_agent=USER_AGENT,
        max_pool_connections=max_pool_connections,
        connect_timeout=min(10.0, request_timeout_s),
        read_timeout=request_timeout_s,
        # Not True: that loads the models in a thread for every client (aws/loading.py).
        warm_up_loader_caches=False,
        http_session_cls=SharedTLSSession,
    )


def ec2_client(
    session: AioSession,
    *,
    region: str,
    endpoint_url: str | None,
    config: AioConfig,
    credentials: Credentials | None = None,
    service: str = "ec2",
) -> contextlib.AbstractAsyncContextManager[Any]:
    """An EC2 (or ``service``, e.g. rbin) client context manager; one per lane, kept.

    It signs with ``session``'s credentials (an account's renewing ones, see
    :func:`fleetimage.aws.credentials.account_session`) unless fixed ``credentials`` are given.
    """
    kwargs: dict[str, Any] = {"region_name": region, "config": config}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if credentials is not None:
        kwargs.update(credentials.client_kwargs())
    return open_client(session, service, **kwargs)


def _sts_client(
    session: AioSession, *, region: str, endpoint_url: str | None, config: AioConfig
) -> contextlib.AbstractAsyncContextManager[Any]:
    kwargs: dict[str, Any] = {"region_name": region, "config": config}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    return open_client(session, "sts", **kwargs)


def account_of_role(role_arn: str) -> str:
    m = _ACCOUNT_IN_ARN.match(role_arn)
    if not m:
        raise AwsError("ValidationError", f"malformed role ARN {role_arn!r}", action="AssumeRole")
    return m.group(1)


async def assume_role(
    session: AioSession,
    *,
    role_arn: str,
    external_id: str | None,
    session_name: str,
    region: str,
    endpoint_url: str | None,
    config: AioConfig,
    duration_s: int = 3600,
) -> Credentials:
    """AssumeRole through the region's STS endpoint; errors come back as AwsError.

    A ``DurationSeconds`` the role refuses (above its MaxSessionDuration, or above 3,600 for a
    chained role: STS fails rather than capping) comes back as one line naming ``duration_s``.
    """
    params: dict[str, Any] = {
        "RoleArn": role_arn,
        "RoleSessionName": session_name,
        "DurationSeconds": duration_s,
    }
    if external_id:
        params["ExternalId"] = external_id
    async with _sts_client(session, region=region, endpoint_url=endpoint_url, config=config) as sts:
        try:
            answer = await sts.assume_role(**params)
        except Exception as exc:
            error = to_aws_error(exc, "AssumeRole")
            raise _duration_refused(error, role_arn, duration_s) or error from None
    creds = answer["Credentials"]
    return Credentials(
        creds["AccessKeyId"],
        creds["SecretAccessKey"],
        creds.get("SessionToken"),
        creds.get("Expiration"),
    )


def _duration_refused(error: AwsError, role_arn: str, duration_s: int) -> AwsError | None:
    """STS's "DurationSeconds exceeds ..." as one line that says which config value to change."""
    if error.code != "ValidationError" or "DurationSeconds" not in error.message:
        return None
    chained = "chaining" in error.message
    why = (
        "your own credentials are themselves an assumed role (role chaining), which allows "
        "at most 3600"
        if chained
        else "it is above the role's MaxSessionDuration (raise that in IAM, up to 43200)"
    )
    return AwsError(
        error.code,
        f"AssumeRole refused accounts[].duration_s = {duration_s} for {role_arn}: {why}; "
        f"lower duration_s (AWS: {error.message.rstrip('.')})",
        action="AssumeRole",
        http_status=error.http_status,
        kind=ErrorKind.FATAL,
    )


async def caller_account(
    session: AioSession, *, region: str, endpoint_url: str | None, config: AioConfig
) -> str:
    """The account id of the caller's own credentials (GetCallerIdentity)."""
    async with _sts_client(session, region=region, endpoint_url=endpoint_url, config=config) as sts:
        try:
            answer = await sts.get_caller_identity()
        except Exception as exc:
            raise to_aws_error(exc, "GetCallerIdentity") from None
    return str(answer["Account"])


def to_aws_error(exc: Exception, action: str) -> AwsError:
    """Translate a botocore/aiohttp failure into a classified AwsError.

    A mutating call that failed anywhere past "could not connect" may have been applied
    (EC2 has no ClientToken for CreateImage), so it is AMBIGUOUS: the caller must look the
    result up before sending again. Throttles are never ambiguous: AWS applied nothing.
    """
    if isinstance(exc, AwsError):
        return exc
    mutating = action in MUTATING_ACTIONS
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "Unknown"))
        message = str(err.get("Message", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        error = AwsError(code, message, action=action, http_status=status)
        if mutating and error.kind is ErrorKind.TRANSIENT:
            error.kind = ErrorKind.AMBIGUOUS
        return error
    if isinstance(exc, botocore.exceptions.ConnectTimeoutError):
        # Never connected: nothing was sent, so even a mutating call is safe to resend.
        return AwsError("ConnectTimeout", str(exc), action=action, kind=ErrorKind.TRANSIENT)
    if isinstance(
        exc,
        botocore.exceptions.NoCredentialsError
        | botocore.exceptions.NoRegionError
        # The request was refused before it was built: nothing was sent, a resend is the same.
        | botocore.exceptions.ParamValidationError,
    ):
        return AwsError(type(exc).__name__, str(exc), action=action, kind=ErrorKind.FATAL)
    kind = ErrorKind.AMBIGUOUS if mutating else ErrorKind.TRANSIENT
    if isinstance(exc, ResponseParserError):
        # Not an AWS answer at all (an HTML 500 page, a proxy's error): say so briefly; the
        # body itself is noise and could be large.
        return AwsError(
            "InvalidResponse",
            "the endpoint answered something that is not an AWS API response "
            f"({str(exc).splitlines()[0][:100]})",
            action=action,
            kind=kind,
        )
    if isinstance(
        exc,
        botocore.exceptions.BotoCoreError | aiohttp.ClientError | TimeoutError | OSError,
    ):
        return AwsError(
            type(exc).__name__, str(exc) or type(exc).__name__, action=action, kind=kind
        )
    # Anything else is a bug on our side or the library's: fail this call clearly, no retries.
    return AwsError(
        "ClientFailure", f"{type(exc).__name__}: {exc}", action=action, kind=ErrorKind.FATAL
    )
