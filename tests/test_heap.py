"""twin.heap.settle: long-lived objects leave the garbage collector's scans, and nothing is kept for good."""

import asyncio
import gc
import weakref

from tests.helpers import wait_until
from twin.core import heap


class Node:
    """A reference cycle (as asyncua's client objects form), so only the cyclic collector can free it."""

    def __init__(self):
        self.me = self


def test_settle_freezes_what_lives_and_frees_what_became_garbage_when_asked():
    try:
        dropped = Node()
        dropped_ref = weakref.ref(dropped)
        del dropped
        frozen = heap.settle()
        assert dropped_ref() is None, "garbage from before a settle is collected by it"
        assert frozen == gc.get_freeze_count() > 0

        kept = Node()
        kept_ref = weakref.ref(kept)
        heap.settle()
        del kept  # garbage now, but frozen: ordinary collections leave it alone (they do not scan it)...
        gc.collect()
        assert kept_ref() is not None
        heap.settle()  # ...and so does a plain settle, which collects only what is not frozen (cheap)...
        assert kept_ref() is not None, "a plain settle scanned the frozen objects: a full collection each time"
        heap.settle(release_frozen=True)  # ...but a releasing settle frees it: a dropped session is not kept
        assert kept_ref() is None
    finally:
        gc.unfreeze()


def test_settle_soon_settles_at_most_once_per_interval_and_folds_requests(monkeypatch):
    monkeypatch.setattr(heap, "MIN_INTERVAL_S", 1.5)  # wide: on a loaded machine the calls below can be 1 s apart
    monkeypatch.setattr(heap, "_last_settle", float("-inf"))
    monkeypatch.setattr(heap, "_deferred", None)

    async def scenario():
        dropped = Node()
        dropped_ref = weakref.ref(dropped)
        heap.settle_soon()  # the first: at once, and `dropped` (alive) is frozen
        first = heap._last_settle
        assert gc.get_freeze_count() > 0
        heap.settle_soon()  # within the interval: scheduled...
        heap.settle_soon(release_frozen=True)  # ...and folded into the scheduled one, which now releases
        assert heap._last_settle == first and heap._deferred is not None
        del dropped
        gc.collect()
        assert dropped_ref() is not None  # frozen: only a settle frees it
        await wait_until(lambda: heap._deferred is None, 10, "the deferred settle")  # due 1.5 s after the first
        assert heap._last_settle > first and heap._deferred is None
        assert dropped_ref() is None  # the deferred settle ran, releasing as the folded request asked

    asyncio.run(scenario())
