"""The library and the three notebooks against a planted store and a running emulator (real HTTP on
127.0.0.1, on a free port, never the emulator's default one)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from kl_sync.analysis import (
    DEFAULT_PAIRS,
    START_METRICS,
    add_klaviyo_view,
    build_signup_profiles,
    compare_profiles,
    connect_klaviyo,
    describe_window,
    drift_sentences,
    find_duplicates,
    find_missed_signups,
    funnel_sentences,
    in_window,
    load_customers,
    load_events,
    load_profiles,
    notebook_rules,
    plan_win_back,
    push_to_list,
    push_win_back,
    resolve_since,
    rule_table,
    signup_funnel,
    stalled_sentences,
)
from kl_sync.analysis.duplicates import CSV_COLUMNS
from kl_sync.analysis.missed import MISSED_COLUMNS
from kl_sync.analysis.notebook import NotebookStop
from kl_sync.app.report import execute_notebook, klaviyo_for_report, write_report
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.lists import find_list
from kl_sync.settings import EMULATOR_PORT
from tests.analysis.jupyter import REPO, free_port, git, scratch_repo
from tests.analysis.planted import EMAILS, NOW, STRANGER, WIN_BACK, PlantedWorld, planted_world

NOTEBOOK_DIR = REPO / "notebooks"
#: The planted people who started in the last 90 days and match the notebook's rules (one row each).
MISSED_90_DAYS = {EMAILS[2], EMAILS[3], EMAILS[4], EMAILS[5], EMAILS[6], EMAILS[7], EMAILS[9], STRANGER}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlantedWorld]:
    with planted_world(tmp_path_factory.mktemp("planted")) as planted:
        assert not planted.base_url.endswith(f":{EMULATOR_PORT}")
        yield planted


@pytest.fixture
def client(world: PlantedWorld) -> Iterator[KlaviyoClient]:
    with connect_klaviyo(world.base_url, world.api_key) as c:
        yield c


@pytest.fixture
def settings_point_at_the_world(world: PlantedWorld, monkeypatch: pytest.MonkeyPatch) -> PlantedWorld:
    """kl-sync's settings in the environment (the notebooks' kernels inherit it), as a person sets them."""
    monkeypatch.setenv("KLAVIYO_BASE_URL", world.base_url)
    monkeypatch.setenv("KLAVIYO_API_KEY", world.api_key)
    monkeypatch.setenv("KL_SYNC_STORE_URL", world.store_url)
    return world


def test_events_come_back_with_both_sides_and_twins_pair_up(world, client):
    events = load_events(client, [*DEFAULT_PAIRS, *DEFAULT_PAIRS.values()])

    by_metric = events.groupby("metric").size().to_dict()
    assert by_metric == {"started.signup": 10, "Started Checkout": 11, "cancelled": 1, "Cancelled Account": 1}
    report = find_duplicates(events)
    assert sorted(report.pairs["email"]) == sorted([*(EMAILS[i] for i in (1, 2, 4, 5, 6, 7, 8, 9, 10)), EMAILS[4]])
    assert report.server_only["email"].tolist() == [EMAILS[9]]  # the second start
    assert sorted(report.browser_only["email"]) == [EMAILS[3], STRANGER]
    assert report.pairs["server_unique_id"].str.match(r"^log:\d+$").all()
    assert (report.pairs["server_unique_id"] != report.pairs["browser_unique_id"]).all()


def missed_signups(world: PlantedWorld, client: KlaviyoClient, since: str | None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    start = resolve_since(since, pd.Timestamp(NOW))
    people = in_window(build_signup_profiles(load_events(client, START_METRICS), load_customers(world.store_url), as_of=NOW), start)
    return people, add_klaviyo_view(find_missed_signups(people, notebook_rules()), load_profiles(client, people["email"])), describe_window(start)


def test_missed_signups_one_row_per_person_with_who_may_be_emailed(world, client):
    people, missed, window = missed_signups(world, client, "90 days")

    assert missed["email"].is_unique and set(missed["email"]) == MISSED_90_DAYS
    rows = missed.set_index("email")
    assert rows.loc[EMAILS[9], "rules"] == "incomplete_signup, never_completed, stalled_more_than_7d, came_back_after_1d"
    assert rows.loc[EMAILS[4], "rules"] == "incomplete_signup"
    assert rows.loc[EMAILS[2], "name"] == "First2 Last2" and rows.loc[EMAILS[2], "status"] == "Pending"
    assert rows.loc[EMAILS[6], "suppressed_in_klaviyo"] == "USER_SUPPRESSED"  # read from the profile's subscriptions
    assert dict(zip(missed["email"], missed["not_emailed_because"])) == {
        EMAILS[2]: "", EMAILS[3]: "", EMAILS[4]: "", EMAILS[9]: "", EMAILS[5]: "unsubscribed in the store",
        EMAILS[6]: "suppressed in Klaviyo", EMAILS[7]: "Dead in the store", STRANGER: "not in the store (no consent on record)",
    }
    assert (rows["last_activity"] >= rows["last_started_at"]).all()
    assert rule_table(missed, notebook_rules())[["rule", "people", "can_email"]].to_dict("records") == [
        {"rule": "incomplete_signup", "people": 8, "can_email": 4},
        {"rule": "never_completed", "people": 7, "can_email": 3},
        {"rule": "stalled_more_than_7d", "people": 7, "can_email": 3},
        {"rule": "came_back_after_1d", "people": 1, "can_email": 1},
    ]
    since = (pd.Timestamp(NOW) - pd.Timedelta(days=90)).strftime("%Y-%m-%d")
    assert funnel_sentences(signup_funnel(people), missed, window) == [
        f"Of 10 people who started a sign-up since {since}, 7 (70%) did not finish; 3 of them can be e-mailed.",
        "3 (30%) completed it and 2 (20%) are still active.",
    ]
    assert stalled_sentences(missed) == [
        "6 of the 8 missed signups stalled after step 1 and never finished.",
        "1 person finished the sign-up and later left (the seed's rule counts them as missed); the win-back push leaves them out.",
    ]


def test_the_whole_history_adds_the_old_starter(world, client):
    people, missed, window = missed_signups(world, client, None)

    assert set(missed["email"]) == MISSED_90_DAYS | {EMAILS[8]}
    assert funnel_sentences(signup_funnel(people), missed, window)[0] == (
        "Of 11 people who started a sign-up in the whole history, 8 (73%) did not finish; 4 of them can be e-mailed.")
    assert set(plan_win_back(missed).audience["email"]) == WIN_BACK | {EMAILS[8]}


def test_the_win_back_push_sends_only_who_may_be_emailed_and_says_who_it_left_out(world, client):
    _, missed, _ = missed_signups(world, client, "90 days")
    plan = plan_win_back(missed)
    name = f"win-back {dt.datetime.now(dt.UTC):%H%M%S%f}"

    dry = push_win_back(client, plan, name)

    assert find_list(client, name) is None
    assert dry.summary() == (
        f"3 people would go to list {name!r} (set push_to_klaviyo = True to push); left out 5: 1 Dead in the store, "
        "1 unsubscribed in the store, 1 suppressed in Klaviyo, 1 not in the store (no consent on record), "
        "1 finished the sign-up (now Stopped)"
    )

    done = push_win_back(client, plan, name, push_to_klaviyo=True)
    again = push_win_back(client, plan, name, push_to_klaviyo=True)

    assert done.pushed and done.outcomes == {"sent": 3} and again.list_id == done.list_id == find_list(client, name)
    [members] = [item["profile_emails"] for item in world.emulator.lists() if item["name"] == name]
    assert sorted(members) == sorted(WIN_BACK)
    assert done.summary().startswith(f"list {name!r} ({done.list_id}): 3 sent; left out 5: ")


def test_push_to_list_folds_and_skips_what_is_not_an_email(world, client):
    name = f"plain {dt.datetime.now(dt.UTC):%H%M%S%f}"
    emails = [EMAILS[2], " Pending@Example.com", EMAILS[3], "not an email"]

    dry = push_to_list(client, name, emails)
    done = push_to_list(client, name, emails, push_to_klaviyo=True)

    assert not dry.pushed and dry.emails == (EMAILS[2], EMAILS[3]) and dry.skipped == ("not an email",)
    assert done.pushed and done.outcomes == {"sent": 2} and not done.failures


def test_klaviyo_against_the_store(world, client):
    drift = compare_profiles(load_profiles(client), load_customers(world.store_url))

    assert dict(zip(drift.stale["email"], drift.stale["stale_fields"])) == {
        EMAILS[3]: "Status",  # only the browser saw them, and its identify sets no Status
        EMAILS[10]: "Status, Schedule, Box",  # finished after the sync sent their start
    }
    assert drift.klaviyo_only["email"].tolist() == [STRANGER] and drift.store_only.empty
    assert drift_sentences(drift)[0] == ("Of 11 Klaviyo profiles, 10 belong to a store customer; 2 of them (20%) are stale "
                                         "(Status differs for 2, Schedule differs for 1, Box differs for 1).")


def outputs_text(notebook) -> str:
    """Everything the executed notebook shows: streams, results, markdown displays."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append("".join(output.get("text", "")))
            for mime in ("text/plain", "text/markdown", "text/html"):
                parts.append("".join(output.get("data", {}).get(mime, "")))
    return "\n".join(parts)


