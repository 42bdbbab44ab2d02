"""Keep CPython's cyclic garbage collector off the twin's long-lived objects.

A running twin holds hundreds of thousands of Python objects for its whole life: the scene, the bindings,
one subscription item per OPC-UA signal. Streaming allocates fast, and the objects in flight at each young
collection pile up in the oldest generation until a full collection runs; that full collection scans every
long-lived object too. With 10,000 subscribed signals it ran about once a second and stopped the event
loop for 55-70 ms each time, which was the whole p99 tail of the ingest latency (bench/RESULTS.md).

`settle()` moves what is alive now into the permanent generation (`gc.freeze`), so that later collections
scan only what was allocated since. It first unfreezes and collects, so that objects which became cyclic
garbage since the last settle (a session dropped on reconnect) are freed, not kept for good. Call it when
a long-lived structure has just been built: the connector does after each (re)subscription.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def settle() -> int:
    """Collect everything, then freeze the survivors out of future collections; returns how many are frozen.

    Costs one full collection (tens of milliseconds for a large twin), so call it after set-up, not per tick.
    """
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("heap settled: %d objects frozen in %.1f ms", frozen, (time.perf_counter() - started) * 1000.0)
    return frozen
