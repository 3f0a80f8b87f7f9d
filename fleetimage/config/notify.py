"""``notify:``: where fleetimage tells people that a run or prune ended, that the error budget
tripped or that a lane's endpoint has been failing for a long time.

``webhook_url_env`` names an environment variable; the URL itself (a secret: whoever has it
can post to the channel) is read from the environment when a command starts and is never
written to the config, the journal, the logs or the reports.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fleetimage.config.checks import PosFloat
from fleetimage.core.errors import ConfigError

__all__ = ["NotifyOptions", "sns_region"]

# arn:PARTITION:sns:REGION:ACCOUNT:TOPIC (topic names: 1-256 of letters, digits, - and _;
# FIFO topics end in .fifo).
_SNS_ARN_RE = re.compile(
    r"^arn:(aws|aws-cn|aws-us-gov):sns:[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d:\d{12}:"
    r"[A-Za-z0-9_-]{1,256}(\.fifo)?$"
)
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


def sns_region(topic_arn: str) -> str:
    """The region of an SNS topic ARN (Publish must be sent there)."""
    return topic_arn.split(":")[3]


class NotifyOptions(BaseModel):
    """Notifications: an SNS topic and/or a chat webhook (Slack, Teams and the like).

    ``timeout_s``: the most one notification may take, retries included (wall seconds; a
    notification never holds a run longer). ``attempts``: tries per channel and notification.
    ``outage_alert_s``: a lane whose breaker stays open (its endpoint failing) this long, in
    AWS seconds, is announced once; a lane that stops (``retry.max_outage_s``) is announced
    at once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    sns_topic_arn: str | None = None
    webhook_url_env: str | None = None
    timeout_s: PosFloat = 30.0
    attempts: Annotated[int, Field(strict=True, ge=1, le=10)] = 3
    outage_alert_s: PosFloat = 300.0

    @field_validator("sns_topic_arn")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is not None and not _SNS_ARN_RE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an SNS topic ARN (expected like "
                "arn:aws:sns:us-east-1:123456789012:fleet-alerts)"
            )
        return value

    @field_validator("webhook_url_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME_RE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an environment variable name: give the NAME of the variable "
                "that holds the webhook URL (e.g. FLEETIMAGE_WEBHOOK_URL), never the URL"
            )
        return value

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.sns_topic_arn is None and self.webhook_url_env is None:
            raise ValueError("set sns_topic_arn and/or webhook_url_env (or remove notify)")
        return self

    def webhook_url(
        self, environ: Mapping[str, str] | None = None, *, source: str = ""
    ) -> str | None:
        """The webhook URL from the environment, or None without ``webhook_url_env``.

        Raises :class:`ConfigError` (one line naming the field and the variable, never its
        value) when the variable is unset, empty or not an http(s) URL."""
        name = self.webhook_url_env
        if name is None:
            return None
        env = os.environ if environ is None else environ
        value = env.get(name, "").strip()
        field = "notify.webhook_url_env"
        if not value:
            raise ConfigError(
                f"environment variable {name} is not set; export it with the webhook URL",
                file=source or None,
                field=field,
            )
        try:
            parts = urlsplit(value)
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            parts, port_ok = None, False
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or not port_ok
        ):
            raise ConfigError(
                f"environment variable {name} does not hold an http(s) URL",
                file=source or None,
                field=field,
            )
        return value
