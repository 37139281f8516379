"""The Prefect global-concurrency adapter: the client's RateLimiter protocol on Prefect rate limits."""

from __future__ import annotations

import asyncio

import pytest


@pytest.mark.prefect
def test_prefect_rate_limiter_takes_slots_and_refuses_a_missing_limit(prefect_server) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from flows.rate_limit import PrefectRateLimiter, gcl_create_commands, limit_name
    from kl_sync.klaviyo.limits import RateLimiter

    async def create() -> None:
        async with get_client() as client:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=limit_name("bulk_create_events"), limit=2, slot_decay_per_second=50.0))

    async def active_slots() -> int:
        async with get_client() as client:
            return (await client.read_global_concurrency_limit_by_name(limit_name("bulk_create_events"))).active_slots

    asyncio.run(create())
    limiter = PrefectRateLimiter(timeout_seconds=30)
    assert isinstance(limiter, RateLimiter)
    for _ in range(3):  # the third waits for a slot to decay
        limiter.acquire("bulk_create_events")
    assert asyncio.run(active_slots()) <= 2
    with pytest.raises(Exception, match="klaviyo-get-lists"):
        limiter.acquire("get_lists")  # strict: no limit means no sending, not unlimited sending
    assert "prefect gcl create klaviyo-bulk-create-events --limit 10 --slot-decay-per-second 2.5" in gcl_create_commands()
