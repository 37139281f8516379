"""The emulator's compiled request validator agrees with ``jsonschema`` on Klaviyo's spec slices,
and the shipped slices are exactly the operations its routes serve."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kl_sync.emulator.routes import ROUTERS
from kl_sync.emulator.spec import OPERATION_IDS, SPEC_DIR, BodyValidator, operation
from tests.emulator import klaviyo_bodies as bodies
from tests.spec_oracle import request_validator

VALID_BODIES: dict[str, Any] = {
    "bulk_create_events": bodies.bulk_events(
        [
            bodies.bulk_entry("a@example.com", [bodies.event(unique_id="1", value=1.5, backfill=True)],
                              first_name="A", location={"city": "Boston", "latitude": 42.36}),
            bodies.bulk_entry("b@example.com", [bodies.event(unique_id="2", value_currency="USD")]),
        ]
    ),
    "create_event": bodies.single_event(unique_id="x", value=3),
    "create_client_event": bodies.single_event(unique_id="y"),
    "create_or_update_profile": {
        "data": {
            "type": "profile",
            "attributes": {"email": "a@example.com", "phone_number": "+15005550006", "location": {"zip": "10017"},
                           "properties": {"Box": "Small"}},
            "meta": {"patch_properties": {"append": {"skus": "1"}, "unset": ["old"]}},
        }
    },
    "bulk_import_profiles": bodies.bulk_profiles(
        [bodies.profile("a@example.com"), bodies.profile(None, external_id="7")], ("Lst123",)
    ),
    "bulk_suppress_profiles": bodies.suppression(["a@example.com", "b@example.com"]),
    "create_list": {"data": {"type": "list", "attributes": {"name": "L", "opt_in_process": "single_opt_in"}}},
    "add_profiles_to_list": {"data": [{"type": "profile", "id": "01ABC"}]},
}
WRONG_VALUES = [None, 0, 1.5, True, "text", [], {}, ["x"], {"k": "v"}]


def _nodes(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _nodes(item, (*path, index))
    return found


def _at(value: Any, path: tuple) -> Any:
    for key in path:
        value = value[key]
    return value


def _oracle_paths(errors: list) -> set[tuple]:
    out = set()
    for error in errors:
        out.add(tuple(error.absolute_path))
    return out


def _our_paths(errors: list) -> set[tuple]:
    # "required" / "additionalProperties" point at the key itself; jsonschema at its parent object.
    return {e.path[:-1] if e.keyword in ("required", "additionalProperties") else e.path for e in errors}


def _agree(operation_id: str, body: Any) -> None:
    ours = operation(operation_id).body_validator.errors(body)
    theirs = list(request_validator(operation_id).iter_errors(body))
    assert bool(ours) == bool(theirs), (ours, [e.message for e in theirs])
    our_paths, their_paths = _our_paths(ours), _oracle_paths(theirs)
    # Each side's error lies at or under one of the other's (jsonschema stops at an anyOf for
    # nullable objects, where the emulator points inside).
    for path in our_paths:
        assert any(path[: len(p)] == p for p in their_paths), (path, their_paths)
    for path in their_paths:
        assert any(p[: len(path)] == path for p in our_paths), (path, our_paths)


@pytest.mark.parametrize("operation_id", sorted(VALID_BODIES))
def test_valid_bodies_pass_both(operation_id):
    assert operation(operation_id).body_validator.errors(VALID_BODIES[operation_id]) == []
    _agree(operation_id, VALID_BODIES[operation_id])


@pytest.mark.parametrize("operation_id", sorted(VALID_BODIES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_bodies_get_the_same_verdict_and_places(operation_id, data):
    body = copy.deepcopy(VALID_BODIES[operation_id])
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_nodes(body)))
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace" or not path:
            if not path:
                body = data.draw(st.sampled_from(WRONG_VALUES))
                break
            _at(body, path[:-1])[path[-1]] = copy.deepcopy(data.draw(st.sampled_from(WRONG_VALUES)))
        elif action == "delete":
            parent = _at(body, path[:-1])
            del parent[path[-1]]
        else:
            target = _at(body, path)
            if isinstance(target, dict):
                target[data.draw(st.sampled_from(["bogus", "type", "id", "attributes"]))] = "added"
            elif isinstance(target, list):
                # A copy: appending the shared [] / {} itself let later examples mutate WRONG_VALUES
                # (it once grew to contain itself: a RecursionError and hypothesis's 'flaky data').
                target.append(copy.deepcopy(data.draw(st.sampled_from(WRONG_VALUES))))
    _agree(operation_id, body)


def test_every_operation_loads_from_its_slice():
    for operation_id in OPERATION_IDS:
        op = operation(operation_id)
        assert op.rate_limits and op.path.startswith(("/api/", "/client/"))
    assert operation("get_events").page_size() == (200, 1000)
    assert operation("get_profiles").page_size() == (20, 100)
    assert operation("get_events").filter_operators["datetime"] == {
        "greater-or-equal", "greater-than", "less-or-equal", "less-than"
    }


def test_the_shipped_spec_slices_are_the_operations_the_routes_serve():
    names = [f"{operation_id}.json" for operation_id in OPERATION_IDS] + ["LICENSE"]
    served = [operation_id for router in ROUTERS for operation_id in getattr(router, "operation_ids", ())]
    assert sorted(served) == sorted(OPERATION_IDS)
    assert sorted(p.name for p in SPEC_DIR.iterdir()) == sorted(names)


def test_a_keyword_the_validator_cannot_check_is_refused():
    with pytest.raises(ValueError, match="pattern"):
        BodyValidator({"type": "string", "pattern": "^a"})
