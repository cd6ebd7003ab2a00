"""Coalescing store calls made in the same turn of the event loop into one round trip.

Under load many requests reach the same store operation together. Each `submit` joins the
batch of the current loop turn; at the turn's end one `run(items)` serves them all: one
network round trip, and for Postgres one commit shared by every request of the batch (the
"commits shared across concurrent requests" that durability allows: each request still
answers only after its own row is committed). A lone request pays nothing extra: its batch
of one leaves at the end of the very turn that made it.

A batcher may also hold a turn's batch while `max_in_flight` of its batches are out: the
held requests leave together the moment one lands (group commit, done in the client). For
Postgres this keeps the commits per request low when requests arrive one by one (open loop),
where otherwise every lone request is its own statement and commit; measured with
`python -m benchmarks`, it cut Postgres's CPU per refresh by 13-49%.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from tokensvc.errors import StoreUnavailable

T = TypeVar("T")
R = TypeVar("R")

# Batches larger than this leave as they fill: a few batches in flight keep the CPU busy while
# others wait on the store, where one batch of every request would leave it idle (measured with
# `python -m benchmarks`: 16 beat 8 and 256 at concurrency 32).
MAX_BATCH = 16


class Batcher(Generic[T, R]):
    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[R]]],
        max_size: int = MAX_BATCH,
        max_in_flight: int | None = None,
    ) -> None:
        """`max_in_flight`: how many batches may be out at once before a turn's batch waits
        for one to land (None: no limit). A full batch (`max_size`) always leaves at once."""
        self._run = run
        self._max_size = max_size
        self._max_in_flight = max_in_flight if max_in_flight is not None else 1 << 62
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Told of every batch that leaves (`tokensvc_store_batches_total`): per request, the
        # round trips, and for a Postgres write the commits, that batching left.
        self.on_batch: Callable[[], object] = _unobserved

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush_at_turn_end)
        elif len(self._pending) >= self._max_size:
            self._flush()
        return await future

    def _flush_at_turn_end(self) -> None:
        if len(self._tasks) >= self._max_in_flight:
            return  # the batch in flight takes this one along when it lands (`_landed`)
        self._flush()

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            self.on_batch()
            task = asyncio.ensure_future(self._serve(batch))
            self._tasks.add(task)  # keep a reference until it is done
            task.add_done_callback(self._landed)

    def _landed(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._pending and len(self._tasks) < self._max_in_flight:
            self._flush()

    async def _serve(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except StoreUnavailable as exc:
            for _, future in batch:
                if not future.done():  # a fresh exception each: they travel separately
                    copy = StoreUnavailable(exc.store, exc.__cause__)
                    copy.__cause__ = exc.__cause__
                    future.set_exception(copy)
            return
        except Exception as exc:  # handed to every waiter, never swallowed
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled (shutdown): nobody may wait forever
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _unobserved() -> None:
    return None


def batched_or_one(
    operation: str,
    many: Callable[[list[T]], Awaitable[Sequence[R]]],
    one: Callable[[T], Awaitable[R]],
    *,
    batch: bool,
) -> tuple[dict[str, Batcher[T, R]], Callable[[T], Awaitable[R]]]:
    """A store's `batchers` (observed as `tokensvc_store_batches_total`) and the call to make
    for `operation`: a batcher's `submit` when `batch`, else `one` (a Redis Cluster, where a
    script may touch one hash slot only) and no batchers."""
    if not batch:
        return {}, one
    batcher = Batcher(many)
    return {operation: batcher}, batcher.submit
