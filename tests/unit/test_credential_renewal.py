"""Renewing credentials without the network: margins, the renewal hook, the stop, the retry
policy's AUTH_EXPIRED budget, and the config's ``duration_s``.

The credentials object is the real one over botocore's real ``AioRefreshableCredentials``;
only its refresh function (an AssumeRole in the engine) is a local coroutine here. The wire
is exercised in ``tests/integration/test_credentials.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiobotocore.credentials import AioCredentials

from fleetimage.aws.clients import Credentials
from fleetimage.aws.credentials import (
    MAX_UNHELPFUL_RENEWALS,
    AccountCredentials,
    assumed_role_credentials,
    renewal_margins,
)
from fleetimage.config import parse_config
from fleetimage.core.errors import (
    AwsError,
    ConfigError,
    CredentialsExpired,
    ErrorKind,
    classify,
)
from fleetimage.engine.retry import retrying

ROLE = "arn:aws:iam::210987654321:role/fleetimage"
SECRET = "CanarySecretKey/0123456789+abcdefghijklm"


class Sts:
    """A stand-in for the engine's retried AssumeRole: hands out numbered sessions."""

    def __init__(self, lifetime_s: float = 900.0) -> None:
        self.lifetime_s = lifetime_s
        self.calls = 0
        self.fail: AwsError | None = None

    async def __call__(self) -> Credentials:
        if self.fail is not None:
            raise self.fail
        self.calls += 1
        expires = datetime.now(UTC) + timedelta(seconds=self.lifetime_s)
        return Credentials(f"ASIA210987654321{self.calls:04d}", SECRET, "token", expires)


async def holder(sts: Sts, fraction: float = 0.15) -> AccountCredentials:
    return await assumed_role_credentials(
        sts, account="210987654321", role_arn=ROLE, renew_fraction=fraction
    )


def expired(code: str = "RequestExpired") -> AwsError:
    return AwsError(code, "Request has expired.", action="DescribeImages", http_status=400)


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and text.strip() == text
    return text


# --- classification and policy ------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [("RequestExpired", 400), ("ExpiredToken", 403), ("ExpiredTokenException", 400)],
)
def test_expiry_answers_are_auth_expired(code: str, status: int) -> None:
    assert classify(code, status) is ErrorKind.AUTH_EXPIRED


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 3
    base_delay_s: float = 5.0  # a sleep here would show as a slow test
    max_delay_s: float = 5.0
    quota_delay_s: float = 5.0
    quota_max_attempts: int = 2


async def test_auth_expired_is_resent_at_once_with_its_own_budget() -> None:
    # Transient errors spend max_attempts; expiry answers do not eat into that budget.
    errors = [expired(), expired(), AwsError("InternalError", "m", action="X", http_status=500)]
    calls = 0
    async for attempt in retrying(Policy(base_delay_s=0.0, max_delay_s=0.0)):
        with attempt:
            calls += 1
            if errors:
                raise errors.pop(0)
    assert calls == 4
    calls = 0
    with pytest.raises(AwsError) as exc:
        async for attempt in retrying(Policy()):
            with attempt:
                calls += 1
                raise expired()
    assert calls == 3 and exc.value.kind is ErrorKind.AUTH_EXPIRED


def test_credentials_expired_is_one_fatal_aws_error() -> None:
    error = CredentialsExpired("x", action="CreateImage", own=True)
    assert isinstance(error, AwsError) and error.kind is ErrorKind.FATAL
    assert error.code == "CredentialsExpired" and error.own


# --- margins ------------------------------------------------------------------------------


def test_margins_follow_the_session() -> None:
    assert renewal_margins(900, 0.15) == pytest.approx((135, 67.5))
    assert renewal_margins(3, 0.15) == pytest.approx((0.45, 0.225))  # 900 s at time_scale 300
    advisory, mandatory = renewal_margins(43200, 0.15)
    assert mandatory < advisory < 43200 / 2


async def test_margins_are_measured_on_the_session_not_botocores_defaults() -> None:
    sts = Sts(lifetime_s=3.0)  # what a 900 s session looks like at time_scale 300
    creds = await holder(sts)
    for _ in range(20):
        frozen = await creds.get_frozen_credentials()
    assert sts.calls == 1  # botocore's 15-minute margin would renew on every call
    assert frozen.access_key.endswith("0001") and frozen.secret_key == SECRET


async def test_a_session_expired_on_arrival_names_the_clock() -> None:
    with pytest.raises(CredentialsExpired) as exc:
        await holder(Sts(lifetime_s=-30))
    assert "clock" in one_line(exc.value) and not exc.value.own


# --- the renewal hook ---------------------------------------------------------------------


