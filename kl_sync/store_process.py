"""The store-reading steps in a process of their own, beside the sender (:func:`kl_sync.pipeline.send_while_reading`).

Why a process: an initial sync is bound by one interpreter lock. Reading the store, building and
encoding the events (the steps) and claiming, validating and building the bulk bodies (the sender)
are all Python; on one interpreter they take turns, on two they run on both cores at once
(benchmarks/README.md, benchmark 8). The steps and the sender already share nothing but the state
database, where each chunk is one transaction and the sender claims only committed rows, so the
process changes none of their guarantees.

The run's process starts ``python -m kl_sync.store_process``, hands it the job on its standard input
(the settings, the run's id, the steps, ``--from-start``) and reads what it reports on a pipe of its
own, one pickled message per frame:

- ``("commit", step, rows)`` after each chunk a step committed: the sender claims again, the
  progress bar advances;
- ``("result", step, StepResult)`` when a step is done;
- ``("failed", step, error)`` when one failed (the error itself when it survives pickling, else its
  type, line and traceback): the run fails with it;
- ``("interrupted", signum)`` when a signal stopped it at a safe point;
- ``("done", peak RSS in MiB)`` last.

It stops as the run does: on SIGTERM or SIGINT (the run sends SIGTERM when it stops early) it raises
at the next point outside a database call (:class:`kl_sync.pipeline.Interruption`'s rule), so the
chunk being written is committed whole or rolled back; and the kernel kills it when the run's
process dies (``PR_SET_PDEATHSIG``): a killed run leaves no reader behind, and what it had not
committed is read again by the next run.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from kl_sync.failures import EXIT_ROWS_FAILED, Failure

#: What the store-reading process runs (``python -P -c``): the stop signals are caught first, before
#: anything is imported (a signal then is acted on once the steps can stop), then the package's folder
#: goes on the path if the interpreter does not already have it there.
_BOOT = (
    "import signal, sys\n"
    "early = []\n"
    "for signum in (signal.SIGTERM, signal.SIGINT):\n"
    "    signal.signal(signum, lambda signum, frame: early.append(signum))\n"
    "if sys.argv[3] not in sys.path:\n"
    "    sys.path.insert(0, sys.argv[3])\n"
    "from kl_sync.store_process import main\n"
    "sys.exit(main(sys.argv[1:3], early))\n"
)
#: Frame header: the pickled message's length.
_HEADER = struct.Struct("!I")
#: From <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1
#: How long a stopped reader has to finish its chunk (commit or roll back) before it is killed.
STOP_GRACE_SECONDS = 30.0


class StoreProcessError(Failure):
    """The store-reading process failed in a way that left no error of its own to raise (it could
    not start, died, or its error did not survive pickling): one line says how (exit code 1); what
    it printed before, a traceback included, is on the same standard error."""

    exit_code = EXIT_ROWS_FAILED


def in_memory(url: str) -> bool:
    """Whether a database URL names an in-memory SQLite database, which a second process cannot see
    (``sqlite://``, ``:memory:``, ``file::memory:?cache=shared&uri=true``, ``mode=memory``): the rule
    the migrations use to find a SQLite database's file."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database or ""
    if str(parsed.query.get("uri", "")).lower() in {"true", "1"}:
        if str(parsed.query.get("mode", "")) == "memory":
            return True
        database = database.removeprefix("file:").split("?", 1)[0]
    return database in ("", ":memory:") or database.startswith(":memory:")


# --------------------------------------------------------------------------- the run's side


class StoreProcess:
    """The reader, seen from the run: :meth:`start` it, iterate :meth:`messages`, :meth:`stop` it."""

    def __init__(self, process: subprocess.Popen[bytes], reader: int) -> None:
        self.process = process
        self._reader = reader
        self._buffer = b""
        self._closed = False

    @classmethod
    def start(cls, settings: Any, *, run_id: str, steps: Sequence[str], from_start: bool) -> StoreProcess:
        """Start the steps. Call it with signals held (:attr:`kl_sync.pipeline.Interruption.hold`):
        a process started and not yet handed to a ``try`` that stops it would run unsupervised."""
        job = pickle.dumps({"settings": settings, "run_id": run_id, "steps": list(steps), "from_start": from_start})
        read_end, write_end = os.pipe()
        try:
            # -P: the working folder is not put first on the path, so a kl_sync/ folder there cannot
            # stand in for this package; the package's own folder is, if it is not on the path already.
            process = subprocess.Popen(
                [sys.executable, "-P", "-c", _BOOT, str(write_end), str(os.getpid()),
                 str(Path(__file__).resolve().parent.parent)],
                stdin=subprocess.PIPE, pass_fds=(write_end,), close_fds=True,
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        started = cls(process, read_end)
        assert process.stdin is not None
        try:
            process.stdin.write(job)
            process.stdin.close()
        except BrokenPipeError:
            pass  # it died at once: messages() says so
        except BaseException:
            started.kill()
            raise
        return started

    def messages(self, *, poll: float = 0.5) -> Iterator[tuple[Any, ...] | None]:
        """Each message as it comes; None every ``poll`` seconds without one (the caller looks at the
        sender then). Ends after ``done``; raises :class:`StoreProcessError` if the process ended
        without it."""
        while True:
            message = self._next(poll)
            if message is None:
                if self._closed:
                    code = self.process.wait()
                    if -code in (signal.SIGTERM, signal.SIGINT):
                        # Stopped by a signal before it could say so (it was starting): the run is too.
                        yield ("interrupted", -code)
                        return
                    raise StoreProcessError(f"the store-reading process ended ({_exit_reason(code)}) before its "
                                            "steps were done")
                yield None
                continue
            yield message
            if message[0] == "done":
                return

    def _next(self, timeout: float) -> tuple[Any, ...] | None:
        deadline = time.monotonic() + timeout
        while True:
            if len(self._buffer) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(self._buffer)
                if len(self._buffer) >= _HEADER.size + size:
                    frame = self._buffer[_HEADER.size:_HEADER.size + size]
                    self._buffer = self._buffer[_HEADER.size + size:]
                    return pickle.loads(frame)
            if self._closed:
                return None
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._reader], [], [], left)[0]:
                return None
            data = os.read(self._reader, 1 << 16)
            if not data:
                self._closed = True
            self._buffer += data

    def stop(self, *, grace: float = STOP_GRACE_SECONDS) -> None:
        """Ask it to stop (SIGTERM: it stops outside any database call) and wait; kill it after
        ``grace``, or at once if anything (a second signal: the operator insists) interrupts the wait."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self.kill()
        except BaseException:
            self.kill()
            raise
        self.close()

    def kill(self) -> None:
        """Kill it and wait for it (a chunk it was writing rolls back, as after any crash)."""
        with suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()
        self.close()

    def close(self) -> None:
        if self._reader >= 0:
            os.close(self._reader)
            self._reader = -1
        self.process.wait()


def _exit_reason(code: int) -> str:
    from kl_sync.pipeline import signal_name

    return f"killed by {signal_name(-code)}" if code < 0 else f"exit code {code}"


# --------------------------------------------------------------------------- the reader's side


def _send(out: int, message: tuple[Any, ...], interruption: Any) -> None:
    """Write one frame whole: a signal meanwhile waits (:attr:`Interruption.hold`), since a frame cut
    short would leave the run unable to read the rest."""
    frame = pickle.dumps(message)
    data = _HEADER.pack(len(frame)) + frame
    held, interruption.hold = interruption.hold, True
    try:
        while data:
            data = data[os.write(out, data):]
    except BrokenPipeError:
        # The run is gone (where the kernel does not kill this process with it: not Linux). What it
        # committed stays; the next run reads on from there.
        os._exit(1)
    finally:
        interruption.hold = held


def _portable(exc: BaseException) -> Any:
    """The error itself if it survives pickling as it is, else what is needed to raise its like."""
    try:
        copy = pickle.loads(pickle.dumps(exc))
        if type(copy) is type(exc) and str(copy) == str(exc) and getattr(copy, "exit_code", None) == getattr(exc, "exit_code", None):
            return exc
    except Exception:  # noqa: BLE001 - not picklable: described instead
        pass
    return {"type": f"{type(exc).__module__}.{type(exc).__qualname__}", "line": str(exc),
            "traceback": "".join(traceback.format_exception(exc))}


def _dies_with(parent: int) -> None:
    """Ask the kernel to kill this process when the run's dies; exit if it already did."""
    import ctypes

    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (AttributeError, OSError):  # not Linux: the run still stops it when it stops
        pass
    if os.getppid() != parent:
        os._exit(1)


