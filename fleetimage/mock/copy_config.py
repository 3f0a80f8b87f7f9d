"""The mock's CopyImage knobs (:class:`CopyConfig`, ``MockConfig.copies``).

Apart from the instance knobs because a copy behaves apart: its pending time has its own
distribution (a copy moves every snapshot across regions, usually slower than a snapshot),
each destination region caps concurrent copies, and a copy's KMS key is checked only once
the copy runs (an unknown key fails the image, not the request — as on AWS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fleetimage.core.errors import MockError

__all__ = ["CopyConfig"]


@dataclass(frozen=True, slots=True)
class CopyConfig:
    """``pending_s``/``pending_sigma``: the median AWS seconds a copy stays pending
    (log-normal with sigma > 0), a pure function of (seed, account, source region, source
    instance, destination), so every client of a fleet gets the same copy times.
    ``max_concurrent``: pending copies per (account, destination region); one more answers
    ``ResourceLimitExceeded``. ``kms_keys``: the key ids, ARNs and aliases that exist (None:
    every well-formed reference does); a copy with any other key ends ``failed``.
    ``failure_rate``: the share of copies that end ``failed`` for no reason of the caller's.
    """

    pending_s: float = 4.0
    pending_sigma: float = 0.0
    max_concurrent: int = 100
    kms_keys: frozenset[str] | None = None
    failure_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("pending_s", "pending_sigma"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise MockError(f"CopyConfig.{name} must be a finite number >= 0, got {value!r}")
        if isinstance(self.max_concurrent, bool) or not isinstance(self.max_concurrent, int):
            raise MockError("CopyConfig.max_concurrent must be an int >= 1")
        if self.max_concurrent < 1:
            raise MockError("CopyConfig.max_concurrent must be an int >= 1")
        rate = self.failure_rate
        if not isinstance(rate, int | float) or math.isnan(rate) or not 0.0 <= rate <= 1.0:
            raise MockError(f"CopyConfig.failure_rate must be between 0 and 1, got {rate!r}")
        if self.kms_keys is not None:
            keys: object = self.kms_keys
            if isinstance(keys, str):
                raise MockError("CopyConfig.kms_keys must be a set of key references")
            object.__setattr__(self, "kms_keys", frozenset(self.kms_keys))