def test_missed_signups_notebook_pushes_only_who_may_be_emailed(settings_point_at_the_world, tmp_path):
    world = settings_point_at_the_world
    list_name = f"notebook win-back {dt.datetime.now(dt.UTC):%H%M%S%f}"

    notebook = execute_notebook(NOTEBOOK_DIR / "missed_signups.ipynb", {
        "output_dir": str(tmp_path), "push_to_klaviyo": True, "win_back_list": list_name,
    })

    written = pd.read_csv(tmp_path / "missed_signups.csv")
    assert list(written.columns) == MISSED_COLUMNS
    assert written["email"].is_unique and set(written["email"]) == MISSED_90_DAYS
    [members] = [item["profile_emails"] for item in world.emulator.lists() if item["name"] == list_name]
    assert sorted(members) == sorted(WIN_BACK)
    store = load_customers(world.store_url).set_index("email")
    suppressed = {row["email"] for row in world.emulator.suppressions()}
    for email in members:
        assert store.loc[email, "status"] != "Dead" and bool(store.loc[email, "email_subscribed"]) and email not in suppressed
    shown = outputs_text(notebook)
    assert f"list '{list_name}'" in shown and "3 sent; left out 5: 1 Dead in the store" in shown
    assert "did not finish; 3 of them can be e-mailed." in shown
    figures = [output["data"] for cell in notebook.cells for output in cell.get("outputs", [])
               if "".join(output.get("data", {}).get("text/plain", "")).startswith("<Figure")]
    assert len(figures) == 2 and all("image/png" in data for data in figures)  # drawn, not printed


