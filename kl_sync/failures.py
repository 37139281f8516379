"""What a failed command tells its operator: one line, and an exit code a script can tell apart.

The codes are part of kl-sync's interface (README, "Exit codes"); every edge (the ``kl-sync``
command, the demo, the Prefect flows) maps a failure to the same line and the same code.
"""

from __future__ import annotations

import sys

#: The run did what it was asked (a partly delivered run says so in its summary, and exits 0).
EXIT_OK = 0
#: ``kl-sync quality check`` found rows that fail their suite; anything unexpected (a bug) also exits 1,
#: with its traceback.
EXIT_ROWS_FAILED = 1
#: A setting, an argument or a database a person must fix (the line names the setting).
EXIT_FIX_SETTING = 2
#: Klaviyo refused the API key (401/403): nothing more was sent, every unsent row waits untouched.
EXIT_KEY_REFUSED = 3
#: Klaviyo could not be reached, or answered only retryable errors, and nothing due was delivered:
#: the rows wait for their retry (the line says how many and when).
EXIT_KLAVIYO_UNREACHABLE = 4
#: Stopped by a signal (128 + its number, as shells report it): what was not sent was handed back.
EXIT_INTERRUPTED = 130  # SIGINT
EXIT_TERMINATED = 143  # SIGTERM
#: Whoever read the output went away (``kl-sync status | head``): 128 + SIGPIPE, as shells report a
#: command stopped by it; no line, no traceback.
EXIT_BROKEN_PIPE = 141


class Failure(Exception):
    """A failure a person must fix outside kl-sync: ``str()`` is its one line, ``exit_code`` its code."""

    exit_code: int = EXIT_FIX_SETTING

    def __init__(self, line: str, *, exit_code: int | None = None) -> None:
        super().__init__(line)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def line(self) -> str:
        """What the operator reads: ``kl-sync: <line>`` on stderr, the Prefect flow run's message."""
        return str(self)


def failure_of(exc: BaseException) -> Failure | None:
    """The one-line :class:`Failure` for an error a person acts on outside kl-sync, or None for
    anything else (a bug keeps its traceback). Every edge asks this one function, so a refused key
    reads the same from ``kl-sync`` as on a Prefect flow run.

    The Klaviyo and database errors are looked up among the modules already imported: a process
    that never imported them cannot have raised them, and this module stays at the ground floor."""
    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return Failure("interrupted", exit_code=EXIT_INTERRUPTED)
    errors = sys.modules.get("kl_sync.klaviyo.errors")
    if errors is not None and isinstance(exc, errors.AuthError):
        # The sender hands every unfinished row back: nothing is marked sent or attempted.
        return Failure(f"Klaviyo refused the API key, nothing more was sent: {exc}",
                       exit_code=EXIT_KEY_REFUSED)
    if errors is not None and isinstance(exc, errors.RetryableError):
        return Failure(f"Klaviyo unreachable: {exc}", exit_code=EXIT_KLAVIYO_UNREACHABLE)
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
        return Failure(f"database error: {one_line_reason(exc)}")
    return None


def one_line_reason(exc: BaseException) -> str:
    """A database driver's reason on one line (SQLAlchemy's wrapper unwrapped), never the URL's
    password: drivers name the host, port and user only."""
    orig = getattr(exc, "orig", None) or exc
    return " ".join(str(orig).split())[:300] or type(orig).__name__