def main(argv: Sequence[str], early: list[int] | None = None) -> int:
    """The store-reading process (:data:`_BOOT`): ``argv`` is the pipe's descriptor and the run's pid;
    ``early``, the stop signals that came while it started (kept, and acted on once it can stop)."""
    out, parent = int(argv[0]), int(argv[1])
    early = [] if early is None else early
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, _frame: early.append(signum))
    _dies_with(parent)
    from kl_sync.failures import failure_of
    from kl_sync.pipeline import STORE_STEPS, Interrupted, Interruption
    from kl_sync.state.migrate import open_state
    from kl_sync.store.readers import store_engine

    interruption = Interruption()
    step = None
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):  # inside the try: one may raise at once
            signal.signal(signum, interruption)
        if early:
            raise Interrupted(early[0])
        job = pickle.loads(sys.stdin.buffer.read())
        store = store_engine(job["settings"].store_url)
        state = open_state(job["settings"].state_url)
        for step in job["steps"]:
            interruption.check()

            def committed(rows: int, step: str = step) -> None:
                _send(out, ("commit", step, rows), interruption)
                interruption.check()

            result = STORE_STEPS[step].run(store, state, job["settings"], from_start=job["from_start"],
                                           run_id=job["run_id"], progress=committed)
            _send(out, ("result", step, result), interruption)
        step = None
        interruption.hold = True
        store.dispose()
        state.dispose()
    except Interrupted as exc:
        interruption.hold = True
        _send(out, ("interrupted", exc.signum), interruption)
    except Exception as exc:  # noqa: BLE001 - the run raises it
        interruption.hold = True
        if failure_of(exc) is None:  # a bug: its traceback, from where it happened
            traceback.print_exc(file=sys.stderr)
        _send(out, ("failed", step, _portable(exc)), interruption)
    _send(out, ("done", _peak_rss_mb()), interruption)
    return 0


def _peak_rss_mb() -> float:
    """This process's peak resident set (``VmHWM``), in MiB; 0 where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:3]))
