"""Amazon SNS (Query protocol): ``Publish`` only. Every accepted message is kept (topic,
subject, message) for tests to read (``MockEC2.sns_messages``) and counted like any action."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from fleetimage.mock.protocol import ApiError, Params, esc

__all__ = ["SNS_NS", "PublishedMessage", "error", "publish"]

SNS_NS = "http://sns.amazonaws.com/doc/2010-03-31/"
_TOPIC_RE = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
_SUBJECT_RE = re.compile(r"^[\x20-\x7e]{1,100}$")  # ASCII, no control characters, <= 100


@dataclass(frozen=True, slots=True)
class PublishedMessage:
    topic_arn: str
    subject: str | None
    message: str
    message_id: str


def publish(params: Params, rid: str, kept: list[PublishedMessage]) -> bytes:
    """The XML answer to Publish (ApiError on a bad request, as SNS answers it)."""
    if params.get("Action") != "Publish":
        raise ApiError(
            "InvalidAction", f"the mock SNS knows Publish only, not {params.get('Action')!r}"
        )
    topic = params.get("TopicArn", "")
    if not _TOPIC_RE.fullmatch(topic):
        raise ApiError("InvalidParameter", "Invalid parameter: TopicArn")
    message = params.get("Message", "")
    if not message:
        raise ApiError("InvalidParameter", "Invalid parameter: Empty message")
    if len(message.encode()) > 262_144:
        raise ApiError("InvalidParameter", "Invalid parameter: Message too long")
    subject = params.get("Subject")
    if subject is not None and not _SUBJECT_RE.fullmatch(subject):
        raise ApiError("InvalidParameter", "Invalid parameter: Subject")
    message_id = str(uuid.uuid4())
    kept.append(PublishedMessage(topic, subject, message, message_id))
    return (
        f'<PublishResponse xmlns="{SNS_NS}"><PublishResult><MessageId>{message_id}</MessageId>'
        f"</PublishResult><ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata>"
        "</PublishResponse>"
    ).encode()


def error(code: str, message: str, rid: str) -> bytes:
    return (
        f'<ErrorResponse xmlns="{SNS_NS}"><Error><Type>Sender</Type><Code>{esc(code)}</Code>'
        f"<Message>{esc(message)}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>"
    ).encode()
