"""The library and both notebooks against a planted store and a running emulator (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from kl_sync.analysis import (
    DEFAULT_PAIRS,
    START_METRICS,
    build_signup_profiles,
    find_duplicates,
    find_missed_signups,
    load_customers,
    load_events,
    push_to_list,
)
from kl_sync.analysis.duplicates import CSV_COLUMNS
from kl_sync.analysis.missed import MISSED_COLUMNS
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.lists import find_list
from tests.analysis.planted import EMAILS, PlantedWorld, planted_world

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlantedWorld]:
    with planted_world(tmp_path_factory.mktemp("planted")) as planted:
        yield planted


@pytest.fixture
def client(world: PlantedWorld) -> Iterator[KlaviyoClient]:
    with KlaviyoClient(world.api_key, world.base_url) as c:
        yield c


def test_events_come_back_with_both_sides_and_twins_pair_up(world, client):
    events = load_events(client, [*DEFAULT_PAIRS, *DEFAULT_PAIRS.values()])

    by_metric = events.groupby("metric").size().to_dict()
    assert by_metric == {"started.signup": 3, "Started Checkout": 4, "cancelled": 1, "Cancelled Account": 1}
    report = find_duplicates(events)
    twins = set(zip(report.pairs["email"], report.pairs["metric_pair"]))
    assert twins == {
        (EMAILS[1], "started.signup / Started Checkout"),
        (EMAILS[2], "started.signup / Started Checkout"),
        (EMAILS[4], "started.signup / Started Checkout"),
        (EMAILS[4], "cancelled / Cancelled Account"),
    }
    assert report.browser_only["email"].tolist() == [EMAILS[3]]
    assert report.server_only.empty
    assert ((report.pairs["delay_seconds"] >= 1) & (report.pairs["delay_seconds"] <= 30 * 60)).all()


def test_missed_signups_from_klaviyo_events_and_the_store(world, client):
    profiles = build_signup_profiles(load_events(client, START_METRICS), load_customers(world.store_url))

    missed = find_missed_signups(profiles)

    # The stopped customer is "missed" under the seed's literal rule (status is not Active).
    assert dict(zip(missed["email"], missed["customer_id"])) == {EMAILS[2]: 2, EMAILS[3]: 3, EMAILS[4]: 4}


def test_push_to_list_does_nothing_without_confirm_and_adds_members_with_it(world, client):
    name = f"win-back {dt.datetime.now(dt.UTC):%H%M%S%f}"
    emails = [EMAILS[2], " Pending@Example.com", EMAILS[3], "not an email"]

    dry = push_to_list(client, name, emails)

    assert not dry.pushed and dry.emails == (EMAILS[2], EMAILS[3]) and dry.skipped == ("not an email",)
    assert find_list(client, name) is None

    done = push_to_list(client, name, emails, confirm=True)

    assert done.pushed and done.list_id == find_list(client, name)
    assert done.outcomes == {"sent": 2} and not done.failures
    assert push_to_list(client, name, emails, confirm=True).list_id == done.list_id


def run_notebook(name: str, parameters: dict[str, object]) -> None:
    """Execute ``notebooks/<name>`` headless with ``parameters`` injected after its parameters cell,
    as papermill does; the committed file is not modified."""
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    [index] = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    injected = nbformat.v4.new_code_cell("\n".join(f"{key} = {value!r}" for key, value in parameters.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(index + 1, injected)
    NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()


def test_duplicate_notebook_writes_its_csv(world, tmp_path):
    run_notebook("duplicate_analysis.ipynb", {
        "klaviyo_base_url": world.base_url, "klaviyo_api_key": world.api_key, "output_dir": str(tmp_path),
    })

    written = pd.read_csv(tmp_path / "duplicates.csv")
    assert list(written.columns) == CSV_COLUMNS
    assert len(written) == 4 and set(written["email"]) == {EMAILS[1], EMAILS[2], EMAILS[4]}


def test_missed_signups_notebook_writes_its_csv(world, tmp_path):
    run_notebook("missed_signups.ipynb", {
        "store_url": world.store_url, "klaviyo_base_url": world.base_url, "klaviyo_api_key": world.api_key,
        "output_dir": str(tmp_path),
    })

    written = pd.read_csv(tmp_path / "missed_signups.csv")
    assert list(written.columns) == MISSED_COLUMNS
    default = written[written["rule"] == "incomplete_signup"]
    assert dict(zip(default["email"], default["customer_id"])) == {EMAILS[2]: 2, EMAILS[3]: 3, EMAILS[4]: 4}
