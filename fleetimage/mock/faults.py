"""Injected faults, drawn from a seeded ``random.Random`` so a run is reproducible."""

from __future__ import annotations

import enum
import random

from fleetimage.mock.fault_config import FaultConfig

__all__ = ["Fault", "FaultInjector"]


class Fault(enum.Enum):
    INTERNAL_ERROR = "internal_error"  # HTTP 500 InternalError, nothing applied
    UNAVAILABLE = "unavailable"  # HTTP 503 Unavailable, nothing applied
    THROTTLE = "throttle"  # HTTP 503 RequestLimitExceeded, nothing applied
    RESET = "reset"  # connection closed without an answer, nothing applied
    LOST_ANSWER = "lost_answer"  # applied, then connection closed without an answer


class FaultInjector:
    def __init__(self, config: FaultConfig, seed: int) -> None:
        """``seed``: the mock's, for faults whose config names none."""
        self.config = config
        self.rng = random.Random(f"{seed if config.seed is None else config.seed}:faults")
        self._table = [
            (config.internal_error, Fault.INTERNAL_ERROR),
            (config.unavailable, Fault.UNAVAILABLE),
            (config.throttle, Fault.THROTTLE),
            (config.reset, Fault.RESET),
            (config.lost_answer, Fault.LOST_ANSWER),
        ]
        self.enabled = config.enabled

    def applies(self, action: str) -> bool:
        actions = self.config.actions
        return self.enabled and (actions is None or action in actions)

    def draw(self, action: str) -> tuple[Fault | None, float]:
        """``(fault or None, slow delay in AWS seconds)`` for one request of ``action``."""
        if not self.applies(action):
            return None, 0.0
        cfg = self.config
        slow = cfg.slow_s if cfg.slow > 0 and self.rng.random() < cfg.slow else 0.0
        if cfg.failure_total <= 0:
            return None, slow
        u = self.rng.random()
        acc = 0.0
        for rate, fault in self._table:
            acc += rate
            if u < acc:
                return fault, slow
        return None, slow
