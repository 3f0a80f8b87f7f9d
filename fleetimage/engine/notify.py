"""The notifications a config asks for (``notify:``): channels on the wire, one notifier.

:func:`notifier_for` is called before anything is sent: an unset webhook variable, or one
that holds no http(s) URL, is a :class:`~fleetimage.core.errors.ConfigError` then (the CLI's
exit 2). The notifier is an observer of the run's events (pass it in ``on_event``) and an
async context manager that owns its sender (see :mod:`fleetimage.output.notifier`)::

    notifier = notifier_for(config, session=session)
    async with notifier:
        report = await image_fleet(config, on_event=[notifier], ...)
        notifier.post(run_notice(report, None, fleet=config.name))
"""

from __future__ import annotations

from collections.abc import Mapping

from aiobotocore.session import AioSession

from fleetimage.aws.notify import SnsChannel, WebhookChannel
from fleetimage.config import FleetConfig
from fleetimage.config.notify import sns_region
from fleetimage.output.notifier import Channel, Notifier

__all__ = ["check_notify", "notifier_for"]


def check_notify(config: FleetConfig, environ: Mapping[str, str] | None = None) -> None:
    """Raise ConfigError if ``notify`` names a webhook variable that is unusable now."""
    if config.notify is not None:
        config.notify.webhook_url(environ, source=config.source or "")


def notifier_for(
    config: FleetConfig,
    *,
    session: AioSession,
    endpoint_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Notifier | None:
    """The config's notifier, or None without ``notify``. SNS is signed with ``session``'s
    (the caller's own) credentials; ``endpoint_url`` (the mock) serves SNS too."""
    options = config.notify
    if options is None:
        return None
    url = options.webhook_url(environ, source=config.source or "")
    # Each attempt's share of the bound: a hanging endpoint is tried again, within timeout_s.
    request_timeout_s = min(config.retry.request_timeout_s, options.timeout_s / options.attempts)
    channels: list[Channel] = []
    if options.sns_topic_arn is not None:
        channels.append(
            SnsChannel(
                session,
                options.sns_topic_arn,
                region=sns_region(options.sns_topic_arn),
                endpoint_url=endpoint_url,
                request_timeout_s=request_timeout_s,
            )
        )
    if url is not None:
        channels.append(WebhookChannel(url, request_timeout_s=request_timeout_s))
    return Notifier(
        channels,
        fleet=config.name,
        attempts=options.attempts,
        timeout_s=options.timeout_s,
        # AWS seconds, like every time in the config: a time-scaled mock scales it too.
        outage_alert_s=options.outage_alert_s / config.time_scale,
        time_scale=config.time_scale,
    )
