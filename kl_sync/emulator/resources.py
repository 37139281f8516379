"""Klaviyo's JSON:API resource objects built from stored rows (pure functions).

Shapes follow the response schemas of the spec slices (``tests/emulator`` validates every answer
against them): ``type``, ``id``, ``attributes``, ``relationships`` with ``self``/``related`` links,
and ``links.self``. ``fields`` is a sparse fieldset (``fields[event]=datetime,uuid``).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterable

from kl_sync.emulator.storage.schema import PROFILE_ATTRIBUTES
from kl_sync.emulator.storage.values import iso_from_epoch

#: Integration Klaviyo reports for metrics created through the API.
API_INTEGRATION = {"object": "integration", "id": "0eMvjm", "key": "api", "name": "API", "category": "API"}


def _links(base: str, path: str) -> dict[str, str]:
    return {"self": f"{base}{path}/"}


def _relationship(base: str, kind: str, own_id: str, name: str, data: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "links": {
            "self": f"{base}/api/{kind}/{own_id}/relationships/{name}/",
            "related": f"{base}/api/{kind}/{own_id}/{name}/",
        }
    }
    if data is not None:
        out["data"] = data
    return out


def _resource(
    kind: str, collection: str, row_id: str, attributes: dict[str, Any], base: str, relationships: dict | None = None
) -> dict[str, Any]:
    """``{type, id, attributes, relationships?, links: {self}}`` of one resource of ``/api/<collection>``."""
    out: dict[str, Any] = {"type": kind, "id": row_id, "attributes": attributes}
    if relationships is not None:
        out["relationships"] = relationships
    out["links"] = _links(base, f"/api/{collection}/{row_id}")
    return out


def _sparse(attributes: dict[str, Any], fields: str | None) -> dict[str, Any]:
    if not fields:
        return attributes
    wanted = {f.split(".", 1)[0] for f in fields.split(",")}
    return {k: v for k, v in attributes.items() if k in wanted}


def event_resource(row: dict[str, Any], base: str, fields: str | None = None) -> dict[str, Any]:
    properties = json.loads(row["properties"])
    # Klaviyo returns the event's unique id and value among its properties.
    properties["$event_id"] = row["dedupe_key"]
    if row["value"] is not None:
        properties["$value"] = row["value"]
    attributes = {
        "timestamp": row["time"],
        "event_properties": properties,
        "datetime": iso_from_epoch(row["time"]),
        "uuid": row["uuid"],
    }
    relationships = {
        "profile": _relationship(base, "events", row["id"], "profile", {"type": "profile", "id": row["profile_id"]}),
        "metric": _relationship(base, "events", row["id"], "metric", {"type": "metric", "id": row["metric_id"]}),
    }
    return _resource("event", "events", row["id"], _sparse(attributes, fields), base, relationships)


def metric_resource(row: dict[str, Any], base: str, fields: str | None = None) -> dict[str, Any]:
    attributes = {
        "name": row["name"],
        "created": row["created"],
        "updated": row["updated"],
        "integration": dict(API_INTEGRATION),
    }
    return _resource("metric", "metrics", row["id"], _sparse(attributes, fields), base)


def _subscriptions(suppression: dict[str, Any] | None) -> dict[str, Any]:
    # The emulator subscribes no one (no subscribe endpoint is served): consent is UNSUBSCRIBED from
    # the moment a person unsubscribed (a planted UNSUBSCRIBE), NEVER_SUBSCRIBED otherwise.
    # can_receive_email_marketing: "True if [the] profile does not have any global suppressions".
    unsubscribed = suppression is not None and suppression["reason"] == "UNSUBSCRIBE"
    marketing: dict[str, Any] = {
        "can_receive_email_marketing": suppression is None,
        "consent": "UNSUBSCRIBED" if unsubscribed else "NEVER_SUBSCRIBED",
        "consent_timestamp": suppression["time"] if unsubscribed else None,
        "last_updated": suppression["time"] if suppression else None,
        "method": None,
        "method_detail": "",
        "custom_method_detail": None,
        "double_optin": None,
        "suppression": [{"reason": suppression["reason"], "timestamp": suppression["time"]}] if suppression else [],
        "list_suppressions": [],
    }
    return {"email": {"marketing": marketing}}


_PREDICTIVE = (
    "historic_clv",
    "predicted_clv",
    "total_clv",
    "historic_number_of_orders",
    "predicted_number_of_orders",
    "average_days_between_orders",
    "average_order_value",
    "churn_probability",
    "expected_date_of_next_order",
    "ranked_channel_affinity",
)


def profile_resource(
    row: dict[str, Any],
    base: str,
    *,
    suppression: dict[str, Any] | None = None,
    additional: Iterable[str] = (),
    fields: str | None = None,
) -> dict[str, Any]:
    stored = json.loads(row["attributes"])
    attributes: dict[str, Any] = {name: stored.get(name) for name in PROFILE_ATTRIBUTES}
    attributes.update(
        created=row["created"],
        updated=row["updated"],
        last_event_date=row["last_event_date"],
        properties=json.loads(row["properties"]),
    )
    attributes = _sparse(attributes, fields)
    if "subscriptions" in additional:
        attributes["subscriptions"] = _subscriptions(suppression)
    if "predictive_analytics" in additional:
        attributes["predictive_analytics"] = {name: None for name in _PREDICTIVE}
    relationships = {
        "lists": _relationship(base, "profiles", row["id"], "lists"),
        "segments": _relationship(base, "profiles", row["id"], "segments"),
    }
    return _resource("profile", "profiles", row["id"], attributes, base, relationships)


def list_resource(row: dict[str, Any], base: str, fields: str | None = None) -> dict[str, Any]:
    attributes = {
        "name": row["name"],
        "created": row["created"],
        "updated": row["updated"],
        "opt_in_process": row["opt_in_process"],
    }
    relationships = {"profiles": _relationship(base, "lists", row["id"], "profiles")}
    return _resource("list", "lists", row["id"], _sparse(attributes, fields), base, relationships)


def _job_attributes(job: dict[str, Any], just_created: bool, names: tuple[str, ...]) -> dict[str, Any]:
    """A bulk job's ``names`` attributes, in that order. As first answered a job is still "queued"
    with nothing done (as at Klaviyo), though the emulator has already applied it, so the next GET
    shows it complete."""
    stored = {
        "status": job["status"],
        "created_at": job["created_at"],
        "total_count": job["total_count"],
        "completed_count": job["completed_count"],
        "failed_count": job["failed_count"],
        "skipped_count": job["skipped_count"],
        "completed_at": job["completed_at"],
        "expires_at": (dt.datetime.fromisoformat(job["created_at"]) + dt.timedelta(days=7)).isoformat(),
        "started_at": job["created_at"],
    }
    queued = {"status": "queued", "completed_count": 0, "failed_count": 0, "skipped_count": 0,
              "completed_at": None, "started_at": None}
    return {name: queued[name] if just_created and name in queued else stored[name] for name in names}


def import_job_resource(job: dict[str, Any], base: str, *, just_created: bool = False) -> dict[str, Any]:
    """A profile-bulk-import-job."""
    names = ("status", "created_at", "total_count", "completed_count", "failed_count", "completed_at",
             "expires_at", "started_at")
    kind = "profile-bulk-import-jobs"
    lists = [{"type": "list", "id": i} for i in json.loads(job["list_ids"])]
    relationships = {
        "lists": _relationship(base, kind, job["id"], "lists", lists),
        "profiles": _relationship(base, kind, job["id"], "profiles"),
        "import-errors": {"links": {"related": f"{base}/api/{kind}/{job['id']}/import-errors/"}},
    }
    return _resource("profile-bulk-import-job", kind, job["id"], _job_attributes(job, just_created, names), base,
                     relationships)


def import_error_resource(row: dict[str, Any]) -> dict[str, Any]:
    """An import-error of a bulk import job (ImportErrorResponseObjectResource)."""
    attributes = {"code": row["code"], "title": row["title"], "detail": row["detail"],
                  "source": {"pointer": row["pointer"]} if row["pointer"] else {},
                  "original_payload": json.loads(row["original_payload"]) if row["original_payload"] else None}
    return {"type": "import-error", "id": row["id"], "attributes": attributes}


def unsuppression_job_resource(job: dict[str, Any], base: str, *, just_created: bool = False) -> dict[str, Any]:
    """A profile-suppression-bulk-delete-job."""
    names = ("status", "created_at", "total_count", "completed_count", "completed_at", "skipped_count")
    kind = "profile-suppression-bulk-delete-jobs"
    relationships = {
        "lists": _relationship(base, kind, job["id"], "lists", []),
        "segments": _relationship(base, kind, job["id"], "segments", []),
    }
    return _resource("profile-suppression-bulk-delete-job", kind, job["id"],
                     _job_attributes(job, just_created, names), base, relationships)


def suppression_job_resource(job: dict[str, Any], base: str, *, just_created: bool = False) -> dict[str, Any]:
    """A profile-suppression-bulk-create-job."""
    names = ("status", "created_at", "total_count", "completed_count", "completed_at", "skipped_count")
    kind = "profile-suppression-bulk-create-jobs"
    lists = [{"type": "list", "id": i} for i in json.loads(job["list_ids"])]
    relationships = {
        "lists": _relationship(base, kind, job["id"], "lists", lists),
        "segments": _relationship(base, kind, job["id"], "segments", []),
    }
    return _resource("profile-suppression-bulk-create-job", kind, job["id"],
                     _job_attributes(job, just_created, names), base, relationships)
