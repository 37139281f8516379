"""Lists: ``POST /api/lists``, ``GET /api/lists`` and ``POST /api/lists/{id}/relationships/profiles``."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from kl_sync.emulator import filters
from kl_sync.emulator.documents import api_response, collection, page_args, resource_document
from kl_sync.emulator.errors import Problem, fail
from kl_sync.emulator.gate import Call, OperationRouter
from kl_sync.emulator.resources import list_resource
from kl_sync.emulator.rules.common import raise_problems
from kl_sync.emulator.rules.lists import read_list_create, read_list_members

router = OperationRouter()


@router.write("create_list")
def create_list(call: Call, body: Any, problems: list[Problem]) -> Response:
    name, opt_in, found = read_list_create(body)
    raise_problems(problems + found)
    with call.store.transaction() as tx:
        list_id = tx.create_list(name, opt_in)
    row = call.store.lists_by_id([list_id])[list_id]
    return resource_document(list_resource(row, call.base_url, call.params.get("fields[list]")), 201)


@router.read("get_lists")
def get_lists(call: Call) -> Response:
    conditions = filters.conditions(call.operation, call.params.get("filter"))
    sort, after, size = page_args(call)
    page = call.store.page_lists(conditions, sort, after, size)
    data = [list_resource(row, call.base_url, call.params.get("fields[list]")) for row in page.rows]
    return collection(call, page, data)


@router.write("add_profiles_to_list")
def add_profiles_to_list(call: Call, body: Any, problems: list[Problem]) -> Response:
    list_id = call.path_params["id"]
    members, found = read_list_members(body)
    problems = problems + found
    with call.store.transaction() as tx:
        if not tx.list_exists(list_id):
            raise fail(404, "not_found", f"No list with id {list_id!r}.")
        for profile_id, where in members:
            if not tx.profile_exists(profile_id):
                problems.append(Problem(404, "not_found", f"No profile with id {profile_id!r}.", pointer=where))
        raise_problems(problems)
        tx.add_list_members(list_id, [profile_id for profile_id, _ in members])
    return api_response(None, 204)
