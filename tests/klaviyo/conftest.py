"""A real emulator over loopback HTTP for the client tests, and clients pointed at it.

Every test gets a fresh account (starting one costs ~0.2 s), so journals and counts are its own.
Backoff is short so retries do not slow the suite; Retry-After is still honoured in full.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kl_sync.emulator import EmulatorHandle, running_emulator
from kl_sync.klaviyo.client import KlaviyoClient, RequestRecord
from kl_sync.retry import Retries

API_KEY = "pk_test_client"
FORBIDDEN_KEY = "pk_test_forbidden"
PUBLIC_KEY = "PUBKEY"


@pytest.fixture
def start_emulator(tmp_path: Path) -> Iterator[Callable[..., EmulatorHandle]]:
    """Start an emulator with custom options (rate limits, faults); stopped after the test."""
    stack: list[Any] = []

    def start(**options: Any) -> EmulatorHandle:
        options.setdefault("api_keys", (API_KEY,))
        options.setdefault("forbidden_keys", (FORBIDDEN_KEY,))
        options.setdefault("public_key", PUBLIC_KEY)
        context = running_emulator(tmp_path / f"klaviyo{len(stack)}", **options)
        handle = context.__enter__()
        stack.append(context)
        return handle

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


@pytest.fixture
def emu(start_emulator: Callable[..., EmulatorHandle]) -> EmulatorHandle:
    return start_emulator()


@pytest.fixture
def records() -> list[RequestRecord]:
    return []


@pytest.fixture
def make_client(emu: EmulatorHandle, records: list[RequestRecord]) -> Iterator[Callable[..., KlaviyoClient]]:
    clients: list[KlaviyoClient] = []

    def make(api_key: str = API_KEY, handle: EmulatorHandle | None = None, attempts: int = 6, **options: Any) -> KlaviyoClient:
        options.setdefault("retries", Retries(attempts, first_wait=0.01, longest_wait=0.05))
        options.setdefault("on_request", records.append)
        client = KlaviyoClient(api_key, (handle or emu).base_url, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., KlaviyoClient]) -> KlaviyoClient:
    return make_client()
