"""Signals during a run or resume: the first SIGINT/SIGTERM asks the engine to stop (no new
images, in-flight calls settle), the second cancels everything at once."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from fleetimage.cli.execution import Consoles, Execution

__all__ = ["watch_signals"]


async def watch_signals(
    stop: anyio.Event, scope: anyio.CancelScope, ex: Execution, hint: str, con: Consoles
) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be installed in the main thread
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not stop.is_set():
                stop.set()
                con.err.print(
                    f"{name}: stopping — no new images; letting in-flight calls settle "
                    f"(again to exit at once). Then: {hint}",
                    markup=False,
                    highlight=False,
                )
            else:
                con.err.print(
                    f"{name} again: exiting now; the journal is consistent. Resume: {hint}",
                    markup=False,
                    highlight=False,
                )
                ex.extra["hard_stop"] = True
                scope.cancel()
                return
