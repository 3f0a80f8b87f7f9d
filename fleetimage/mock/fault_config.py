"""The mock's injected faults per request (:class:`FaultConfig`, ``MockConfig.faults``).

Apart from the other knobs because they are drawn, not scheduled: each request in scope
draws from a ``random.Random`` seeded by ``MockConfig.seed`` (mock/faults.py), so a run is
reproducible request by request.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetimage.core.errors import MockError
from fleetimage.mock.checks import check_non_negative, check_rate

__all__ = ["FaultConfig"]


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Injected faults. Each rate is a probability per request (0..1), drawn from a
    ``random.Random`` seeded by ``seed`` (None: :attr:`MockConfig.seed`), so a run is
    reproducible. Draws follow the order requests arrive in: the same seed gives another
    request the fault when timing changes. Another ``seed`` draws other faults over the same
    fleet and pending times (the benchmarks' repeats, so a median is over several draws).

    ``internal_error``   HTTP 500 ``InternalError``, nothing applied.
    ``unavailable``      HTTP 503 ``Unavailable``, nothing applied.
    ``throttle``         extra HTTP 503 ``RequestLimitExceeded``, nothing applied.
    ``reset``            the connection is closed without an answer, nothing applied.
    ``lost_answer``      the action IS applied, then the connection is closed without an
                         answer (what makes naive CreateImage retries duplicate AMIs).
    ``slow``/``slow_s``  the answer is delayed by ``slow_s`` AWS seconds (/ time_scale).
    ``actions``          restrict all faults to these actions (None: every action).

    The failing rates (all but ``slow``) are exclusive and must sum to <= 1.
    """

    internal_error: float = 0.0
    unavailable: float = 0.0
    throttle: float = 0.0
    reset: float = 0.0
    lost_answer: float = 0.0
    slow: float = 0.0
    slow_s: float = 1.0
    actions: frozenset[str] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise MockError("FaultConfig.seed must be an int or None")
        for name in (
            "internal_error",
            "unavailable",
            "throttle",
            "reset",
            "lost_answer",
            "slow",
        ):
            check_rate(f"FaultConfig.{name}", getattr(self, name))
        if self.failure_total > 1.0 + 1e-9:
            raise MockError("FaultConfig: the failing rates (all but slow) must sum to <= 1")
        check_non_negative("FaultConfig.slow_s", self.slow_s)
        if self.actions is not None:
            acts: object = self.actions
            if isinstance(acts, str) or not all(isinstance(a, str) for a in self.actions):
                raise MockError("FaultConfig.actions must be a set of action names or None")
            object.__setattr__(self, "actions", frozenset(self.actions))

    @property
    def failure_total(self) -> float:
        """The probability that a request in scope fails (or loses its answer)."""
        return (
            self.internal_error + self.unavailable + self.throttle + self.reset + self.lost_answer
        )

    @property
    def enabled(self) -> bool:
        return self.failure_total > 0 or self.slow > 0
