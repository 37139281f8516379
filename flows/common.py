"""What every kl-sync flow shares: the Klaviyo key, the run summary artifacts, the run logger.

Flows are wiring: each task calls one ``kl_sync`` function. Retries live in the Klaviyo client, so
no task here has Prefect retries stacked on top.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from kl_sync import pipeline
from kl_sync.app.clients import klaviyo_client
from kl_sync.settings import Settings
from kl_sync.steps.consent import consent_report

SECRET_BLOCK = "klaviyo-api-key"


def klaviyo_api_key(settings: Settings) -> str | None:
    """The key from the Prefect Secret block ``klaviyo-api-key``, else ``KLAVIYO_API_KEY``."""
    from prefect.blocks.system import Secret

    try:
        return Secret.load(SECRET_BLOCK).get()
    except ValueError:  # no such block on this server: the environment decides
        return settings.api_key()


# Engines and runs are not hashable inputs: these tasks are never cached.
@task(name="start run", cache_policy=NO_CACHE)
def start_run(settings: Settings, steps: list[str], from_start: bool, dry_run: bool,
              verify_since: Any = None) -> pipeline.SyncRun:
    run = pipeline.start_sync(settings, steps=steps, from_start=from_start, dry_run=dry_run, verify_since=verify_since)
    get_run_logger().info("run %s: steps %s%s%s", run.run_id, ",".join(run.steps),
                          " from the first log row" if from_start else "", " (dry run)" if dry_run else "")
    return run


_STEP_LOG = {
    "parse": "parse: %(rows_read)d log rows read, %(queued)d events queued, %(dead_letters)d dead letters",
    "orders": "orders: %(rows_read)d changed orders read, %(queued)d events queued, %(dead_letters)d dead letters",
    "customers": "customers: %(rows_read)d changed customers read, %(queued)d profiles and consent changes queued, "
                 "%(dead_letters)d dead letters",
    "suppress": "suppress: %(rows_read)d customers checked, %(queued)d suppressions queued",
}


def _log_step(step: str, counts: dict[str, Any]) -> None:
    if "skipped" in counts:  # another run holds the store lock
        get_run_logger().info("%s: %s", step, counts["skipped"])
    else:
        get_run_logger().info(_STEP_LOG[step], counts)


@task(name="step", cache_policy=NO_CACHE)
def step_task(run: pipeline.SyncRun, step: str) -> dict[str, Any]:
    """One of parse, orders, customers, suppress (named after it in the run's task list)."""
    counts = pipeline.run_step(run, step).as_dict()
    _log_step(step, counts)
    return counts


@task(name="check key", cache_policy=NO_CACHE)
def check_key_task(run: pipeline.SyncRun, api_key: str | None) -> None:
    """One cheap authenticated read before the store is read: a refused key fails the run at once."""
    from kl_sync.klaviyo.reads import check_key

    with klaviyo_client(run.settings, api_key=api_key) as client:
        check_key(client)


@task(name="send outbox", cache_policy=NO_CACHE)
def send_task(run: pipeline.SyncRun, api_key: str | None, limiter: Any = None) -> dict[str, Any]:
    with klaviyo_client(run.settings, api_key=api_key, limiter=limiter) as client:
        result = pipeline.run_send(run, client)
    _log_send(run, result)
    return result.as_dict()


@task(name="read and send", cache_policy=NO_CACHE)
def read_and_send_task(run: pipeline.SyncRun, steps: list[str], api_key: str | None,
                       limiter: Any = None) -> dict[str, Any]:
    """The store-reading ``steps`` and the send at once, as ``kl-sync sync`` runs them
    (:func:`~kl_sync.pipeline.send_while_reading`): the first bulk request leaves once the first
    chunk is queued, and the steps read in a process of their own. One task, because the sender
    waits on the steps' commits; each step's counts are logged as its own task's would be."""
    with klaviyo_client(run.settings, api_key=api_key, limiter=limiter) as client:
        result = pipeline.send_while_reading(run, client, steps)
    for step in steps:
        if step in run.results:
            _log_step(step, run.results[step].as_dict())
    _log_send(run, result)
    return {step: run.results[step].as_dict() for step in (*steps, "send") if step in run.results}


def _log_send(run: pipeline.SyncRun, result: Any) -> None:
    logger = get_run_logger()
    if run.dry_run:
        for preview in result.details["preview"]:
            logger.info("would send %s (%s): %s", preview["key"], preview["kind"], preview["body"])
    else:
        logger.info("send: %d events, %d profiles, %d suppressions, %d unsuppressions sent; %d retries later; "
                    "%d dead letters", result.details["sent_events"], result.details["sent_profiles"],
                    result.details["sent_suppressions"], result.details["sent_unsuppressions"],
                    result.details["retries"], result.dead_letters)


@task(name="verify delivery", cache_policy=NO_CACHE)
def verify_task(run: pipeline.SyncRun, api_key: str | None, limiter: Any = None) -> dict[str, Any]:
    with klaviyo_client(run.settings, api_key=api_key, limiter=limiter) as client:
        result = pipeline.run_verify(run, client)
    if not run.dry_run:
        get_run_logger().info("verify: %d of %d rows due verified in Klaviyo; %d missing, %d sent again; %d dead letters",
                              result.details["verified"], result.rows_read, result.details["missing"],
                              result.details["resent"], result.dead_letters)
    return result.as_dict()


@task(name="read consent back", cache_policy=NO_CACHE)
def consent_task(run: pipeline.SyncRun, api_key: str | None, limiter: Any = None) -> dict[str, Any]:
    """Klaviyo's suppressions since the last read; the artifact ``kl-sync-consent`` lists the
    customers the store believes subscribed whom Klaviyo cannot e-mail."""
    with klaviyo_client(run.settings, api_key=api_key, limiter=limiter) as client:
        result = pipeline.run_consent(run, client)
    report = consent_report(run.state, run.store)
    get_run_logger().info("consent: %d suppressed profiles read; %d customers the store believes subscribed "
                          "cannot be e-mailed", result.rows_read, len(report))
    create_table_artifact(key="kl-sync-consent", table=report or [{"customer_id": "", "email": "", "reason": "none"}],
                          description="Customers the store believes subscribed (subscribed, not Dead) whom Klaviyo "
                                      "cannot e-mail, with Klaviyo's reason and date: for the store to act on")
    return result.as_dict()


@task(name="publish summary", cache_policy=NO_CACHE)
def publish_task(run: pipeline.SyncRun, error: str | None = None) -> dict[str, Any]:
    counts = pipeline.finish_sync(run, error=RuntimeError(error) if error else None)
    create_table_artifact(key="kl-sync-summary", table=pipeline.summary_rows(run),
                          description=f"kl-sync run {run.run_id}: what each step read, queued and sent")
    letters = pipeline.dead_letters_of_run(run)
    by_reason = [{"reason": r["reason"], "letters": r["letters"], "first seen": str(r["first_seen"]),
                  "last seen": str(r["last_seen"]), "example": r["example"]} for r in letters["open_by_reason"]]
    create_table_artifact(key="kl-sync-dead-letters", table=by_reason or [{"reason": "none", "letters": 0}],
                          description=f"Open dead letters by reason after run {run.run_id}: {letters['open']} open, "
                                      f"{letters['replayed']} replayed and not delivered yet; this run added "
                                      f"{letters['added_by_this_run']} and resolved {letters['resolved_by_this_run']}. "
                                      "Fix the data, then `kl-sync dead-letters replay --reason TEXT` (README: Fix the "
                                      "data: dead letters)")
    create_table_artifact(key="kl-sync-delivery", table=pipeline.delivery_rows(run.state) or [{"metric": "none"}],
                          description="Outbox rows per metric: queued, sent (Klaviyo answered 2xx), verified (read "
                                      "back from Klaviyo), missing (looked for, not there yet), dead")
    send = run.results.get("send")
    if send is not None and send.details.get("quality"):
        create_table_artifact(key="kl-sync-validation", table=pipeline.quality_rows(send),
                              description="Data-quality validation of what was sent: rows per suite, failures by expectation")
    return counts
