"""The client over real HTTP against the emulator: headers, retries, Retry-After, auth, the key kept secret,
and the rate limiter measured from the emulator's journal."""

from __future__ import annotations

import bisect
import logging
import pickle
import socket
import threading
import traceback
from collections.abc import Callable

import pytest
from pydantic import SecretStr

from kl_sync.emulator import EmulatorHandle
from kl_sync.klaviyo.client import USER_AGENT, KlaviyoClient, RequestRecord
from kl_sync.klaviyo.errors import AuthError, RejectedError, RetryableError
from kl_sync.klaviyo.events import send_events
from kl_sync.klaviyo.limits import WindowRateLimiter
from kl_sync.klaviyo.lists import create_list
from kl_sync.retry import Retries
from kl_sync.settings import SettingsError, load_settings
from tests.klaviyo.conftest import API_KEY, FORBIDDEN_KEY
from tests.klaviyo.factories import event
from tests.spec_oracle import assert_journal_bodies_valid

BULK = "/api/event-bulk-create-jobs"


def posts(emu: EmulatorHandle, path: str = BULK) -> list[dict]:
    return [entry for entry in emu.journal() if entry["method"] == "POST" and entry["path"].rstrip("/") == path]


def test_every_request_carries_the_pinned_headers(emu: EmulatorHandle, client: KlaviyoClient) -> None:
    response = client.get("/api/metrics", endpoint="get_metrics")
    assert response.status == 200 and response.attempts == 1
    (entry,) = emu.journal()
    headers = entry["headers"]
    assert headers["revision"] == "2026-07-15"
    assert headers["accept"] == "application/vnd.api+json"
    assert headers["content-type"] == "application/vnd.api+json"
    assert headers["user-agent"] == USER_AGENT and USER_AGENT.startswith("kl-sync/")
    assert headers["authorization"] == "Klaviyo-API-Key ***"  # the emulator redacts; the scheme is Klaviyo's
    assert client.stats.as_dict() == {
        "requests": 1, "retries": 0, "by_endpoint": {"get_metrics": 1}, "by_status": {"200": 1},
    }


def test_429_retry_waits_at_least_retry_after(
    emu: EmulatorHandle, client: KlaviyoClient, records: list[RequestRecord]
) -> None:
    emu.fail_next(BULK, 429, retry_after=0.4)
    outcomes = send_events(client, [event(1), event(2)])
    assert [o.status for o in outcomes] == ["sent", "sent"]
    first, second = posts(emu)
    assert (first["status"], second["status"]) == (429, 202)
    # Ordering, not speed: the retry arrived no earlier than Retry-After allowed.
    assert second["ts"] - first["ts"] >= 0.4
    assert records[0].status == 429 and records[0].retry_after == 0.4 and records[0].backoff >= 0.4
    assert len(emu.events()) == 2
    assert client.stats.retries == 1


@pytest.mark.parametrize("faults", [(500,), (503,), ("drop",), (502, "drop", 504)])
def test_5xx_and_dropped_connections_are_retried_then_succeed(
    emu: EmulatorHandle, client: KlaviyoClient, faults: tuple
) -> None:
    for fault in faults:
        emu.fail_next(BULK, fault)
    outcomes = send_events(client, [event(n) for n in range(5)])
    assert {o.status for o in outcomes} == {"sent"}
    statuses = [entry["status"] for entry in posts(emu)]
    assert statuses == [None if f == "drop" else f for f in faults] + [202]
    assert len(emu.events()) == 5
    assert assert_journal_bodies_valid(emu.journal()) == len(faults) + 1


def test_a_write_that_landed_before_the_connection_dropped_is_not_doubled(
    emu: EmulatorHandle, client: KlaviyoClient
) -> None:
    # The nastiest real case: Klaviyo stored the batch, the answer never came back, the client re-sends.
    emu.fail_next(BULK, "drop_after_commit")
    outcomes = send_events(client, [event(n) for n in range(20)])
    assert {o.status for o in outcomes} == {"sent"}
    assert len(posts(emu)) == 2
    assert sorted(e["unique_id"] for e in emu.events()) == sorted(f"order:{n}:placed" for n in range(20))


def test_a_read_timeout_is_retried_and_the_slow_write_still_counts_once(
    emu: EmulatorHandle, make_client: Callable[..., KlaviyoClient]
) -> None:
    client = make_client(timeout=(5.0, 0.3))
    emu.fail_next(BULK, "slow", slow_seconds=1.0)
    outcomes = send_events(client, [event(1)])
    assert outcomes[0].status == "sent"
    assert client.stats.by_status["no response"] == 1
    assert len(emu.events()) == 1