def test_a_notebook_run_on_its_defaults_then_saved_from_jupyterlab_keeps_git_clean(settings_point_at_the_world, jupyter):
    world = settings_point_at_the_world
    repo = scratch_repo(jupyter.root_dir / "after-a-run", ["missed_signups.ipynb"])

    notebook = execute_notebook(NOTEBOOK_DIR / "missed_signups.ipynb")  # as a person runs it: nothing injected
    executed = json.loads(nbformat.writes(notebook))
    assert EMAILS[2] in json.dumps(executed)
    jupyter.save(repo / "notebooks" / "missed_signups.ipynb", executed)

    on_disk = (repo / "notebooks" / "missed_signups.ipynb").read_text(encoding="utf-8")
    assert EMAILS[2] not in on_disk
    assert on_disk == (NOTEBOOK_DIR / "missed_signups.ipynb").read_text(encoding="utf-8")
    assert git(repo, "status", "--porcelain") == ""
    # Its CSV went to the store's analysis folder (beside the planted store), not into the repository.
    assert (Path(world.store_url.removeprefix("sqlite:///")).parent / "analysis" / "missed_signups.csv").is_file()


def test_duplicate_notebook_writes_its_csv_and_says_what_to_do(settings_point_at_the_world, tmp_path):
    notebook = execute_notebook(NOTEBOOK_DIR / "duplicate_analysis.ipynb", {"output_dir": str(tmp_path)})

    written = pd.read_csv(tmp_path / "duplicates.csv")
    assert list(written.columns) == CSV_COLUMNS
    assert len(written) == 10 and STRANGER not in set(written["email"])
    shown = outputs_text(notebook)
    assert "9 of 10 started.signup events (90%) have a Started Checkout twin" in shown
    assert "0 of the 10 twin pairs carry the same unique_id on both sides" in shown


