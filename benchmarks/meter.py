"""What a contender's process costs: wall time, and CPU of the process *and its children*.

A contender may run its work in child processes (fleetimage's ``workers``), so CPU per image
is the whole process tree's: the process itself (``RUSAGE_SELF``, all threads), the children
it has already waited for (``RUSAGE_CHILDREN``, which also holds their own waited-for
descendants), and any descendant still alive when the run ends (read with psutil; a helper
such as multiprocessing's resource tracker outlives the run, and its CPU is the run's too).
"""

from __future__ import annotations

import resource
import time
from typing import Any

__all__ = ["Meter"]


def _live_descendants_cpu() -> dict[int, float]:
    """CPU seconds (user + system, with their own reaped children) of each live descendant."""
    import psutil

    out: dict[int, float] = {}
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:  # exited meanwhile: a direct child is then in RUSAGE_CHILDREN
            continue
        out[child.pid] = t.user + t.system + t.children_user + t.children_system
    return out


def _cpu(ru: Any) -> float:
    return float(ru.ru_utime + ru.ru_stime)


class Meter:
    """Wall time and process-tree CPU since construction."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.t0_monotonic = time.monotonic()  # the mock's clock (CLOCK_MONOTONIC, system-wide)
        self.self0 = resource.getrusage(resource.RUSAGE_SELF)
        self.children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.live0 = _live_descendants_cpu()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def result(self) -> dict[str, float]:
        """``cpu_s`` is the total (self + children); ``peak_rss_mb`` the process's own, and
        ``peak_rss_children_mb`` the largest waited-for child's (the kernel keeps a max)."""
        elapsed = self.now()
        ru_self = resource.getrusage(resource.RUSAGE_SELF)
        ru_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        live = _live_descendants_cpu()
        own = _cpu(ru_self) - _cpu(self.self0)
        reaped = _cpu(ru_children) - _cpu(self.children0)
        alive = sum(cpu - self.live0.get(pid, 0.0) for pid, cpu in live.items())
        return {
            "elapsed_s": elapsed,
            "cpu_s": own + reaped + alive,
            "cpu_self_s": own,
            "cpu_children_s": reaped + alive,
            "live_children": float(len(live)),
            "peak_rss_mb": ru_self.ru_maxrss / 1024,
            "peak_rss_children_mb": ru_children.ru_maxrss / 1024,
            "t0_monotonic": self.t0_monotonic,
        }
