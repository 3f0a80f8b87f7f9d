"""One lane per (account, region): its client, its token buckets, its retry policy.

Every request of the lane goes through :meth:`Lane.send`, retries included, so the lane's
buckets see everything the lane sends and the server's throttles tell them how fast to go.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from fleetimage.aws.clients import to_aws_error
from fleetimage.aws.credentials import AccountCredentials
from fleetimage.core.clock import now
from fleetimage.core.errors import AwsError, ErrorKind
from fleetimage.core.models import LaneKey, Requested, Retried, Throttled
from fleetimage.engine.bus import Bus
from fleetimage.engine.limiter import Limiter
from fleetimage.engine.retry import RetryPolicy, retrying
from fleetimage.engine.stop import Stopper

__all__ = ["Lane"]

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


class Lane:
    """The (account, region) unit: a long-lived client and its own buckets."""

    def __init__(
        self,
        key: LaneKey,
        client: Any,
        limiter: Limiter,
        retry_policy: RetryPolicy,
        *,
        run_id: str,
        bus: Bus,
        stopper: Stopper | None = None,
        credentials: AccountCredentials | None = None,
    ) -> None:
        self.key = key
        self.client = client
        # What the client signs with; renewed on an expiry answer (aws/credentials.py).
        self.credentials = credentials
        self.limiter = limiter
        self.retry_policy = retry_policy
        self.run_id = run_id
        self.bus = bus
        self.stopper = stopper or Stopper()
        # CreateImage health, for telling "this endpoint rejects our request" from flakiness.
        self.create_successes = 0
        self.create_failure_streak = 0

    async def send(
        self,
        action: str,
        params: dict[str, Any],
        *,
        instance_id: str | None = None,
        write_ahead: Requested | None = None,
        interruptible: bool = True,
    ) -> Any:
        """One attempt: wait for a token, send, feed the outcome back to the bucket.

        ``write_ahead``: committed to the ledger once the token is ours, right before the
        send (a stop during the wait then leaves nothing that looks sent). ``interruptible``:
        False for what must go on after a stop of new work (the waiter's polls)."""
        bucket = self.limiter.bucket(action)
        if interruptible:
            with self.stopper.interruptible():  # a stop ends the wait; never the send below
                await bucket.acquire()
        else:
            await bucket.acquire()
        if write_ahead is not None:
            await self.bus.before_send(write_ahead)
        sent_at = bucket.now()  # a late throttle of a request sent before a cut is no new signal
        creds = self.credentials
        generation = creds.generation if creds is not None else 0
        method = getattr(self.client, _SNAKE.sub("_", action).lower())
        try:
            answer = await method(**params)
        except Exception as exc:
            error = to_aws_error(exc, action)
            if error.kind is ErrorKind.THROTTLE:
                rate = bucket.on_throttle(sent_at=sent_at)
                await self.bus.emit(
                    Throttled(
                        self.run_id,
                        self.key.account,
                        self.key.region,
                        instance_id,
                        now(),
                        action=action,
                        new_rate_per_s=rate,
                    )
                )
            elif error.kind is ErrorKind.AUTH_EXPIRED and creds is not None:
                await creds.renew(error, generation)  # the retry resends; raises if it cannot
            raise error from None
        bucket.on_success()
        if creds is not None:
            creds.worked()
        return answer

    async def call(
        self,
        action: str,
        params: dict[str, Any],
        *,
        instance_id: str | None = None,
        interruptible: bool = True,
    ) -> Any:
        """A call that is safe to repeat (reads): retried per the policy."""
        async for attempt in retrying(
            self.retry_policy,
            on_retry=self.on_retry(action, instance_id),
            stopper=self.stopper if interruptible else None,
        ):
            with attempt:
                return await self.send(
                    action, params, instance_id=instance_id, interruptible=interruptible
                )
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def on_retry(
        self, action: str, instance_id: str | None
    ) -> Callable[[AwsError, int, float], Awaitable[None]]:
        """The callback that reports a retry (non-throttle) as a Retried event."""

        async def on_retry(error: AwsError, attempt: int, delay_s: float) -> None:
            if error.kind is ErrorKind.THROTTLE:
                return  # already reported as Throttled; a Retried line per throttle is noise
            await self.bus.emit(
                Retried(
                    self.run_id,
                    self.key.account,
                    self.key.region,
                    instance_id,
                    now(),
                    action=action,
                    attempt=attempt,
                    error_code=error.code,
                    delay_s=delay_s,
                )
            )

        return on_retry