def test_retryable_errors_give_up_after_max_attempts(
    emu: EmulatorHandle, make_client: Callable[..., KlaviyoClient]
) -> None:
    client = make_client(attempts=3)
    emu.fail_next(BULK, 503, count=10)
    outcomes = send_events(client, [event(1), event(2)])
    assert [o.status for o in outcomes] == ["retry", "retry"]
    assert "HTTP 503" in outcomes[0].reason and "after 3 attempts" in outcomes[0].reason
    assert len(posts(emu)) == 3
    with pytest.raises(RetryableError) as caught:
        client.post(BULK, {"data": {}}, endpoint="bulk_create_events")
    assert caught.value.status == 503


@pytest.mark.parametrize(("key", "status"), [("pk_wrong", 401), (FORBIDDEN_KEY, 403)])
def test_auth_failures_raise_auth_error_and_are_not_retried(
    emu: EmulatorHandle, make_client: Callable[..., KlaviyoClient], key: str, status: int
) -> None:
    client = make_client(key)
    with pytest.raises(AuthError) as caught:
        send_events(client, [event(n) for n in range(1500)])
    assert caught.value.status == status
    # One request, no retry, and the second batch was never attempted.
    assert [entry["status"] for entry in emu.journal()] == [status]
    assert emu.events() == []


def test_a_rejection_is_raised_at_once(emu: EmulatorHandle, client: KlaviyoClient) -> None:
    with pytest.raises(RejectedError) as caught:
        client.post(BULK, {"data": {"type": "event-bulk-create-job"}}, endpoint="bulk_create_events")
    assert caught.value.status == 400 and caught.value.errors
    assert len(emu.journal()) == 1


def test_the_api_key_never_appears_in_errors_reprs_records_logs_or_the_journal(
    start_emulator: Callable[..., EmulatorHandle],
    make_client: Callable[..., KlaviyoClient],
    records: list[RequestRecord],
    caplog: pytest.LogCaptureFixture,
) -> None:
    canary = "pk_CANARY_0d2f9b7c41e6a8_never_print_me"
    accepting = start_emulator(api_keys=(canary,))
    rejecting = start_emulator()
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []

    def collect(error: BaseException) -> None:
        texts.extend([str(error), repr(error), "".join(traceback.format_exception(error))])
        texts.append(pickle.dumps(error).decode("latin-1"))

    # 401: the key is wrong.
    wrong = make_client(canary, handle=rejecting)
    with pytest.raises(AuthError) as auth:
        wrong.get("/api/metrics", endpoint="get_metrics")
    collect(auth.value)
    # Dropped connections until the client gives up, with the key accepted.
    good = make_client(canary, handle=accepting, attempts=2)
    accepting.fail_next(BULK, "drop", count=2)
    with pytest.raises(RetryableError) as dropped:
        good.post(BULK, {"data": {}}, endpoint="bulk_create_events")
    collect(dropped.value)
    # A rejection with Klaviyo's error body.
    with pytest.raises(RejectedError) as rejected:
        good.post(BULK, {"data": {}}, endpoint="bulk_create_events")
    collect(rejected.value)
    outcomes = send_events(good, [event(1)])
    assert outcomes[0].status == "sent"

    texts += [repr(wrong), repr(good), str(vars(good)), repr(good.stats), repr(good.limiter)]
    texts += [repr(record) for record in records]
    texts += [record.getMessage() for record in caplog.records]
    texts += [(handle.data_dir / "journal.jsonl").read_text() for handle in (accepting, rejecting)]
    assert len(records) == 5
    for text in texts:
        assert canary not in text
    # And the canary really was the key in use: the accepting account received the event.
    assert [e["unique_id"] for e in accepting.events()] == ["order:1:placed"]


def test_create_list_after_a_drop_post_commit_makes_exactly_one_list(
    emu: EmulatorHandle, client: KlaviyoClient
) -> None:
    emu.fail_next("/api/lists", "drop_after_commit")
    list_id = create_list(client, "Missed signups")
    assert create_list(client, "Missed signups") == list_id
    assert [(l["id"], l["name"]) for l in emu.lists()] == [(list_id, "Missed signups")]
    # Not idempotent, so the client did not re-POST by itself: one POST, then look-ups.
    assert len(posts(emu, "/api/lists")) == 1


