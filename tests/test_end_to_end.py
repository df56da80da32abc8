"""A few real runs of the installed `pinstripe` script: the demo, exit codes, JSON, and a terminal."""
from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "pinstripe"


def copy_demo(root: Path) -> Path:
    """A copy of the repository's demo project (jobs/, demo/, pyproject.toml) with its databases created."""
    shutil.copytree(ROOT / "jobs", root / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "demo", root / "demo", ignore=shutil.ignore_patterns("__pycache__", "tenants.db", "data"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    subprocess.run([sys.executable, "-m", "demo.setup"], cwd=root, check=True)
    return root


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return copy_demo(tmp_path_factory.mktemp("demo"))


def outbox(root: Path, tenant: int) -> list[tuple]:
    with sqlite3.connect(root / "demo" / "data" / f"tenant_{tenant}.db") as db:
        return db.execute('SELECT "to", subject, sent_at IS NOT NULL FROM outbox ORDER BY id').fetchall()


def pinstripe(root, *args, env=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PINSTRIPE_")}
    full_env.update(env or {})
    return subprocess.run([str(SCRIPT), *args], cwd=root, capture_output=True, text=True, env=full_env, timeout=60)


def test_script_is_installed():
    assert SCRIPT.exists(), "run `make test`, which installs the project into .venv"


def test_seed_examples(demo):
    result = pinstripe(demo, "run-background-job", "--name", "deliver-notifications")
    assert result.returncode == 0, result.stderr
    assert "delivered 0 notification(s) for Acme" in result.stdout and "4 succeeded" in result.stdout

    result = pinstripe(demo, "run-background-job", "--name", "send-email", "--arg", "user@example.com",
                       "--arg", "Welcome!")
    assert result.returncode == 0
    assert "mail to user@example.com: Welcome!" in result.stdout

    result = pinstripe(demo, "run-background-job", "--name", "risky-operation")
    assert result.returncode == 1
    assert "RuntimeError: the risky operation failed" in result.stdout

    result = pinstripe(demo, "run-background-job", "--name", "send-newsletter", "--json")
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    assert [r["tenant"] for r in doc["runs"]] == [1, 2, 4]  # tenant 3 is inactive
    assert "queued 2 newsletter(s) for Umbrella" in result.stderr
    # one outbox row per message, in each tenant's own database, read through ctx.db
    assert outbox(demo, 4) == [("alice@umbrella.test", "Umbrella newsletter", 0),
                               ("bob@umbrella.test", "Umbrella newsletter", 0)]
    assert outbox(demo, 1) == [("wile@acme.test", "Acme newsletter", 0)]  # road@ is unsubscribed
    assert outbox(demo, 3) == []

    result = pinstripe(demo, "run-background-job", "--name", "deliver-notifications")
    assert result.returncode == 0, result.stderr
    assert "mail to alice@umbrella.test: Umbrella newsletter" in result.stdout
    assert "delivered 2 notification(s) for Umbrella" in result.stdout
    assert all(sent for (_, _, sent) in outbox(demo, 4))


def test_a_failing_tenant_leaves_no_partial_rows(tmp_path):
    root = copy_demo(tmp_path)
    with sqlite3.connect(root / "demo" / "data" / "tenant_4.db") as db:  # after alice and bob: a bad address
        db.execute("INSERT INTO users (email, subscribed) VALUES ('carol-at-umbrella', 1)")
    result = pinstripe(root, "run-background-job", "--name", "send-newsletter", "--json")
    assert result.returncode == 1
    runs = {r["tenant"]: r for r in json.loads(result.stdout)["runs"]}
    assert runs[4]["status"] == "failed" and "malformed address 'carol-at-umbrella'" in runs[4]["error"]
    assert runs[1]["status"] == runs[2]["status"] == "succeeded"
    assert outbox(root, 4) == []  # alice's and bob's rows were rolled back with the run
    assert outbox(root, 2) == [("hank@globex.test", "Globex newsletter", 0)]


def test_unknown_job_from_a_subfolder(demo):
    result = pinstripe(demo / "jobs", "run-background-job", "--name", "send-mail")
    assert result.returncode == 2
    assert "Did you mean 'send-email'?" in result.stderr
    assert "Traceback" not in result.stderr


def read_pty(args, cwd, env):
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(args, cwd=cwd, stdin=child_fd, stdout=child_fd, stderr=child_fd, env=env)
    os.close(child_fd)
    chunks = []
    while True:
        ready, _, _ = select.select([main_fd], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(main_fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=30)
    os.close(main_fd)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize("no_color", [False, True])
def test_terminal_gets_a_summary_table(demo, no_color):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PINSTRIPE_") and k != "NO_COLOR"}
    env.update({"TERM": "xterm-256color", "COLUMNS": "100"})
    if no_color:
        env["NO_COLOR"] = "1"
    code, text = read_pty([str(SCRIPT), "run-background-job", "--name", "send-newsletter"], demo, env)
    assert code == 0
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert re.search(r"tenant\s+.\s+status\s+.\s+duration", plain), plain
    assert re.search(r"\b4\s+.\s+succeeded", plain)
    assert "send-newsletter: succeeded - 3 succeeded" in plain
    colour = re.search(r"\x1b\[[0-9;]*3[0-9]m", text)  # a foreground colour code
    assert (colour is None) == no_color
