"""Helpers for tests that run the installed ``pinstripe`` as real processes and do real faults."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "pinstripe"
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None) if Path("/usr/lib/postgresql").is_dir() \
    else None


def clean_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PINSTRIPE_", "GITHUB_"))}
    env.update(extra or {})
    return env


STARTED: list[subprocess.Popen] = []  # killed after each test (conftest), also when the test failed midway


def start(project, *args, env=None, **popen) -> subprocess.Popen:
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    proc = subprocess.Popen([str(SCRIPT), *args], cwd=project.root, env=clean_env(env), text=True, **popen)
    STARTED.append(proc)
    return proc


def kill_started() -> None:
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def run(project, *args, env=None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], cwd=project.root, env=clean_env(env), capture_output=True, text=True,
                          timeout=timeout)


def wait_until(condition: Callable[[], object], timeout: float = 20, what: str = "the condition") -> object:
    """Poll ``condition`` until it is true (returned), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def wait_for(path: Path, timeout: float = 20) -> None:
    wait_until(path.exists, timeout, str(path))


def history(project, *args, env=None) -> list[dict]:
    out = subprocess.run([str(SCRIPT), "history", "--json", "--limit", "100000", *args], cwd=project.root,
                         env=clean_env(env), capture_output=True, text=True, check=True).stdout
    return json.loads(out)["runs"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def terminate_backends(admin_url: str, application_name: str) -> int:
    """Terminate every PostgreSQL backend of ``application_name`` (what a DBA, a failover or an idle killer
    does); returns how many."""
    import psycopg

    with psycopg.connect(admin_url.replace("postgresql+psycopg://", "postgresql://").split("?")[0],
                         autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
                            "AND pid <> pg_backend_pid()", (application_name,)).fetchall()
    return len(rows)


class ThrowawayPostgres:
    """A PostgreSQL server of the test's own (initdb + pg_ctl on a free loopback port), so a test can stop
    and restart it without touching the shared server."""

    def __init__(self):
        if PG_BIN is None or shutil.which("runuser") is None or os.geteuid() != 0:
            raise RuntimeError("needs PostgreSQL's server binaries, root and runuser")
        self.dir = Path(tempfile.mkdtemp(prefix="pinstripe-pg-"))
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self._as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N"])
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, command: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=60)

    def commands(self) -> dict[str, list[str]]:
        """The shell commands that stop and start this server (for job code that does the fault)."""
        ctl = ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.data)]
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        return {"stop": [*ctl, "-m", "immediate", "-w", "stop"],
                "start": [*ctl, "-o", options, "-w", "-l", str(self.dir / "log"), "start"]}

    def start(self) -> None:
        subprocess.run(self.commands()["start"], check=True, capture_output=True, timeout=60)

    def stop(self) -> None:
        subprocess.run(self.commands()["stop"], capture_output=True, timeout=60)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def unavailable(problem: str, required_by: str) -> None:
    """A service or tool a test needs is missing: fail when the environment variable ``required_by`` is
    "1" (CI requires it), else skip with the reason."""
    import pytest

    if os.environ.get(required_by) == "1":
        pytest.fail(f"required ({required_by}=1): {problem}")
    pytest.skip(problem)


def modules_after(root: Path, argv: list[str], wanted: str) -> list[str]:
    """Run the CLI with ``argv`` in a fresh interpreter in ``root``; return the imported modules for which
    ``wanted`` (a Python expression over ``m``) is true. It must exit 0."""
    code = ("import sys\nfrom pinstripe_jobs.cli import main\n"
            f"try:\n    main({argv!r})\n"
            f"finally:\n    print(sorted(m for m in sys.modules if {wanted}), file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stderr.strip().splitlines()[-1].replace("'", '"'))
