"""Profiles: :class:`~kl_sync.payloads.ProfilePayload` -> Klaviyo profile import bodies, and their senders.

Bulk (``bulk_import_profiles``, ``POST /api/profile-bulk-import-jobs``): up to 10,000 profiles and 5 MB
per job. Single (``create_or_update_profile``, ``POST /api/profile-import``): one profile, returns its
Klaviyo id, which :mod:`kl_sync.klaviyo.lists` needs.

Identity: ``external_id`` is the store's customer id. Klaviyo finds a profile by any identifier it
is given and updates the others ("You can update a profile identifier without providing its profile
ID as long as another profile identifier is provided", *Update profile identifiers via API*), so a
customer whose e-mail changed keeps one profile: the new e-mail lands on the profile holding the
external id.

Nulls: the single upsert documents that "setting a field to null will clear out the field"; the bulk
import "does not support setting fields to null to clear them. Only fields explicitly provided with
non-null values will be updated" (*Bulk Import Profiles API* guide). So a bulk body leaves out what
the store has no value for, and the single body sends it as ``null``.

A bulk import is a job: the 202 answers with its id, and what Klaviyo refused while importing is
listed by ``GET /api/profile-bulk-import-jobs/{id}/import-errors``. :func:`send_profiles` polls the
job (up to :data:`IMPORT_WAIT` seconds) and turns each import error into that profile's rejection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kl_sync.klaviyo.batches import Batch, ItemOutcome, pack_items, send_batches
from kl_sync.klaviyo.client import KlaviyoClient, copy_json
from kl_sync.klaviyo.errors import RejectedError, RetryableError, describe_error
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS
from kl_sync.payloads import ProfilePayload

log = logging.getLogger(__name__)

BULK_IMPORT = ENDPOINT_LIMITS["bulk_import_profiles"]
SINGLE_IMPORT = ENDPOINT_LIMITS["create_or_update_profile"]
IMPORT_JOB = ENDPOINT_LIMITS["get_bulk_import_profiles_job"]
IMPORT_ERRORS = ENDPOINT_LIMITS["get_errors_for_bulk_import_profiles_job"]

#: Where a bulk import body's n-th profile is: ``/data/attributes/profiles/data/<n>``.
PROFILES_POINTER = "/data/attributes/profiles/data/"

#: How long :func:`send_profiles` waits for an import job to finish before leaving its profiles
#: ``sent`` (the job goes on in Klaviyo; its errors are then not read), and its first poll interval.
IMPORT_WAIT = 60.0
FIRST_POLL = 0.2
#: Job statuses after which nothing changes (ProfileImportJobResponseObjectResource.status).
FINISHED = frozenset({"complete", "cancelled"})

_OPTIONAL = ("external_id", "first_name", "last_name", "properties")


def build_profile_attributes(profile: ProfilePayload, *, clear_nulls: bool = True) -> dict[str, Any]:
    """Klaviyo profile attributes: email, and external id, first/last name and custom properties when
    given. ``clear_nulls=False`` (a bulk import, which cannot clear) leaves out every null."""
    attributes: dict[str, Any] = {"email": profile["email"]}
    for name in _OPTIONAL:
        if name in profile:
            attributes[name] = copy_json(profile[name])  # type: ignore[literal-required]
    if not clear_nulls:
        attributes = {name: value for name, value in attributes.items() if value is not None}
        if isinstance(attributes.get("properties"), dict):
            attributes["properties"] = {k: v for k, v in attributes["properties"].items() if v is not None}
    return attributes


def build_profile_resource(profile: ProfilePayload, *, clear_nulls: bool = True) -> dict[str, Any]:
    """A JSON:API ``profile`` resource object identified by e-mail and external id (no Klaviyo id)."""
    return {"type": "profile", "attributes": build_profile_attributes(profile, clear_nulls=clear_nulls)}


def build_profile_import_body(profile: ProfilePayload) -> dict[str, Any]:
    """Body of ``POST /api/profile-import`` (create_or_update_profile) for one profile."""
    return {"data": build_profile_resource(profile)}


def _bulk_import_envelope(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": resources}},
        }
    }


def build_profile_bulk_import_bodies(
    profiles: Sequence[ProfilePayload],
    max_profiles: int = BULK_IMPORT.max_items or 10_000,
    max_bytes: int = BULK_IMPORT.max_bytes or 5_000_000,
) -> list[Batch]:
    """Bodies of ``POST /api/profile-bulk-import-jobs``, in input order, each within both limits."""
    resources = [build_profile_resource(profile, clear_nulls=False) for profile in profiles]
    return pack_items(resources, _bulk_import_envelope, PROFILES_POINTER, max_items=max_profiles, max_bytes=max_bytes)


def send_profiles(
    client: KlaviyoClient, profiles: Sequence[ProfilePayload], *, batches: Sequence[Batch] | None = None
) -> list[ItemOutcome]:
    """Import profiles in bulk jobs; one outcome per profile, in order.

    ``sent``: Klaviyo accepted the job (202) and, when it finished within :data:`IMPORT_WAIT`, listed
    no import error for the profile; ``rejected``: an import error names it (with Klaviyo's reason).
    ``batches``: ``build_profile_bulk_import_bodies(profiles)``, when the caller built them ahead.
    """
    return send_batches(client, profiles, build_profile_bulk_import_bodies, BULK_IMPORT, batches=batches,
                        settle=lambda batch, response: import_job_outcomes(client, batch, response.json))


def import_job_outcomes(
    client: KlaviyoClient, batch: Batch, created: Any, *, wait: float = IMPORT_WAIT, sleep: Callable[[float], None] = time.sleep
) -> dict[int, ItemOutcome]:
    """The rejections of a created import job (its 202 document ``created``), by the batch's positions.

    Polls the job until it is finished or ``wait`` seconds passed; a cancelled job leaves its profiles
    to be sent again (``retry``); a finished one's import errors reject the profiles they name (by
    pointer, else by the identifiers of their ``original_payload``)."""
    job_id = ((created or {}).get("data") or {}).get("id")
    if not isinstance(job_id, str):
        return {}
    try:
        return _job_rejections(client, batch, job_id, wait=wait, sleep=sleep)
    except (RetryableError, RejectedError) as err:
        # Klaviyo accepted the job: its profiles stay sent; only its import errors are not known.
        log.warning("import job %s: its status or errors could not be read (%s); its profiles count as sent",
                    job_id, err.message)
        return {}


def _job_rejections(
    client: KlaviyoClient, batch: Batch, job_id: str, *, wait: float, sleep: Callable[[float], None]
) -> dict[int, ItemOutcome]:
    status = job_status(client, job_id, wait=wait, sleep=sleep)
    if status == "cancelled":
        return dict.fromkeys(batch.input_positions, ItemOutcome("retry", f"import job {job_id} was cancelled"))
    if status != "complete":
        return {}
    locate = _locator(batch)
    outcomes: dict[int, ItemOutcome] = {}
    for error in iter_import_errors(client, job_id):
        for position in locate(error):
            outcomes[position] = ItemOutcome("rejected", f"import job {job_id}: {describe_error(error)}")
    return outcomes


def job_status(client: KlaviyoClient, job_id: str, *, wait: float, sleep: Callable[[float], None]) -> str | None:
    """The import job's status once finished, or its last status after ``wait`` seconds of polling."""
    deadline = time.monotonic() + wait
    interval = FIRST_POLL
    while True:
        document = client.get(IMPORT_JOB.path.format(job_id=job_id), endpoint=IMPORT_JOB.operation_id).json or {}
        status = ((document.get("data") or {}).get("attributes") or {}).get("status")
        if status in FINISHED or time.monotonic() + interval > deadline:
            return status
        sleep(interval)
        interval = min(interval * 2, 5.0)