def test_create_list_posts_again_only_when_the_list_is_not_there(
    emu: EmulatorHandle, make_client: Callable[..., KlaviyoClient]
) -> None:
    queued = []

    def fail_the_post_after_the_first_lookup(record: RequestRecord) -> None:
        if record.endpoint == "get_lists" and not queued:
            queued.append(True)
            emu.fail_next("/api/lists", 503)

    client = make_client(on_request=fail_the_post_after_the_first_lookup)
    list_id = create_list(client, "Winback")
    assert [l["id"] for l in emu.lists()] == [list_id]
    assert [(e["method"], e["status"]) for e in emu.journal()] == [
        ("GET", 200), ("POST", 503), ("GET", 200), ("POST", 201),
    ]


def test_a_non_idempotent_post_is_retried_only_when_it_cannot_have_landed(
    emu: EmulatorHandle, client: KlaviyoClient
) -> None:
    body = {"data": {"type": "list", "attributes": {"name": "Once"}}}
    emu.fail_next("/api/lists", 503)
    with pytest.raises(RetryableError):
        client.post("/api/lists", body, endpoint="create_list", idempotent=False)
    emu.fail_next("/api/lists", 429, retry_after=0.05)  # throttled: Klaviyo processed nothing
    assert client.post("/api/lists", body, endpoint="create_list", idempotent=False).status == 201
    assert [e["status"] for e in emu.journal()] == [503, 429, 201]


def test_the_limiter_keeps_requests_within_the_emulators_windows(
    start_emulator: Callable[..., EmulatorHandle], make_client: Callable[..., KlaviyoClient]
) -> None:
    # Windows scaled 10x: get_metrics allows 10 per 0.1 s and 150 per 6 s. Eight threads share one
    # client and limiter, as a worker's send tasks would, and push harder than either window allows.
    # The 0.1 s margin absorbs how late a request can reach the server after its slot on a loaded
    # 2-core machine (with 0.05 s, a 20x scale failed once in CI with a single 429).
    limited = start_emulator(rate_limits="real", rate_scale=10.0)
    client = make_client(handle=limited, limiter=WindowRateLimiter(scale=10.0, margin=0.1), attempts=1)
    total = 168

    def worker() -> None:
        for _ in range(total // 8):
            client.get("/api/metrics", endpoint="get_metrics")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal = limited.journal()
    assert [entry["status"] for entry in journal] == [200] * total  # not one 429
    times = sorted(entry["ts"] for entry in journal)

    def most_in_a_window(length: float) -> int:
        return max(bisect.bisect_left(times, start + length) - i for i, start in enumerate(times))

    assert most_in_a_window(0.1) <= 10
    assert most_in_a_window(6.0) <= 150
    # The steady window really was the constraint: request 151 waited for it.
    assert times[150] - times[0] >= 6.0


def test_links_to_another_origin_are_refused(client: KlaviyoClient) -> None:
    with pytest.raises(ValueError, match="another origin"):
        client.get("https://evil.example.com/api/events", endpoint="get_events")


def test_from_settings_reads_the_secret_key_base_url_and_revision(emu: EmulatorHandle) -> None:
    settings = load_settings(klaviyo_api_key=SecretStr(API_KEY), klaviyo_base_url=emu.base_url)
    with KlaviyoClient.from_settings(settings) as client:
        assert client.get("/api/metrics", endpoint="get_metrics").status == 200
        assert client.base_url == emu.base_url and client.revision == "2026-07-15"
        assert API_KEY not in repr(client)
    with pytest.raises(SettingsError, match="KLAVIYO_API_KEY"):
        KlaviyoClient.from_settings(load_settings())


def test_a_refused_connection_is_retried_even_for_a_non_idempotent_post(records: list[RequestRecord]) -> None:
    # Nothing listens on this port: the request never reached a server, so re-POSTing cannot double it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = KlaviyoClient(API_KEY, f"http://127.0.0.1:{port}", retries=Retries(3, first_wait=0.01, longest_wait=30.0),
                           on_request=records.append)
    with pytest.raises(RetryableError, match="after 3 attempts"):
        client.post("/api/lists", {"data": {}}, endpoint="create_list", idempotent=False)
    assert [(r.attempt, r.status, r.error) for r in records] == [
        (1, None, "RetryableError"), (2, None, "RetryableError"), (3, None, "RetryableError"),
    ]
    assert client.stats.as_dict()["by_status"] == {"no response": 3}
