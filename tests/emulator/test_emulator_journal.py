"""The journal: one JSON line per request received, and the API key written nowhere."""

from __future__ import annotations

from pathlib import Path

import requests

from kl_sync.emulator import running_emulator
from tests.emulator.klaviyo_bodies import Api, headers, single_event

SECRET = "pk_0123456789abcdef_secret"


def test_every_request_is_a_line_with_the_key_redacted_and_the_key_is_stored_nowhere(tmp_path: Path):
    data_dir = tmp_path / "account"
    with running_emulator(data_dir, api_keys=(SECRET,)) as emu:
        api = Api(emu.base_url, key=SECRET)
        assert api.post("/api/events", single_event(unique_id="j1")).status_code == 202
        assert api.get("/api/events", {"page[size]": 5}).status_code == 200
        assert requests.post(f"{emu.base_url}/api/events", data=b"not json", headers=headers("pk_wrong"),
                             timeout=30).status_code == 401
        assert api.post("/api/events", {"data": {}}).status_code == 400
        lines = emu.journal()
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("POST", "/api/events", 202),
        ("GET", "/api/events", 200),
        ("POST", "/api/events", 401),
        ("POST", "/api/events", 400),
    ]
    first = lines[0]
    assert set(first) >= {"ts", "method", "path", "query", "headers", "body", "status"}
    assert isinstance(first["ts"], float)
    assert first["headers"]["authorization"] == "Klaviyo-API-Key ***"
    assert first["headers"]["revision"] == "2026-07-15"
    assert first["body"] == single_event(unique_id="j1")
    assert lines[1]["query"] == {"page[size]": "5"} and lines[1]["body"] is None
    assert lines[2]["body"] is None  # not JSON
    for path in data_dir.iterdir():
        assert SECRET.encode() not in path.read_bytes(), path.name
        assert b"pk_wrong" not in path.read_bytes(), path.name


def test_the_journal_keeps_growing_across_restarts(tmp_path: Path):
    for run in range(2):
        with running_emulator(tmp_path / "account") as emu:
            Api(emu.base_url).post("/api/events", single_event(unique_id=f"run{run}"))
            assert len(emu.journal()) == run + 1


def test_a_pretty_printed_body_is_journaled_on_one_line(fresh_emu):
    raw = b'{\n  "data": {\n    "type": "list",\n    "attributes": {"name": "Line\\nBreak"}\n  }\n}\n'
    response = requests.post(f"{fresh_emu.base_url}/api/lists", data=raw, headers=headers(), timeout=30)
    assert response.status_code == 201
    text = (fresh_emu.data_dir / "journal.jsonl").read_text()
    assert len(text.splitlines()) == 1
    assert fresh_emu.journal()[0]["body"]["data"]["attributes"]["name"] == "Line\nBreak"


def test_line_and_paragraph_separators_in_a_body_read_back_intact(fresh_emu):
    # As a browser's JSON.stringify sends them: unescaped (JSON allows U+2028 / U+2029 in strings).
    raw = '{"data": {"type": "list", "attributes": {"name": "Box\u2028Line\u2029Para"}}}'.encode()
    assert b"\xe2\x80\xa8" in raw
    response = requests.post(f"{fresh_emu.base_url}/api/lists", data=raw, headers=headers(), timeout=30)
    assert response.status_code == 201
    [line] = fresh_emu.journal()
    assert line["body"]["data"]["attributes"]["name"] == "Box\u2028Line\u2029Para"
