"""Which Klaviyo a run talks to, and who keeps count of its rate limits.

The one place that decides "emulator or Klaviyo": with an API key (a Prefect Secret block's, or
``KLAVIYO_API_KEY``) the client talks to ``KLAVIYO_BASE_URL``; with none and the default base URL, the
local emulator is started for the run under ``.kl_sync/demo/emulator/`` (the embedded default, for
engineers and the demo). A key with the default URL always means the real Klaviyo: the emulator is
never used when a key is set. Flows and the CLI take their client from here; the pipeline is given it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kl_sync.constants import KLAVIYO_BASE_URL
from kl_sync.settings import DEMO_DIR, EMULATOR_KEY, EMULATOR_PUBLIC_KEY, Settings, SettingsError


@contextmanager
def klaviyo_client(settings: Settings, *, api_key: str | None = None, limiter: Any = None) -> Iterator[Any]:
    """The Klaviyo client for this run, with the request half of the retry policy.

    ``api_key`` (e.g. from a Prefect Secret block) wins over ``KLAVIYO_API_KEY``.
    """
    from kl_sync.klaviyo.client import KlaviyoClient
    from kl_sync.klaviyo.limits import WindowRateLimiter

    key = api_key or settings.api_key()
    limiter = limiter or WindowRateLimiter()
    if key:
        with KlaviyoClient(key, settings.klaviyo_base_url, settings.klaviyo_revision, limiter=limiter,
                           retries=settings.retry.request) as client:
            yield client
        return
    if settings.klaviyo_base_url != KLAVIYO_BASE_URL:
        raise SettingsError(f"KLAVIYO_API_KEY: not set, and KLAVIYO_BASE_URL points at {settings.klaviyo_base_url}")
    from kl_sync.emulator import running_emulator

    with running_emulator(DEMO_DIR / "emulator", demo_emulator()) as emulator:
        with KlaviyoClient(EMULATOR_KEY, emulator.base_url, settings.klaviyo_revision, limiter=limiter,
                           retries=settings.retry.request) as client:
            yield client


def demo_emulator(**options: Any) -> Any:
    """The configuration of the emulator kl-sync starts itself (the embedded default, the demo): the
    demo account's keys (:data:`~kl_sync.settings.EMULATOR_KEY`), plus ``options``."""
    from kl_sync.emulator import EmulatorConfig

    return EmulatorConfig(api_keys=(EMULATOR_KEY,), public_key=EMULATOR_PUBLIC_KEY, **options)


def rate_limiter(settings: Settings, kind: str = "local", *, scale: float = 1.0) -> Any:
    """The limiter the sender waits on: ``local`` (this process only) or ``shared`` (every worker on
    the same state database, :class:`kl_sync.state.rate_limit.StateRateLimiter`)."""
    from kl_sync.klaviyo.limits import WindowRateLimiter

    if kind == "local":
        return WindowRateLimiter(scale=scale)
    if kind == "shared":
        from kl_sync.state.migrate import open_state
        from kl_sync.state.rate_limit import StateRateLimiter

        return StateRateLimiter(open_state(settings.state_url), scale=scale)
    raise ValueError(f"unknown rate limiter {kind!r}: choose local or shared")
