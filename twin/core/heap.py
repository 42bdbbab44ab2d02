"""Keep CPython's cyclic garbage collector off the twin's long-lived objects.

A running twin holds hundreds of thousands of Python objects for its whole life: the scene, the bindings,
one subscription item per OPC-UA signal. Streaming allocates fast, and the objects in flight at each young
collection pile up in the oldest generation until a full collection runs; that full collection scans every
long-lived object too. With 10,000 subscribed signals it ran about once a second and stopped the event
loop for 50-74 ms each time, which was the whole p99 tail of the ingest latency (bench/RESULTS.md).

`settle()` moves what is alive now into the permanent generation (`gc.freeze`), so that later collections
scan only what was allocated since. A plain settle collects only what is not frozen yet, so it costs in
proportion to what was built since the last one (a second server's subscription), not to the whole heap: a
full collection of the sample demo's 740,000 objects stopped its event loop for 230-260 ms, on the value
path of every signal. `settle(release_frozen=True)` first unfreezes and collects everything, so that frozen
objects which became cyclic garbage (a session dropped on reconnect) are freed, not kept for good: the
connector asks for that only after a drop.
`settle_soon()` is what long-lived code calls when it has just built (or dropped) such a structure: it
settles at most once per `MIN_INTERVAL_S`, so that several servers subscribing at start-up, or one that
keeps dropping its link, cost one collection per interval, not one each.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 10.0  # at most one settle (a collection; a full one takes hundreds of milliseconds) this often

_last_settle = -math.inf  # time.monotonic() of the last settle
_deferred: tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle] | None = None
_release_pending = False  # a request folded into the scheduled settle asked to release frozen garbage


def settle(release_frozen: bool = False) -> int:
    """Collect, then freeze the survivors out of future collections; returns how many objects are frozen.

    Plain: collects what is not frozen yet (cheap when little was built since the last settle).
    `release_frozen`: unfreezes first, so the collection scans and frees the frozen objects too (a full
    collection: hundreds of milliseconds for a large twin), for after dropping a long-lived structure.
    """
    global _last_settle
    started = time.perf_counter()
    if release_frozen:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    _last_settle = time.monotonic()
    frozen = gc.get_freeze_count()
    log.debug("heap settled (%s): %d objects frozen in %.1f ms", "full" if release_frozen else "new objects",
              frozen, (time.perf_counter() - started) * 1000.0)
    return frozen


def settle_soon(release_frozen: bool = False) -> None:
    """Settle now, or, within `MIN_INTERVAL_S` of the last settle, once that interval is over (on this loop).

    Requests while one is scheduled are folded into it (releasing frozen garbage if any of them asked).
    Call from the event loop's thread.
    """
    global _deferred, _release_pending
    if _deferred is not None:
        loop, _ = _deferred
        if not loop.is_closed():
            _release_pending = _release_pending or release_frozen
            return  # the scheduled settle will take this request's objects too
        _deferred = None  # scheduled on a loop that has ended: it never ran
    wait = _last_settle + MIN_INTERVAL_S - time.monotonic()
    if wait <= 0:
        settle(release_frozen)
        return
    _release_pending = release_frozen
    loop = asyncio.get_running_loop()
    _deferred = (loop, loop.call_later(wait, _run_deferred))


def _run_deferred() -> None:
    global _deferred, _release_pending
    release, _deferred, _release_pending = _release_pending, None, False
    settle(release)
