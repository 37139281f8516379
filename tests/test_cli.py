import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

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


# ------------------------------------------------------------------------- one line per failure

UNREACHABLE_PG = "postgresql://kl_sync@127.0.0.1:1/shop"


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _failing(args: tuple[str, ...], env: dict[str, str], cwd: Path, code: int, line: str) -> str:
    """Run the real command; it must exit ``code`` with ``line`` as its only stderr line (no traceback)."""
    from tests.reliability.helpers import child_env, run_kl_sync

    done = run_kl_sync(*args, env=child_env(**env), cwd=cwd)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(line), done.stderr
    assert done.returncode == code, (done.returncode, done.stderr)
    return done.stderr


def test_a_malformed_setting_is_one_line_naming_the_variable(tmp_path):
    err = _failing(("status",), {"KL_SYNC_LOG_METRICS": "{bad"}, tmp_path, 2,
                   "kl-sync: configuration error: KL_SYNC_LOG_METRICS: not valid JSON (Expecting property name")
    assert "line 1 column 2" in err
    _failing(("sync", "--no-prefect"), {"KL_SYNC_LOG_METRICS": '["a list"]'}, tmp_path, 2,
             "kl-sync: configuration error: KL_SYNC_LOG_METRICS: Input should be a valid dictionary")


def test_an_unreachable_database_is_one_line_naming_its_setting(tmp_path):
    _failing(("sync", "--no-prefect"), {"KL_SYNC_STORE_URL": UNREACHABLE_PG}, tmp_path, 2,
             "kl-sync: configuration error: KL_SYNC_STORE_URL: cannot connect: connection failed")
    for command in (("status",), ("db", "current"), ("quality", "check"), ("sync", "--no-prefect")):
        _failing(command, {"KL_SYNC_STATE_URL": UNREACHABLE_PG}, tmp_path, 2,
                 "kl-sync: configuration error: KL_SYNC_STATE_URL: cannot connect: connection failed")
    _failing(("db", "upgrade", "--url", UNREACHABLE_PG), {}, tmp_path, 2,
             "kl-sync: configuration error: --url: cannot connect: connection failed")


def test_a_refused_key_fails_before_the_store_is_read_and_klaviyo_unreachable_is_exit_4(tmp_path):
    from sqlalchemy import select

    from kl_sync.emulator import running_emulator
    from kl_sync.state.tables import outbox
    from tests.reliability.helpers import make_store

    store_url = make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=8, seed=4, years=0.2)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    env = {"KL_SYNC_STORE_URL": store_url, "KL_SYNC_STATE_URL": state_url}
    with running_emulator(tmp_path / "emulator", api_keys=("pk_right",)) as emu:
        err = _failing(("sync", "--no-prefect"), {**env, "KLAVIYO_BASE_URL": emu.base_url, "KLAVIYO_API_KEY": "pk_wrong"},
                       tmp_path, 3, "kl-sync: Klaviyo refused the API key, nothing more was sent: ")
        assert "401" in err and "pk_wrong" not in err
        journal = emu.journal()
    # The key was checked with one read before anything else: the store was not read, nothing queued.
    assert [(line["method"], line["path"], line["status"]) for line in journal] == [("GET", "/api/profiles", 401)]
    with open_state(state_url).connect() as conn:
        assert conn.execute(select(outbox.c.key)).all() == []
        (run,) = st.recent_runs(conn)
    assert run["status"] == "failed" and "401" in run["error"]

    _failing(("sync", "--no-prefect"), {**env, "KLAVIYO_BASE_URL": f"http://127.0.0.1:{_closed_port()}",
                                        "KLAVIYO_API_KEY": "pk_right"},
             tmp_path, 4, "kl-sync: Klaviyo unreachable: Klaviyo get_profiles: ConnectionError: ")


