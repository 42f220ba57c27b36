"""What a broker or NameServer process sets up for itself: signals that stop it, GC tuning."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

log = logging.getLogger(__name__)

GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Fewer collections on the message path.

    Every record on the hot path allocates a few short-lived containers, so the default
    gen-0 threshold (700) runs a collection every few messages. Objects alive after
    start-up (config, actors, caches) are frozen out of the scans.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 50)


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
