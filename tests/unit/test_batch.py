"""`tokensvc.storage.batch.Batcher`: what leaves together, and when."""

from __future__ import annotations

import asyncio

import pytest

from tokensvc.errors import StoreUnavailable
from tokensvc.storage.batch import Batcher


class Store:
    """Records each batch it is given; a batch lands when the test opens its gate."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gates: list[asyncio.Event] = []
        self.fail_with: BaseException | None = None

    async def run(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [item * 10 for item in items]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_one_turn_is_one_batch_and_each_caller_gets_its_own_result() -> None:
    store = Store()
    batcher = Batcher(store.run)
    calls = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3)]
    await settle()
    assert store.batches == [[1, 2, 3]]
    store.gates[0].set()
    assert await asyncio.gather(*calls) == [10, 20, 30]


async def test_a_full_batch_leaves_at_once() -> None:
    store = Store()
    batcher = Batcher(store.run, max_size=2)
    calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(5)]
    await settle()
    assert store.batches == [[0, 1], [2, 3], [4]]
    for gate in store.gates:
        gate.set()
    assert await asyncio.gather(*calls) == [0, 10, 20, 30, 40]


async def test_without_a_limit_every_turn_sends_its_own_batch() -> None:
    store = Store()
    batcher = Batcher(store.run)
    first = asyncio.ensure_future(batcher.submit(1))
    await settle()
    second = asyncio.ensure_future(batcher.submit(2))
    await settle()
    assert store.batches == [[1], [2]]
    for gate in store.gates:
        gate.set()
    assert await asyncio.gather(first, second) == [10, 20]


async def test_turns_behind_a_batch_in_flight_wait_and_leave_together_when_it_lands() -> None:
    store = Store()
    batcher = Batcher(store.run, max_in_flight=1)
    first = asyncio.ensure_future(batcher.submit(1))
    await settle()
    later = []
    for i in (2, 3, 4):  # three separate turns while the first batch is out
        later.append(asyncio.ensure_future(batcher.submit(i)))
        await settle()
    assert store.batches == [[1]]
    store.gates[0].set()
    assert await first == 10
    await settle()
    assert store.batches == [[1], [2, 3, 4]]
    store.gates[1].set()
    assert await asyncio.gather(*later) == [20, 30, 40]
    # Nothing out: a lone request leaves at the end of its own turn again.
    alone = asyncio.ensure_future(batcher.submit(5))
    await settle()
    assert store.batches[-1] == [5]
    store.gates[2].set()
    assert await alone == 50


async def test_a_held_batch_that_fills_up_leaves_without_waiting() -> None:
    store = Store()
    batcher = Batcher(store.run, max_size=2, max_in_flight=1)
    first = asyncio.ensure_future(batcher.submit(1))
    await settle()
    held = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 3)]
    await settle()
    assert store.batches == [[1], [2, 3]]
    for gate in store.gates:
        gate.set()
    assert await asyncio.gather(first, *held) == [10, 20, 30]


async def test_a_failed_batch_still_releases_the_ones_held_behind_it() -> None:
    store = Store()
    batcher = Batcher(store.run, max_in_flight=1)
    first = asyncio.ensure_future(batcher.submit(1))
    await settle()
    held = asyncio.ensure_future(batcher.submit(2))
    await settle()
    store.fail_with = StoreUnavailable("postgres")
    store.gates[0].set()
    with pytest.raises(StoreUnavailable):
        await first
    await settle()
    assert store.batches == [[1], [2]]
    store.fail_with = None
    store.gates[1].set()
    assert await held == 20
