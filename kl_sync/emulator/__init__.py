"""A local Klaviyo: the endpoints kl-sync uses, Klaviyo's rules, rate windows, faults and a journal.

    from kl_sync.emulator import running_emulator, FaultSpec

    with running_emulator(data_dir, api_keys=("pk_test",)) as emu:
        emu.base_url, emu.api_key       # point the client here
        emu.events(), emu.profiles()    # and look at what arrived

``kl_sync.emulator.app.create_app`` builds the FastAPI app alone; ``kl-sync emulator`` (or
``python -m kl_sync.emulator``) serves it in the foreground.
"""

from kl_sync.emulator.app import create_app
from kl_sync.emulator.faults import FaultSpec
from kl_sync.emulator.server import EmulatorHandle, running_emulator

__all__ = ["EmulatorHandle", "FaultSpec", "create_app", "running_emulator"]
