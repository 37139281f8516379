"""What every benchmark shares: medians, peak memory, a Klaviyo emulator in its own process, the
JSON a child process hands back, and the results table."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
#: Scratch space for stores, state databases and emulator accounts (re-created by each run).
WORK_DIR = ROOT / ".kl_sync" / "bench"
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
README = Path(__file__).resolve().parent / "README.md"
_START, _END = "<!-- results:start -->", "<!-- results:end -->"
BENCH_KEY = "pk_benchmark"


@dataclass
class Figure:
    """One headline number of one benchmark, with its goal and whether this run met it."""

    benchmark: str
    name: str
    value: float
    unit: str
    #: ``("<=", 1.10)`` or ``(">=", 100_000)``; None for a figure without a goal (a baseline).
    goal: tuple[str, float] | None = None
    size: str = ""
    runs: int = 1
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        op, target = self.goal
        return self.value <= target if op == "<=" else self.value >= target


@dataclass
class BenchResult:
    name: str
    figures: list[Figure] = field(default_factory=list)
    #: Raw measurements (every run), for the JSON.
    details: dict[str, Any] = field(default_factory=dict)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB.

    Linux's ``VmHWM`` (the high-water mark of this program's own memory), not ``getrusage``'s
    ``ru_maxrss``: that one survives ``exec``, so a child started from a large parent reports at least
    the parent's size at the fork.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fresh_dir(name: str) -> Path:
    import shutil

    path = WORK_DIR / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def clean_scratch() -> None:
    """Remove the run's stores and databases (GBs at the default sizes); keep the Prefect home."""
    import shutil

    if WORK_DIR.exists():
        for path in WORK_DIR.iterdir():
            if path.name != "prefect":
                shutil.rmtree(path, ignore_errors=True)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def emulator_process(data_dir: Path, *, rate_limits: str = "off", rate_scale: float = 1.0,
                     latency: float = 0.0) -> Iterator[str]:
    """A Klaviyo emulator in its own process (as Klaviyo is: it must not share our interpreter's
    GIL), ``latency`` seconds of round trip on every request; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "kl_sync.emulator", "--port", str(port), "--data-dir", str(data_dir),
               "--api-key", BENCH_KEY, "--rate-limits", rate_limits, "--rate-scale", str(rate_scale),
               "--latency", str(latency)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"emulator exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                requests.get(f"{base_url}/api/metrics", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("emulator did not start within 60 s") from None
                time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_child(module: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 600) -> dict[str, Any]:
    """Run ``python -m <module> <args>`` in a fresh interpreter; it prints one JSON object last."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def python_speed() -> float:
    """Seconds one core takes for 10 million additions in a Python loop, the best of three (0.41 s on
    the 2.4 GHz EPYC of 2026-12-08, where an initial sync took ~2x the CPU of the tables before it):
    the end-to-end ratios are bound by CPU on these two cores, so tables taken on different machines
    compare only beside this figure."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - start)
    return round(best, 2)


#: :func:`python_speed`, read once before a run's benchmarks (``python -m benchmarks``); in :func:`machine`.
MACHINE_SPEED: dict[str, float] = {}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    mhz = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("cpu MHz") and mhz is None:
                mhz = round(float(line.split(":", 1)[1]))
    memory_gb = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "cpu": cpu,
        "cpu_mhz": mhz,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": __import__("sqlite3").sqlite_version,
        # Other work on the same cores moves every figure: the 1, 5 and 15 minute load averages.
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **MACHINE_SPEED,
    }


def _format_value(value: float, unit: str) -> str:
    if unit in {"rows/s", "events/s"}:
        return f"{value:,.0f} {unit}"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "x":
        return f"{value:.2f}×"
    if unit == "MB":
        return f"{value:,.0f} MB"
    if unit == "s":
        return f"{value:,.2f} s"
    return f"{value:,.1f} {unit}".strip()


def table_rows(results: Sequence[BenchResult]) -> list[list[str]]:
    rows = []
    for result in results:
        for f in result.figures:
            goal = "" if f.goal is None else f"{f.goal[0]} {_format_value(f.goal[1], f.unit)}"
            met = {None: "", True: "yes", False: "NO"}[f.met]
            rows.append([f.benchmark, f.name, _format_value(f.value, f.unit), goal, met, f.size,
                         str(f.runs), f.note])
    return rows


HEADER = ["benchmark", "figure", "value", "goal", "met", "size", "runs", "note"]


def text_table(results: Sequence[BenchResult]) -> str:
    rows = [HEADER, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(results: Sequence[BenchResult]) -> str:
    rows = table_rows(results)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(results: Sequence[BenchResult], *, path: Path = RESULTS, started: str, elapsed: float,
               arguments: dict[str, Any]) -> Path:
    document = {
        "started_at": started,
        "elapsed_seconds": round(elapsed, 1),
        "machine": machine(),
        "arguments": arguments,
        "benchmarks": [
            {
                "name": r.name,
                "figures": [{**asdict(f), "met": f.met} for f in r.figures],
                "details": r.details,
            }
            for r in results
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def machine_line(info: dict[str, Any]) -> str:
    speed = f" (10M additions in a Python loop: {info['python_loop_s']} s)" if info.get("python_loop_s") else ""
    mhz = f" at {info['cpu_mhz']} MHz" if info.get("cpu_mhz") else ""
    return (f"{info['cpu']}{mhz}, {info['cores']} cores{speed}, {info['memory_gb']} GB RAM; Python {info['python']}, "
            f"SQLite {info['sqlite']}; {info['platform']}; load average at the end "
            f"{'/'.join(str(x) for x in info.get('load_average', []))}")


def update_readme(results: Sequence[BenchResult], *, started: str, elapsed: float, path: Path = README) -> bool:
    """Put the table (and the machine it ran on) between the README's results markers, if it has them."""
    if not path.exists():
        return False
    text = path.read_text()
    if _START not in text or _END not in text:
        return False
    block = (f"{_START}\n{markdown_table(results)}\n\nRun {started} on {machine_line(machine())}; "
             f"the whole run took {elapsed:.0f} s.\n{_END}")
    head, rest = text.split(_START, 1)
    path.write_text(head + block + rest.split(_END, 1)[1])
    return True
