"""The wire of notifications: SNS ``Publish`` (aiobotocore) and a chat webhook (aiohttp).

Both raise :class:`~fleetimage.core.errors.NotificationError` with a message safe to log and
print: the webhook URL (a secret) is never part of it, only the channel's name, an HTTP
status or the kind of network failure.
"""

from __future__ import annotations

import json
import os

import aiohttp
from aiobotocore.session import AioSession

from fleetimage.aws.clients import client_config, ec2_client, to_aws_error
from fleetimage.core.errors import NotificationError

__all__ = ["NOTIFY_PERMISSIONS", "SnsChannel", "WebhookChannel"]

#: The IAM action a ``notify.sns_topic_arn`` needs (on the identity running fleetimage).
NOTIFY_PERMISSIONS = {"Publish": "sns:Publish"}


class SnsChannel:
    """Publishes each notice to one SNS topic, signed with the caller's own credentials."""

    name = "sns"

    def __init__(
        self,
        session: AioSession,
        topic_arn: str,
        *,
        region: str,
        endpoint_url: str | None,
        request_timeout_s: float,
    ) -> None:
        self.session = session
        self.topic_arn = topic_arn
        self.region = region
        self.endpoint_url = endpoint_url
        self.config = client_config(max_pool_connections=1, request_timeout_s=request_timeout_s)

    async def send(self, subject: str, text: str) -> None:
        async with ec2_client(
            self.session,
            region=self.region,
            endpoint_url=self.endpoint_url,
            config=self.config,
            service="sns",
        ) as sns:
            try:
                await sns.publish(TopicArn=self.topic_arn, Subject=subject, Message=text)
            except Exception as exc:
                error = to_aws_error(exc, "Publish")
                raise NotificationError(f"sns: {error.code}: {error.message}") from None


class WebhookChannel:
    """POSTs ``{"text": ...}`` (JSON) to a chat webhook: Slack, Teams and most chat tools
    render the ``text`` field of such a message."""

    name = "webhook"

    def __init__(self, url: str, *, request_timeout_s: float) -> None:
        self._url = url  # a secret: never in a message, a log line or a repr
        self.timeout = aiohttp.ClientTimeout(total=request_timeout_s)

    def __repr__(self) -> str:
        return "WebhookChannel(<url redacted>)"

    async def send(self, subject: str, text: str) -> None:
        body = json.dumps({"text": text})
        try:
            async with (
                aiohttp.ClientSession(timeout=self.timeout) as http,
                http.post(
                    self._url, data=body, headers={"Content-Type": "application/json"}
                ) as answer,
            ):
                if answer.status >= 300:
                    raise NotificationError(f"webhook: answered HTTP {answer.status}")
        except NotificationError:
            raise
        except aiohttp.ClientConnectorError as exc:
            # The OS's words for the errno only: aiohttp's own text names the host and port.
            code = exc.os_error.errno if exc.os_error is not None else None
            why = os.strerror(code) if code else "connection failed"
            raise NotificationError(f"webhook: cannot connect ({why})") from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise NotificationError("webhook: no answer in time") from None
        except aiohttp.ClientError as exc:
            raise NotificationError(f"webhook: {type(exc).__name__}") from None