def test_klaviyo_vs_store_notebook_lists_the_stale_profiles(world, tmp_path):
    """Its settings given as the kernel's environment (as make report gives them), not this process's."""
    env = {"KLAVIYO_BASE_URL": world.base_url, "KLAVIYO_API_KEY": world.api_key, "KL_SYNC_STORE_URL": world.store_url}

    execute_notebook(NOTEBOOK_DIR / "klaviyo_vs_store.ipynb", {"output_dir": str(tmp_path)}, env=env)

    written = pd.read_csv(tmp_path / "stale_profiles.csv")
    assert set(written["email"]) == {EMAILS[3], EMAILS[10]}


def test_a_notebook_with_nothing_answering_stops_at_its_first_klaviyo_cell_in_one_line(monkeypatch, tmp_path):
    for name in ("KLAVIYO_BASE_URL", "KLAVIYO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    port = free_port()
    with pytest.raises(NotebookStop) as stop:
        execute_notebook(NOTEBOOK_DIR / "klaviyo_vs_store.ipynb",
                         {"klaviyo_base_url": f"http://127.0.0.1:{port}", "output_dir": str(tmp_path)})

    assert str(stop.value) == (f"klaviyo_vs_store.ipynb: nothing answers at http://127.0.0.1:{port}: start the demo's Klaviyo "
                               f"emulator in a terminal: `.venv/bin/kl-sync emulator --port {port}` (after `make demo`)")


def test_the_report_writes_html_to_read(settings_point_at_the_world, tmp_path):
    [page] = write_report(REPO, ["klaviyo_vs_store.ipynb"], tmp_path)

    html = page.read_text(encoding="utf-8")
    assert page == tmp_path / "klaviyo_vs_store.html"
    assert "2 of them (20%) are stale" in html and "<img" in html
    assert "compare_profiles(" not in html  # the code is left out for readers


def test_the_report_without_settings_or_a_demo_says_to_run_make_demo(monkeypatch, tmp_path):
    for name in ("KLAVIYO_BASE_URL", "KLAVIYO_API_KEY"):
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(NotebookStop, match=r"^no demo account at \.kl_sync/demo/emulator: run `make demo` first"):
        with klaviyo_for_report(tmp_path):
            pass


def test_the_report_serves_the_demo_account_when_nothing_is_set(monkeypatch, tmp_path):
    """No settings: the notebooks' kernels get the address and key of the demo account, served for the run."""
    for name in ("KLAVIYO_BASE_URL", "KLAVIYO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".kl_sync" / "demo" / "emulator").mkdir(parents=True)

    with klaviyo_for_report(tmp_path) as env:
        with KlaviyoClient(env["KLAVIYO_API_KEY"], env["KLAVIYO_BASE_URL"]) as klaviyo:
            assert load_profiles(klaviyo).empty
