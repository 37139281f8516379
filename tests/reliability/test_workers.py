"""4. Several workers: four sender processes drain one outbox on PostgreSQL and on MariaDB at once.
No outbox row is sent twice, none is left behind, and the account's rate limit holds across them
(the shared limiter in the state database)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kl_sync.emulator import running_emulator
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS
from kl_sync import state as st
from kl_sync.state.migrate import open_state
from kl_sync.state.tables import SENT, outbox
from tests.dbs import fresh_database
from tests.reliability.helpers import BULK_EVENTS, accepted_unique_ids, child_env, kl_sync_command

WORKERS = 4
ROWS = 400
BATCH = 20
#: Windows five times LONGER than Klaviyo's: bulk event creation allows 10 requests per 5 s. Each
#: claimed batch costs a data-quality validation (most of a batch's time), so at Klaviyo's own pace four
#: workers never reach the burst limit; at this pace they want about twice as many requests as the
#: window allows, and four unshared limiters would each let 10 through.
RATE_SCALE = 0.2
KEY = "pk_workers"


def _event(n: int) -> st.OutboxItem:
    key = f"log:{n}"
    return st.OutboxItem(key, "log_event", {
        "metric": "shipping.email", "time": "2026-10-01T10:00:00+00:00", "unique_id": key,
        "properties": {"n": n}, "profile": {"email": f"worker-test-{n % 97}@example.com"}, "backfill": True,
    })


def _max_in_window(times: list[float], seconds: float) -> int:
    """The most arrivals inside any window of ``seconds`` (a sliding count over sorted times)."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_four_senders_share_one_outbox_and_one_rate_limit(backend: str, tmp_path: Path) -> None:
    with fresh_database(backend, tmp_path) as state_url:
        state = open_state(state_url)
        with state.begin() as conn:
            st.enqueue(conn, [_event(n) for n in range(ROWS)])
        with running_emulator(tmp_path / "emulator", api_keys=(KEY,), rate_limits="real", rate_scale=RATE_SCALE) as emu:
            env = child_env(KL_SYNC_STATE_URL=state_url, KLAVIYO_BASE_URL=emu.base_url, KLAVIYO_API_KEY=KEY,
                            KL_SYNC_SEND_BATCH_SIZE=str(BATCH))
            command = kl_sync_command("sync", "--no-prefect", "--steps", "send", "--rate-limit", "shared",
                                      "--rate-scale", str(RATE_SCALE))
            workers = [subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True) for _ in range(WORKERS)]
            errors = [w.communicate(timeout=240)[1] for w in workers]
            assert [w.returncode for w in workers] == [0] * WORKERS, errors
            journal = emu.journal()
            stored = emu.events()

        with state.connect() as conn:
            statuses = dict(conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)).all())
            owners = conn.execute(select(func.count(func.distinct(outbox.c.run_id)))).scalar_one()
        state.dispose()

    # Every row sent, by exactly one request: none twice, none left behind.
    assert statuses == {SENT: ROWS}
    accepted = accepted_unique_ids(journal)
    assert len(accepted) == ROWS and set(accepted.values()) == {1}
    assert len({e["unique_id"] for e in stored}) == len(stored) == ROWS
    assert owners > 1, "one worker drained everything: the test did not exercise concurrency"

    # The shared limit held: the emulator refused nothing, and no window saw more than its limit.
    writes = sorted(line["ts"] for line in journal if line["path"] == BULK_EVENTS)
    assert [line for line in journal if line["status"] == 429] == []
    assert len(writes) == ROWS // BATCH
    burst, steady = ENDPOINT_LIMITS["bulk_create_events"].windows[:2]
    # Arrival times are not send times: on a busy machine a request can reach the server a little
    # after its slot was taken, so the sliding count allows that much jitter (the emulator itself
    # counts fixed windows, and refused nothing).
    jitter = 0.25
    assert _max_in_window(writes, burst.seconds / RATE_SCALE - jitter) <= burst.limit
    assert _max_in_window(writes, steady.seconds / RATE_SCALE - jitter) <= steady.limit
    # ... and the limit was really binding: the workers wanted more than one window allows.
    assert _max_in_window(writes, burst.seconds / RATE_SCALE) >= burst.limit
    assert writes[-1] - writes[0] >= burst.seconds / RATE_SCALE - jitter
