"""The process-wide memory budget: bounded, first come first served, leak-free on cancel."""

from __future__ import annotations

import asyncio

import pytest

from ingest.pipeline.budget import MemoryBudget, Reservation


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_reserve_and_release() -> None:
    budget = MemoryBudget(100)
    first = await budget.reserve(60)
    assert (budget.in_use, budget.available, first.size) == (60, 40, 60)
    first.release()
    first.release()  # idempotent: nothing is given back twice
    assert budget.in_use == 0
    assert first.released


async def test_async_context_manager_releases() -> None:
    budget = MemoryBudget(100)
    async with await budget.reserve(30) as held:
        assert isinstance(held, Reservation)
        assert budget.in_use == 30
    assert budget.in_use == 0


async def test_a_request_over_the_total_is_capped_instead_of_waiting_forever() -> None:
    budget = MemoryBudget(100)
    held = await asyncio.wait_for(budget.reserve(1_000), timeout=1)
    assert held.size == 100
    held.release()
    assert budget.in_use == 0


async def test_waiters_are_served_in_arrival_order() -> None:
    budget = MemoryBudget(100)
    first = await budget.reserve(60)
    granted: list[str] = []

    async def take(name: str, size: int) -> Reservation:
        held = await budget.reserve(size)
        granted.append(name)
        return held

    big = asyncio.create_task(take("big", 50))
    await _settle()
    small = asyncio.create_task(take("small", 10))
    await _settle()
    # 40 bytes are free, but the small request may not overtake the big one.
    assert granted == []
    assert (budget.waiting, budget.waiting_bytes) == (2, 60)
    first.release()
    await _settle()
    assert granted == ["big", "small"]
    assert budget.in_use == 60
    (await big).release()
    (await small).release()
    assert budget.in_use == 0


async def test_a_cancelled_waiter_takes_nothing_and_unblocks_those_behind() -> None:
    budget = MemoryBudget(100)
    first = await budget.reserve(60)
    big = asyncio.create_task(budget.reserve(50))
    await _settle()
    small = asyncio.create_task(budget.reserve(30))
    await _settle()
    assert budget.waiting == 2
    big.cancel()
    with pytest.raises(asyncio.CancelledError):
        await big
    # With the big request gone, the small one fits next to the first.
    held = await asyncio.wait_for(small, timeout=1)
    assert budget.in_use == 90
    assert budget.waiting == 0
    held.release()
    first.release()
    assert budget.in_use == 0


async def test_cancel_in_the_same_instant_as_the_grant_gives_the_bytes_back() -> None:
    budget = MemoryBudget(100)
    first = await budget.reserve(60)
    waiter = asyncio.create_task(budget.reserve(50))
    await _settle()
    first.release()  # grants the waiter synchronously...
    waiter.cancel()  # ...which is cancelled before it can run
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.in_use == 0
    assert budget.waiting == 0


async def test_shrink_gives_back_the_surplus() -> None:
    budget = MemoryBudget(100)
    held = await budget.reserve(80)
    blocked = asyncio.create_task(budget.reserve(50))
    await _settle()
    held.shrink(30)
    other = await asyncio.wait_for(blocked, timeout=1)
    assert (held.size, budget.in_use) == (30, 80)
    held.shrink(50)  # growing is not a thing: nothing changes
    assert held.size == 30
    held.release()
    other.release()
    assert budget.in_use == 0


async def test_invalid_sizes() -> None:
    with pytest.raises(ValueError, match="at least 1 byte"):
        MemoryBudget(0)
    budget = MemoryBudget(10)
    with pytest.raises(ValueError, match="negative"):
        await budget.reserve(-1)
    zero = await budget.reserve(0)
    assert zero.size == 0


async def test_holders_count_reservations_until_fully_released() -> None:
    budget = MemoryBudget(100)
    first = await budget.reserve(40)
    second = await budget.reserve(0)
    assert budget.holders == 2
    first.shrink(10)
    assert budget.holders == 2
    first.release()
    first.release()
    second.release()
    assert budget.holders == 0
    assert budget.in_use == 0