def test_debug_shows_the_traceback_above_the_line(tmp_path):
    from tests.reliability.helpers import child_env, run_kl_sync

    done = run_kl_sync("--debug", "status", env=child_env(KL_SYNC_STATE_URL=UNREACHABLE_PG), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("kl-sync: configuration error: KL_SYNC_STATE_URL: cannot connect")


# ---------------------------------------------------------------------------------- readable output


def test_quality_check_lists_the_failing_expectations_and_all_of_them_with_all(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KL_SYNC_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    with open_state(f"sqlite:///{tmp_path / 'state.db'}").begin() as conn:
        st.enqueue(conn, [_row("log:1", "a@example.com"), _row("log:2", "broken@")])
    assert main(["quality", "check"]) == 1
    out = capsys.readouterr().out
    first, rest = out.split("\n", 1)
    assert first.startswith("2 pending rows in 1 suites: 1 would be dead letters, failing 1 of ")
    assert "expect_column_values_to_match_regex(email)" in rest and "expect_column_values_to_not_be_null" not in rest
    assert main(["quality", "check", "--all"]) == 1
    assert "expect_column_values_to_not_be_null" in capsys.readouterr().out


def test_a_dry_run_says_how_many_payloads_and_shows_as_many_as_asked(tmp_path, monkeypatch, capsys):
    from tests.reliability.helpers import make_store

    monkeypatch.setenv("KL_SYNC_STORE_URL", make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=6, seed=2, years=0.2))
    monkeypatch.setenv("KL_SYNC_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    out_file = tmp_path / "payloads.jsonl"
    assert main(["sync", "--dry-run", "--steps", "parse,orders,send", "--limit", "3", "--out", str(out_file)]) == 0
    captured = capsys.readouterr()
    written = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(written) > 3 and {"key", "kind", "body"} <= set(written[0])
    assert f"dry run: 3 of the {len(written):,} payloads the next send would make are shown" in captured.out
    assert f"wrote the {len(written):,} payloads" in captured.err
    assert main(["sync", "--dry-run", "--steps", "send", "--json", "--limit", "5"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["send"]["pending"] == len(written) and [p["key"] for p in counts["send"]["preview"]] == [
        p["key"] for p in written[:5]]


def test_a_stored_payload_that_is_not_json_is_named_by_dry_run_and_quality_check(tmp_path, monkeypatch, capsys):
    """A payload edited by hand into text that is not JSON: the dry run's preview says so for that row
    and shows the others' bodies; `quality check` counts it as a failing row. Before, both stopped on
    it with the decoder's traceback."""
    from kl_sync.state.tables import outbox

    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("KL_SYNC_STATE_URL", url)
    state = open_state(url)
    with state.begin() as conn:
        st.enqueue(conn, [_row("log:1", "a@example.com"), _row("log:2", "b@example.com")])
        conn.execute(outbox.update().where(outbox.c.key == "log:2").values(payload="{not json"))

    assert main(["sync", "--dry-run", "--steps", "send", "--json"]) == 0
    first, second = json.loads(capsys.readouterr().out)["send"]["preview"]
    assert first["key"] == "log:1" and "body" in first
    assert second == {"key": "log:2", "kind": "log_event",
                      "problem": second["problem"]} and second["problem"].startswith("its stored payload is not JSON (")
    assert main(["quality", "check", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["log_event"]["failing_rows"] == 1 and "Traceback" not in captured.err


def _readme_command_lines() -> list[list[str]]:
    """Every `kl-sync …` command in README's shell blocks, as arguments: optional parts (`[--json]`)
    included, placeholders (`KEY…`, `…`) given a value."""
    import re
    import shlex

    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].replace("[", "").replace("]", "").replace("KEY…", "log:1").replace("…", "x")
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token.strip(";&|") and token not in ("do", "done"):
                    words.append(token)
                    continue
                while words and "=" in words[0]:
                    words.pop(0)  # VAR=value before the command
                if words and words[0] in ("kl-sync", ".venv/bin/kl-sync"):
                    commands.append(words[1:])
                words = []
    return commands


def test_every_kl_sync_command_in_the_readme_parses_as_written():
    commands = _readme_command_lines()
    assert len(commands) >= 25 and ["sync", "--prefect"] in commands
    parser = build_parser()
    for words in commands:
        try:
            parser.parse_args(words)
        except SystemExit:
            raise AssertionError(f"README: `kl-sync {' '.join(words)}` does not parse") from None


def test_the_default_sync_runs_without_prefect(tmp_path):
    """A Prefect API that nothing serves: the default run never asks it, --prefect does."""
    from tests.reliability.helpers import child_env, make_store, run_kl_sync

    env = child_env(KL_SYNC_STORE_URL=make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=5, seed=3, years=0.2),
                    KL_SYNC_STATE_URL=f"sqlite:///{tmp_path / 'state.db'}",
                    PREFECT_API_URL=f"http://127.0.0.1:{_closed_port()}/api")
    done = run_kl_sync("sync", "--steps", "parse,orders", "--json", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["orders"]["queued"] > 0
    refused = run_kl_sync("sync", "--prefect", "--steps", "parse,orders", env=env, cwd=tmp_path)
    assert refused.returncode != 0


def _command_ending(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``code`` (Python, ending in the kl-sync command's own exit) in a fresh interpreter."""
    from tests.reliability.helpers import child_env

    return subprocess.run([sys.executable, "-c", code], env=child_env(KL_SYNC_STATE_URL=f"sqlite:///{tmp_path / 'state.db'}"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_the_command_skips_the_teardown_but_not_the_exit_handlers_nor_its_output(tmp_path):
    """``kl-sync`` ends with :func:`exit_now`: the interpreter's teardown is skipped (benchmark 8),
    but the exit handlers still run (Prefect's log flush, logging's), everything printed is out, and
    the exit code is the command's."""
    done = _command_ending("import atexit, sys\n"
                           "atexit.register(lambda: print('exit handlers ran'))\n"
                           "from kl_sync.app.cli import run\n"
                           "sys.argv = ['kl-sync', 'status', '--json']\n"
                           "run()\n", tmp_path)
    assert done.returncode == 0, done.stderr
    output, last = done.stdout.rsplit("\n", 2)[0], done.stdout.rstrip("\n").rsplit("\n", 1)[-1]
    assert last == "exit handlers ran"
    assert "runs" in json.loads(output[:output.rindex("}") + 1])
    # Its database connections were closed: SQLite checkpointed the WAL into the file, as on teardown.
    assert (tmp_path / "state.db").exists() and not (tmp_path / "state.db-wal").exists()
    failed = _command_ending("from kl_sync.app.cli import exit_now\nprint('before', end='')\nexit_now(4)\n", tmp_path)
    assert (failed.returncode, failed.stdout) == (4, "before")


def test_the_command_waits_for_a_thread_the_interpreter_would_wait_for(tmp_path):
    done = _command_ending("import threading, time\n"
                           "from kl_sync.app.cli import exit_now\n"
                           "threading.Thread(target=lambda: (time.sleep(0.3), print('thread finished'))).start()\n"
                           "exit_now(3)\n", tmp_path)
    assert (done.returncode, done.stdout) == (3, "thread finished\n")


def test_the_command_ends_the_usual_way_once_prefect_is_loaded(tmp_path):
    """Prefect drains its queued events (task runs' last states) and logs on the interpreter's own
    shutdown of threads, which skipping the teardown would skip too."""
    done = _command_ending("import threading\n"
                           "import prefect\n"
                           "from kl_sync.app.cli import exit_now\n"
                           "threading._register_atexit(lambda: print('threads shut down'))\n"
                           "exit_now(2)\n", tmp_path)
    assert (done.returncode, done.stdout) == (2, "threads shut down\n"), done.stderr


def test_the_command_runs_with_its_output_closed(tmp_path):
    from tests.reliability.helpers import child_env

    done = subprocess.run(["sh", "-c", f"exec {sys.executable} -m kl_sync status --json >&-"], cwd=tmp_path,
                          env=child_env(KL_SYNC_STATE_URL=f"sqlite:///{tmp_path / 'state.db'}"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("command", [("status",), ("dead-letters", "list", "--json")], ids=["table", "json"])
def test_output_read_by_a_reader_that_went_away_is_exit_141_and_no_traceback(tmp_path, command):
    """``kl-sync status | head``: the reader closes the pipe before everything is written. Nothing is
    wrong with the command, so nothing is said, and the code is the one shells give SIGPIPE (not 1, a
    bug's or failing rows')."""
    from tests.reliability.helpers import child_env, kl_sync_command

    process = subprocess.Popen(kl_sync_command(*command), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=child_env(KL_SYNC_STATE_URL=f"sqlite:///{tmp_path / 'state.db'}"))
    process.stdout.close()  # gone before the first line
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141 and stderr == "", stderr
