"""Profiles: ``POST /api/profile-import`` (one upsert, answered with the profile) and bulk import
jobs, ``POST /api/profile-bulk-import-jobs``, ``GET /api/profile-bulk-import-jobs/{job_id}`` and its
``GET .../{id}/import-errors``.

A bulk import is validated when it is posted (a malformed profile is a 400 pointing at it, as for any
request); a profile that is well formed but cannot be imported (its external id or e-mail belongs to
another profile) does not fail the request: the job imports the others and lists it among its
import errors (``failed_count``), with its pointer and ``original_payload``
(ImportErrorResponseObjectResource), as Klaviyo's asynchronous import does."""

from __future__ import annotations

import json
from typing import Any, Sequence

from starlette.datastructures import QueryParams
from starlette.responses import Response

from kl_sync.emulator.documents import collection, page_args, resource_document
from kl_sync.emulator.errors import Problem
from kl_sync.emulator.gate import Call, OperationRouter
from kl_sync.emulator.resources import import_error_resource, import_job_resource, list_resource, profile_resource
from kl_sync.emulator.rules.common import raise_problems
from kl_sync.emulator.rules.profiles import read_profile_import, read_profile_upsert
from kl_sync.emulator.storage import Store

router = OperationRouter()

IMPORT_JOB = "profile-bulk-import-job"


def profile_resources(
    store: Store, rows: Sequence[dict[str, Any]], base: str, params: QueryParams
) -> list[dict[str, Any]]:
    """Profile resources as the query asks for them (``fields[profile]``,
    ``additional-fields[profile]=subscriptions``, which shows the e-mail's suppression)."""
    emails = [json.loads(row["attributes"]).get("email") for row in rows]
    suppressed = store.suppressions_by_email([e for e in emails if e])
    additional = (params.get("additional-fields[profile]") or "").split(",")
    return [
        profile_resource(
            row,
            base,
            suppression=suppressed.get((email or "").lower()),
            additional=additional,
            fields=params.get("fields[profile]"),
        )
        for row, email in zip(rows, emails)
    ]


@router.write("create_or_update_profile")
def create_or_update_profile(call: Call, body: Any, problems: list[Problem]) -> Response:
    read = read_profile_upsert(body)
    raise_problems(problems + read.problems)
    with call.store.transaction() as tx:
        profile_id, created = tx.upsert_profile(read.profiles[0])
    row = call.store.profiles_by_id([profile_id])[profile_id]
    (resource,) = profile_resources(call.store, [row], call.base_url, call.params)
    return resource_document(resource, 201 if created else 200)


@router.write("bulk_import_profiles")
def bulk_import_profiles(call: Call, body: Any, problems: list[Problem]) -> Response:
    read, list_ids = read_profile_import(body)
    problems = problems + read.problems
    with call.store.transaction() as tx:
        for index, list_id in enumerate(list_ids):
            if not tx.list_exists(list_id):
                problems.append(
                    Problem(404, "not_found", f"No list with id {list_id!r}.",
                            pointer=f"/data/relationships/lists/data/{index}/id")
                )
        raise_problems(problems)
        results = tx.upsert_each_profile(read.profiles)
        profile_ids = list(dict.fromkeys(r[0] for r in results if isinstance(r, tuple)))
        refused = [(r, _resource_at(body, write.path)) for r, write in zip(results, read.profiles)
                   if isinstance(r, Problem)]
        for list_id in list_ids:
            tx.add_list_members(list_id, profile_ids)
        job_id = tx.create_job(
            IMPORT_JOB,
            total=len(read.profiles),
            completed=len(read.profiles) - len(refused),
            failed=len(refused),
            list_ids=list_ids,
            profile_ids=profile_ids,
        )
        tx.add_import_errors(job_id, refused)
    job = call.store.job(IMPORT_JOB, job_id)
    return resource_document(import_job_resource(job, call.base_url, just_created=True), 202)


def _resource_at(body: Any, path: tuple) -> Any:
    for step in path:
        body = body[step]
    return body


@router.read("get_errors_for_bulk_import_profiles_job")
def get_errors_for_bulk_import_profiles_job(call: Call) -> Response:
    job_id = call.path_params["id"]
    call.store.job(IMPORT_JOB, job_id)  # an unknown job is a 404
    _, after, size = page_args(call)
    page = call.store.page_import_errors(job_id, after, size)
    return collection(call, page, [import_error_resource(row) for row in page.rows])


@router.read("get_bulk_import_profiles_job")
def get_bulk_import_profiles_job(call: Call) -> Response:
    job = call.store.job(IMPORT_JOB, call.path_params["job_id"])
    included = None
    if "lists" in (call.params.get("include") or "").split(","):
        lists = call.store.lists_by_id(json.loads(job["list_ids"]))
        included = [list_resource(row, call.base_url, call.params.get("fields[list]")) for row in lists.values()]
    return resource_document(import_job_resource(job, call.base_url), included=included)
