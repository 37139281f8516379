"""How one emulator behaves: :class:`EmulatorConfig`, the one declaration of its options.

``create_app(data_dir, config)``, ``running_emulator(data_dir, config)`` (or the same fields as
keywords: ``running_emulator(data_dir, api_keys=("pk_x",), rate_limits="real")``) and the
``kl-sync emulator`` command (:mod:`.cli`) all build one. A new option is a field here, its flag in
:mod:`.cli`, and the code that reads it (``--latency``: :mod:`.latency`).
"""

from __future__ import annotations

from dataclasses import dataclass

from kl_sync.emulator.faults import FaultSpec


@dataclass(frozen=True)
class EmulatorConfig:
    #: Private API keys accepted (``Authorization: Klaviyo-API-Key <key>``); the first is the one a
    #: running emulator's handle hands out.
    api_keys: tuple[str, ...] = ("pk_test",)
    #: Keys that are known but lack a scope: answered 403 ``permission_denied``.
    forbidden_keys: tuple[str, ...] = ()
    #: The account's public key, which the client-side ``/client/*`` operations take as ``company_id``.
    public_key: str = "PUBKEY"
    #: ``"real"``: Klaviyo's burst and steady windows per endpoint (:mod:`.limits`); ``"off"``: none.
    rate_limits: str = "off"
    #: Every rate window is shortened by this factor (10: a burst window lasts 0.1 s).
    rate_scale: float = 1.0
    #: Random faults injected into write requests (:mod:`.faults`); None for none.
    faults: FaultSpec | None = None
    #: Seconds after its request was accepted (202) before an event can be read back (:mod:`.processing`).
    processing_delay: float = 0.0
    #: Share of accepted events silently never processed, drawn event by event (:mod:`.processing`).
    lose: float = 0.0
    #: Seed of the loss draws: the same seed loses the same events of the same requests.
    lose_seed: int = 0
    #: Seconds of every request's round trip between the client and the emulator (:mod:`.latency`).
    latency: float = 0.0
    #: Each round trip is drawn uniformly from ``latency ± jitter`` (seeded by ``lose_seed``).
    jitter: float = 0.0

    def __post_init__(self) -> None:
        # Any iterable of keys will do (a list from the command line); kept as tuples.
        object.__setattr__(self, "api_keys", tuple(self.api_keys))
        object.__setattr__(self, "forbidden_keys", tuple(self.forbidden_keys))
        if self.rate_limits not in ("off", "real"):
            raise ValueError("rate_limits must be 'off' or 'real'")
        if self.rate_scale <= 0:
            raise ValueError("rate_scale must be positive")
        if not self.api_keys:
            raise ValueError("the emulator needs at least one accepted API key")
        if self.processing_delay < 0:
            raise ValueError("processing_delay must not be negative")
        if self.latency < 0 or self.jitter < 0:
            raise ValueError("latency and jitter must not be negative")
        if not 0.0 <= self.lose <= 1.0:
            raise ValueError("lose must be between 0 and 1")
