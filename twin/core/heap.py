"""Keep CPython's cyclic garbage collector off the twin's long-lived objects.

A running twin holds hundreds of thousands of Python objects for its whole life: the scene, the bindings,
one subscription item per OPC-UA signal. Streaming allocates fast, and the objects in flight at each young
collection pile up in the oldest generation until a full collection runs; that full collection scans every
long-lived object too. With 10,000 subscribed signals it ran about once a second and stopped the event
loop for 50-74 ms each time, which was the whole p99 tail of the ingest latency (bench/RESULTS.md).

`settle()` moves what is alive now into the permanent generation (`gc.freeze`), so that later collections
scan only what was allocated since. It first unfreezes and collects, so that objects which became cyclic
garbage since the last settle (a session dropped on reconnect) are freed, not kept for good.
`settle_soon()` is what long-lived code calls when it has just built (or dropped) such a structure: it
settles at most once per `MIN_INTERVAL_S`, so that several servers subscribing at start-up, or one that
keeps dropping its link, cost one full collection per interval, not one each.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 10.0  # at most one settle (one full collection, tens of milliseconds) this often

_last_settle = -math.inf  # time.monotonic() of the last settle
_deferred: tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle] | None = None


def settle() -> int:
    """Collect everything, then freeze the survivors out of future collections; returns how many are frozen.

    Costs one full collection (tens of milliseconds for a large twin), so call it after set-up, not per tick.
    """
    global _last_settle
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _last_settle = time.monotonic()
    frozen = gc.get_freeze_count()
    log.debug("heap settled: %d objects frozen in %.1f ms", frozen, (time.perf_counter() - started) * 1000.0)
    return frozen


def settle_soon() -> None:
    """Settle now, or, within `MIN_INTERVAL_S` of the last settle, once that interval is over (on this loop).

    Requests while one is scheduled are folded into it. Call from the event loop's thread.
    """
    global _deferred
    if _deferred is not None:
        loop, _ = _deferred
        if not loop.is_closed():
            return  # the scheduled settle will take this request's objects too
        _deferred = None  # scheduled on a loop that has ended: it never ran
    wait = _last_settle + MIN_INTERVAL_S - time.monotonic()
    if wait <= 0:
        settle()
        return
    loop = asyncio.get_running_loop()
    _deferred = (loop, loop.call_later(wait, _run_deferred))


def _run_deferred() -> None:
    global _deferred
    _deferred = None
    settle()
