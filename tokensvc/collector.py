"""The cyclic garbage collector, set for a long-running server once it is listening.

With CPython's defaults (thresholds 700, 10, 10) a busy service runs a full collection every
few seconds: every young collection moves the objects of the requests in flight to an older
generation, and soon a quarter of the heap is "new" old objects, which starts a full pass over
every object the process holds (modules, caches, pools). Measured with `python -m benchmarks`,
each pass stopped the event loop for 40-55 ms, every request in flight with it: that was the
open loop's p99. Requests make almost no reference cycles (their objects die by reference
counting), so collecting less often frees the same memory later, not never.

`settle` runs once start-up is over: it freezes what start-up built (imports, the
applications, pools; `gc.freeze`, which also spares forked workers copy-on-write faults), so a
full pass scans only what came later, and it spaces collections out.
"""

from __future__ import annotations

import gc

# Young collections every 20,000 net allocations of container objects instead of 700; a full
# pass after 100 middle ones instead of 10 (gc.set_threshold).
YOUNG = 20_000
MIDDLE = 10
OLD = 100


def settle() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
