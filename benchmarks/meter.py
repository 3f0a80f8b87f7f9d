"""What a contender's process costs: wall time, and CPU of the process *and its children*.

A contender may run its work in child processes (fleetimage's ``workers``), so CPU per image
is the whole process tree's: the process itself (``RUSAGE_SELF``, all threads), the children
it has already waited for (``RUSAGE_CHILDREN``, which also holds their own waited-for
descendants), and any descendant still alive when the run ends (read with psutil; a helper
such as multiprocessing's resource tracker outlives the run, and its CPU is the run's too).

And whether the main thread (fleetimage's event loop) is CPU-bound: Linux's schedstat says how
long it ran and how long it was runnable but waiting for a CPU. Run + wait close to the
elapsed time means it always had work: it was CPU-bound, and got the share of a core that the
machine's other load left it.
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


def _main_thread_sched() -> tuple[float, float]:
    """(s on a CPU, s runnable waiting for one) of this process's main thread; (0, 0) where
    there is no /proc/self/schedstat (not Linux, or schedstats off)."""
    try:
        with open("/proc/self/schedstat", encoding="ascii") as f:
            run_ns, wait_ns, _ = f.read().split()
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


class Meter:
    """Wall time and process-tree CPU since construction."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.t0_monotonic = time.monotonic()  # the mock's clock (CLOCK_MONOTONIC, system-wide)
        self.self0 = resource.getrusage(resource.RUSAGE_SELF)
        self.children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.live0 = _live_descendants_cpu()
        self.sched0 = _main_thread_sched()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def result(self) -> dict[str, float]:
        """``cpu_s`` is the total (self + children); ``peak_rss_mb`` the process's own, and
        ``peak_rss_children_mb`` the largest waited-for child's (the kernel keeps a max)."""
        elapsed = self.now()
        ru_self = resource.getrusage(resource.RUSAGE_SELF)
        ru_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        live = _live_descendants_cpu()
        run, wait = _main_thread_sched()
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
            "main_thread_run_s": run - self.sched0[0],
            "main_thread_wait_s": wait - self.sched0[1],
            "t0_monotonic": self.t0_monotonic,
        }
