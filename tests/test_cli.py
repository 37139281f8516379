import argparse
import json
from pathlib import Path

from kl_sync.app.cli import build_parser, main
from kl_sync import state as st
from kl_sync.state.migrate import open_state

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*prefix, name), helps.get(name), sub
                yield from _commands(sub, (*prefix, name))


def test_every_command_has_help_and_is_in_the_readme():
    commands = list(_commands(build_parser()))
    assert len(commands) >= 14
    for path, help_text, sub in commands:
        assert help_text, f"kl-sync {' '.join(path)} has no help text"
        leaf = not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
        if leaf:
            assert f"kl-sync {' '.join(path)}" in README, f"README does not document `kl-sync {' '.join(path)}`"


def _row(key, email):
    return st.OutboxItem(key, "log_event", {
        "metric": "shipping.email", "time": "2026-10-01T10:00:00+00:00", "unique_id": key,
        "properties": {}, "profile": {"email": email}, "backfill": True,
    })


def test_quality_check_and_dead_letter_replay(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("KL_SYNC_STATE_URL", url)
    state = open_state(url)
    with state.begin() as conn:
        st.enqueue(conn, [_row("log:1", "a@example.com"), _row("log:2", "broken@")])

    assert main(["quality", "check", "--json"]) == 1  # one row would be dead-lettered
    summary = json.loads(capsys.readouterr().out)
    assert summary["log_event"]["rows"] == 2 and summary["log_event"]["failing_rows"] == 1
    assert "expect_column_values_to_match_regex(email)" in summary["log_event"]["by_expectation"]

    assert main(["quality", "docs", "--out", str(tmp_path / "docs")]) == 0
    index = Path(capsys.readouterr().out.strip().split(": ", 1)[1])
    assert index.name == "index.html" and index.exists()

    (bad,) = [c for c in st.claim(state, limit=10, lease_seconds=60) if c.key == "log:2"]
    with state.begin() as conn:
        st.mark_dead(conn, bad, step="send", reason="rejected by Klaviyo: email is invalid")
    assert main(["dead-letters", "list", "--json"]) == 0
    (letter,) = json.loads(capsys.readouterr().out)
    assert letter["key"] == "log:2" and "email is invalid" in letter["reason"]
    assert main(["dead-letters", "discard", "log:2", "--note", "a test address"]) == 0
    assert capsys.readouterr().out.strip() == "discarded 1 dead letter(s) (a test address)"
    assert main(["dead-letters", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["dead-letters", "list", "--all", "--json"]) == 0
    (letter,) = json.loads(capsys.readouterr().out)
    assert (letter["status"], letter["note"]) == ("discarded", "a test address")
    assert main(["dead-letters", "replay", "nosuch:key"]) == 2
    assert capsys.readouterr().out.strip() == "nosuch:key: not found: no open dead letter has this key"


def test_unknown_step_is_one_clear_line(capsys):
    assert main(["sync", "--steps", "parse,teleport"]) == 2
    assert capsys.readouterr().err.strip() == "kl-sync: unknown step(s) teleport; choose from parse, orders, customers, suppress, send, verify, consent"


def test_verify_since_takes_a_date_time_or_a_duration_back(capsys):
    import datetime as dt

    from kl_sync.app.cli import parse_since

    now = dt.datetime(2026, 12, 2, 12, 0)
    assert parse_since("P7D", now) == dt.datetime(2026, 11, 25, 12, 0)
    assert parse_since("pt90m", now) == dt.datetime(2026, 12, 2, 10, 30)
    assert parse_since("2026-12-01T09:00:00-05:00", now) == dt.datetime(2026, 12, 1, 14, 0)
    assert parse_since("2026-12-01", now) == dt.datetime(2026, 12, 1)
    assert main(["verify", "--since", "last tuesday"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kl-sync: --since 'last tuesday': not an ISO 8601 date-time") and "\n" not in err
