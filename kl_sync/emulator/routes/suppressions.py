"""Suppressions: ``POST /api/profile-suppression-bulk-create-jobs`` and
``GET /api/profile-suppression-bulk-create-jobs/{job_id}``; unsuppression,
``POST /api/profile-suppression-bulk-delete-jobs``, which lifts only ``USER_SUPPRESSED``."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from kl_sync.emulator.documents import resource_document
from kl_sync.emulator.errors import Problem
from kl_sync.emulator.gate import Call, OperationRouter
from kl_sync.emulator.resources import suppression_job_resource, unsuppression_job_resource
from kl_sync.emulator.rules.common import raise_problems
from kl_sync.emulator.rules.suppressions import read_suppression
from kl_sync.emulator.storage.profiles import ProfileWrite

router = OperationRouter()

SUPPRESSION_JOB = "profile-suppression-bulk-create-job"
UNSUPPRESSION_JOB = "profile-suppression-bulk-delete-job"


@router.write("bulk_suppress_profiles")
def bulk_suppress_profiles(call: Call, body: Any, problems: list[Problem]) -> Response:
    asked = read_suppression(body)
    problems = problems + asked.problems
    if asked.segment_id is not None:  # the emulator keeps no segments
        problems.append(
            Problem(404, "not_found", f"No segment with id {asked.segment_id!r}.",
                    pointer="/data/relationships/segment/data/id")
        )
    with call.store.transaction() as tx:
        if asked.list_id is not None and not tx.list_exists(asked.list_id):
            problems.append(
                Problem(404, "not_found", f"No list with id {asked.list_id!r}.", pointer="/data/relationships/list/data/id")
            )
        raise_problems(problems)
        # "If a profile is not found with the given email, one will be created."
        applied = tx.upsert_profiles([ProfileWrite(where, None, {"email": email}, {}, None) for email, where in asked.emails])
        targets = [(email, profile_id) for (email, _), (profile_id, _) in zip(asked.emails, applied)]
        if asked.list_id is not None:
            targets += tx.list_member_emails(asked.list_id)
        added = sum(1 for email, profile_id in targets if tx.suppress(email, profile_id))
        job_id = tx.create_job(
            SUPPRESSION_JOB,
            total=len(targets),
            completed=added,
            skipped=len(targets) - added,
            list_ids=[asked.list_id] if asked.list_id else [],
        )
    job = call.store.job(SUPPRESSION_JOB, job_id)
    return resource_document(suppression_job_resource(job, call.base_url, just_created=True), 202)


@router.read("get_bulk_suppress_profiles_job")
def get_bulk_suppress_profiles_job(call: Call) -> Response:
    job = call.store.job(SUPPRESSION_JOB, call.path_params["job_id"])
    return resource_document(suppression_job_resource(job, call.base_url))


@router.write("bulk_unsuppress_profiles")
def bulk_unsuppress_profiles(call: Call, body: Any, problems: list[Problem]) -> Response:
    """Lift USER_SUPPRESSED from e-mails (or a list's members); an unsubscribe, a bounce, a spam
    complaint or an invalid e-mail stays (bulk_unsuppress_profiles: "This only removes suppressions
    with reason USER_SUPPRESSED"). An e-mail with no profile is skipped: nothing to lift."""
    asked = read_suppression(body)
    problems = problems + asked.problems
    if asked.segment_id is not None:
        problems.append(Problem(404, "not_found", f"No segment with id {asked.segment_id!r}.",
                                pointer="/data/relationships/segment/data/id"))
    with call.store.transaction() as tx:
        if asked.list_id is not None and not tx.list_exists(asked.list_id):
            problems.append(
                Problem(404, "not_found", f"No list with id {asked.list_id!r}.", pointer="/data/relationships/list/data/id")
            )
        raise_problems(problems)
        emails = [email for email, _ in asked.emails]
        if asked.list_id is not None:
            emails += [email for email, _ in tx.list_member_emails(asked.list_id)]
        lifted = sum(1 for email in emails if tx.unsuppress(email))
        job_id = tx.create_job(UNSUPPRESSION_JOB, total=len(emails), completed=lifted, skipped=len(emails) - lifted,
                               list_ids=[asked.list_id] if asked.list_id else [])
    job = call.store.job(UNSUPPRESSION_JOB, job_id)
    return resource_document(unsuppression_job_resource(job, call.base_url, just_created=True), 202)
