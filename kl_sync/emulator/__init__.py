"""A local Klaviyo: the endpoints kl-sync uses, Klaviyo's rules, rate windows, faults and a journal.

    from kl_sync.emulator import running_emulator, FaultSpec

    with running_emulator(data_dir, api_keys=("pk_test",)) as emu:
        emu.base_url, emu.api_key       # point the client here
        emu.events(), emu.profiles()    # and look at what arrived

``create_app(data_dir, EmulatorConfig(...))`` builds the FastAPI app alone; ``kl-sync emulator`` (or
``python -m kl_sync.emulator``) serves it in the foreground.

Where things live: :mod:`.config` (the options), :mod:`.app` (the app), :mod:`.gate` (what every
request passes), :mod:`.routes` (a router per Klaviyo resource), :mod:`.rules` (Klaviyo's request
rules, per resource), :mod:`.storage` (the account), :mod:`.processing` (what happens to an accepted
event: its delay, its loss), :mod:`.resources` and :mod:`.documents` (what is
answered), ``spec/`` (one OpenAPI slice per operation), :mod:`.limits`, :mod:`.faults`,
:mod:`.journal`, :mod:`.server` (running it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kl_sync.emulator.app import create_app
    from kl_sync.emulator.config import EmulatorConfig
    from kl_sync.emulator.faults import FaultSpec
    from kl_sync.emulator.server import EmulatorHandle, running_emulator

#: Where each name lives. Imported on first use: the app (FastAPI, uvicorn) costs ~0.6 s, which
#: ``kl-sync --help`` and ``kl-sync status`` must not pay for the ``emulator`` command's options.
_HOMES = {
    "create_app": "kl_sync.emulator.app",
    "EmulatorConfig": "kl_sync.emulator.config",
    "FaultSpec": "kl_sync.emulator.faults",
    "EmulatorHandle": "kl_sync.emulator.server",
    "running_emulator": "kl_sync.emulator.server",
}

__all__ = ["EmulatorConfig", "EmulatorHandle", "FaultSpec", "create_app", "running_emulator"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