def iter_import_errors(client: KlaviyoClient, job_id: str) -> Any:
    """Each import error of a job as an error object: ``{code, title, detail, source, original_payload}``."""
    path = IMPORT_ERRORS.path.format(id=job_id)
    params = {"page[size]": IMPORT_ERRORS.max_items}
    for page in client.paginate(path, endpoint=IMPORT_ERRORS.operation_id, params=params):
        for resource in page.get("data") or []:
            yield resource.get("attributes") or {}


def _locator(batch: Batch) -> Callable[[Mapping[str, Any]], list[int]]:
    """Which of the batch's profiles an import error names: its pointer's, or the one whose external
    id (else e-mail) its original payload carries."""
    resources = batch.body["data"]["attributes"]["profiles"]["data"]
    by_identifier: dict[tuple[str, str], int] = {}
    for index, resource in enumerate(resources):
        for name in ("external_id", "email"):
            value = resource["attributes"].get(name)
            if isinstance(value, str):
                by_identifier.setdefault((name, value.strip().lower()), batch.positions[(index,)])

    def locate(error: Mapping[str, Any]) -> list[int]:
        named = batch.positions_for_pointer(((error.get("source") or {}).get("pointer")))
        if named:
            return named
        original = error.get("original_payload") or {}
        attributes = original.get("attributes", original) if isinstance(original, dict) else {}
        for name in ("external_id", "email"):
            value = attributes.get(name) if isinstance(attributes, dict) else None
            if isinstance(value, str) and (name, value.strip().lower()) in by_identifier:
                return [by_identifier[(name, value.strip().lower())]]
        return []

    return locate


def send_profile(client: KlaviyoClient, profile: ProfilePayload) -> ItemOutcome:
    """One profile, through the bulk path (one code path for outcomes)."""
    return send_profiles(client, [profile])[0]


def upsert_profile(client: KlaviyoClient, profile: ProfilePayload) -> str:
    """Create or update one profile now and return its Klaviyo id (``POST /api/profile-import``)."""
    response = client.post(SINGLE_IMPORT.path, build_profile_import_body(profile), endpoint=SINGLE_IMPORT.operation_id)
    return str(response.json["data"]["id"])