async def test_one_renewal_for_every_request_signed_before_it() -> None:
    sts = Sts()
    creds = await holder(sts)
    sent_at = creds.generation
    for _ in range(5):  # five requests in flight with the old keys all answer RequestExpired
        await creds.renew(expired(), sent_at)
    assert sts.calls == 2 and creds.generation == 1  # (the first call issued the session)
    assert (await creds.get_frozen_credentials()).access_key.endswith("0002")


async def test_renewals_that_do_not_help_stop_naming_clock_and_credentials() -> None:
    sts = Sts()
    creds = await holder(sts)
    for _ in range(MAX_UNHELPFUL_RENEWALS):
        await creds.renew(expired(), creds.generation)
    with pytest.raises(CredentialsExpired) as exc:
        await creds.renew(expired(), creds.generation)
    text = one_line(exc.value)
    assert "clock" in text and "credentials" in text and "210987654321" in text
    assert not exc.value.own and sts.calls == 1 + MAX_UNHELPFUL_RENEWALS
    # Stopped: nothing more is signed (so nothing is sent), and nothing is renewed.
    with pytest.raises(CredentialsExpired):
        await creds.get_frozen_credentials()
    with pytest.raises(CredentialsExpired):
        await creds.renew(expired(), creds.generation)
    assert sts.calls == 1 + MAX_UNHELPFUL_RENEWALS


async def test_a_success_between_renewals_resets_the_count() -> None:
    sts = Sts()
    creds = await holder(sts)
    for _ in range(3 * MAX_UNHELPFUL_RENEWALS):
        await creds.renew(expired(), creds.generation)
        creds.worked()
    assert creds.stopped is None and creds.generation == 3 * MAX_UNHELPFUL_RENEWALS


async def test_a_refused_renewal_stops_the_account_in_one_line() -> None:
    sts = Sts()
    creds = await holder(sts)
    sts.fail = AwsError("AccessDenied", "not authorized to assume", action="AssumeRole")
    with pytest.raises(CredentialsExpired) as exc:
        await creds.renew(expired(), creds.generation)
    assert "AccessDenied" in one_line(exc.value) and not exc.value.own


async def test_a_renewal_refused_because_our_own_keys_expired_stops_the_run() -> None:
    sts = Sts()
    creds = await holder(sts)
    # What engine/accounts.py raises when STS answers ExpiredToken to the renewal.
    sts.fail = CredentialsExpired("your own AWS credentials ...", action="AssumeRole", own=True)
    with pytest.raises(CredentialsExpired) as exc:
        await creds.renew(expired("ExpiredToken"), creds.generation)
    assert exc.value.own and creds.stopped is exc.value


async def test_own_static_credentials_stop_at_the_first_expiry() -> None:
    creds = AccountCredentials(
        AioCredentials("AKIA123456789012ABCD", SECRET), label="your own credentials", own=True
    )
    assert not creds.refreshable
    with pytest.raises(CredentialsExpired) as exc:
        await creds.renew(expired("RequestExpired"), creds.generation)
    text = one_line(exc.value)
    assert exc.value.own and "your own AWS credentials" in text and "clock" in text
    with pytest.raises(CredentialsExpired):
        await creds.get_frozen_credentials()


async def test_nothing_shows_a_key() -> None:
    creds = await holder(Sts())
    frozen: Any = await creds.get_frozen_credentials()
    shown = repr(creds) + str(creds) + repr(vars(creds).get("label"))
    for secret in (frozen.access_key, frozen.secret_key, frozen.token):
        assert secret not in shown
    assert creds.access_key is None and creds.secret_key is None and creds.token is None


# --- config ---------------------------------------------------------------------------------


def _config(**account: Any) -> Any:
    return parse_config(
        {
            "targets": [
                {
                    "regions": ["us-east-1"],
                    "all_instances": True,
                    "accounts": [{"role_arn": ROLE, **account}],
                }
            ]
        }
    )


@pytest.mark.parametrize("value", [899, 43201, 0, -1, "3600", 3600.5, True])
def test_duration_s_outside_the_sts_range_is_one_line(value: object) -> None:
    with pytest.raises(ConfigError) as exc:
        _config(duration_s=value)
    text = one_line(exc.value)
    assert "targets[0].accounts[0].duration_s" in text


@pytest.mark.parametrize("value", [0, 0.6, -0.1])
def test_renew_fraction_is_bounded(value: float) -> None:
    with pytest.raises(ConfigError) as exc:
        _config(renew_fraction=value)
    assert "renew_fraction" in one_line(exc.value)


def test_duration_s_defaults_and_bounds() -> None:
    assert _config().targets[0].accounts[0].duration_s == 3600
    assert _config(duration_s=900).targets[0].accounts[0].duration_s == 900
    assert _config(duration_s=43200).targets[0].accounts[0].duration_s == 43200
