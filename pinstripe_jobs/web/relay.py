"""The process of one dashboard action: ``python relay.py LOG ACTION_ID WHAT -- COMMAND...`` appends a
``<UTC time> action=<id> start WHAT pid=<its pid>`` line to LOG, runs COMMAND, appends each line of its
output as ``<UTC time> action=<id> | <line>``, then an ``exit=<code>`` line. A process of its own (a new
session, standard library only), so the run and its log outlive the dashboard; SIGINT, SIGTERM and SIGHUP
are passed on to the run. Exits with the run's exit code."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from types import FrameType


def stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def log_line(log_path: str, action: str, text: str) -> None:
    """One line, written in one append (lines of concurrent actions do not interleave within a line)."""
    with open(log_path, "ab") as log:
        log.write(f"{stamp()} action={action} {text.rstrip()}\n".encode(errors="replace"))


def relay(log_path: str, action: str, what: str, command: list[str]) -> int:
    started = time.monotonic()
    log_line(log_path, action, f"start {what} pid={os.getpid()}")
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def forward(signum: int, frame: FrameType | None) -> None:
        process.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    assert process.stdout is not None
    for raw in process.stdout:
        log_line(log_path, action, "| " + raw.decode(errors="replace"))
    code = process.wait()
    log_line(log_path, action, f"exit={code} after {time.monotonic() - started:.1f}s")
    return code


if __name__ == "__main__":
    if len(sys.argv) < 6 or sys.argv[4] != "--":
        sys.exit("usage: relay.py LOG ACTION_ID WHAT -- COMMAND...")
    sys.exit(relay(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5:]))
