"""The wire boundary without the wire: timestamps and error translation."""

from __future__ import annotations

import ssl
from typing import Any

import botocore.exceptions
import botocore.utils
import pytest
from botocore.awsrequest import AWSRequest
from botocore.httpsession import DEFAULT_CA_BUNDLE
from botocore.parsers import ResponseParserError
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetimage.aws.clients import Credentials, encode_query, parse_timestamp, to_aws_error
from fleetimage.core.errors import ErrorKind


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-27T15:00:00.000Z",
        "2026-11-27T15:00:00Z",
        "2026-11-27T15:00:00.123456+02:00",
        "2026-11-27T15:00:00",
        1_700_000_000,
        "Thu, 27 Nov 2026 15:00:00 GMT",
    ],
)
def test_fast_timestamps_agree_with_botocore(value: str | int) -> None:
    assert parse_timestamp(value) == botocore.utils.parse_timestamp(value)


def _botocores(params: dict[str, Any]) -> bytes:
    body = AWSRequest(method="POST", url="https://ec2.example", data=params).body
    assert isinstance(body, bytes)
    return body


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=30),
        st.one_of(st.text(max_size=40), st.integers(), st.booleans(), st.floats()),
        max_size=12,
    )
)
def test_query_bodies_are_encoded_as_botocore_encodes_them(params: dict[str, Any]) -> None:
    assert encode_query(params) == _botocores(params)
    assert encode_query(params) == _botocores(params)  # again: through the cache


def test_a_tagged_create_image_body_is_encoded_as_botocore_encodes_it() -> None:
    params: dict[str, Any] = {
        "Action": "CreateImage",
        "InstanceId": "i-0123456789abcdef0",
        "Name": "web 1/{date} (nightly)",
        "NoReboot": "true",
        "TagSpecification.1.ResourceType": "image",
        "TagSpecification.1.Tag.1.Key": "fleetimage:run-id",
        "TagSpecification.1.Tag.1.Value": "r-20261129",
        "TagSpecification.1.Tag.2.Key": "Owner",
        "TagSpecification.1.Tag.2.Value": "équipe ops & co",
        "MaxResults": 5,
    }
    assert encode_query(params) == _botocores(params)


def client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    response = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return botocore.exceptions.ClientError(response, "Op")  # type: ignore[arg-type]


def test_a_5xx_to_create_image_is_ambiguous_but_a_throttle_is_not() -> None:
    assert (
        to_aws_error(client_error("InternalError", 500), "CreateImage").kind is ErrorKind.AMBIGUOUS
    )
    assert (
        to_aws_error(client_error("InternalError", 500), "DescribeImages").kind
        is ErrorKind.TRANSIENT
    )
    throttle = to_aws_error(client_error("RequestLimitExceeded", 503), "CreateImage")
    assert throttle.kind is ErrorKind.THROTTLE


def test_connection_failures() -> None:
    never_sent = botocore.exceptions.ConnectTimeoutError(endpoint_url="http://127.0.0.1:1")
    assert to_aws_error(never_sent, "CreateImage").kind is ErrorKind.TRANSIENT
    lost = botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1")
    assert to_aws_error(lost, "CreateImage").kind is ErrorKind.AMBIGUOUS
    assert to_aws_error(lost, "DescribeImages").kind is ErrorKind.TRANSIENT
    # Refused before it was built: nothing was sent and a resend would be refused the same way.
    invalid = botocore.exceptions.ParamValidationError(report="Invalid type for parameter Name")
    assert to_aws_error(invalid, "CreateImage").kind is ErrorKind.FATAL


def test_non_aws_answers_and_surprises() -> None:
    html = ResponseParserError("Unable to parse response, invalid XML received:\nb'<html>...'")
    error = to_aws_error(html, "CreateImage")
    assert error.code == "InvalidResponse" and error.kind is ErrorKind.AMBIGUOUS
    assert "<html>" not in error.message
    bug = to_aws_error(TypeError("boom"), "DescribeImages")
    assert bug.code == "ClientFailure" and bug.kind is ErrorKind.FATAL


def test_credentials_never_show_in_repr() -> None:
    creds = Credentials("AKIA123456789012ABCD", "s" * 40, "token")
    assert "AKIA" not in repr(creds) and "token" not in repr(creds)


def test_tls_contexts_are_shared_only_between_the_same_settings() -> None:
    """Clients share a TLS context only when verification, client certificate and proxy
    agree: a client that does not verify must never hand its context to one that does."""
    from fleetimage.aws.clients import SharedTLSSession

    def built(**kwargs: Any) -> Any:
        return SharedTLSSession(**kwargs)._build_ssl_contexts(None)[0]

    verifying = built()
    assert built() is verifying and verifying.verify_mode == ssl.CERT_REQUIRED
    lax = built(verify=False)
    assert lax is not verifying and lax.verify_mode == ssl.CERT_NONE
    assert built(verify=False) is lax

    def through_proxy(**settings: Any) -> Any:
        session = SharedTLSSession(
            proxies={"https": "https://proxy.example:8443"}, proxies_config=settings
        )
        return session._build_ssl_contexts("https://proxy.example:8443")[1]

    plain = through_proxy()
    assert through_proxy() is plain
    assert through_proxy(proxy_ca_bundle=DEFAULT_CA_BUNDLE) is not plain


def test_new_session_takes_a_profile_and_keeps_the_lean_parts(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleetimage import new_session
    from fleetimage.aws.model import LeanLoader
    from fleetimage.aws.parsing import LeanParserFactory

    config = tmp_path / "config"
    config.write_text("[profile prod]\nregion = eu-west-3\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    for session in (new_session(profile="prod"), new_session()):
        assert isinstance(session.get_component("data_loader"), LeanLoader)
        assert isinstance(session.get_component("response_parser_factory"), LeanParserFactory)
    assert new_session(profile="prod").get_config_variable("region") == "eu-west-3"
    assert new_session().get_config_variable("region") is None
