"""Every line tells the truth: clear errors instead of tracebacks, literal job text in every reporter,
whole lines on a terminal, summaries that agree with the exit code, messages that name the right source."""
from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from tests.procs import SCRIPT, clean_env, history, run, start, wait_for

from .conftest import RECORDING_JOB


def run_in_pty(project, *args, env=None, timeout: float = 120) -> tuple[int, str]:
    """Run the installed tool on a real pseudo-terminal (so it draws its rich output); return the exit
    code and everything it wrote, decoded."""
    leader, follower = pty.openpty()
    full_env = clean_env({"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40", **(env or {})})
    proc = subprocess.Popen([str(SCRIPT), *args], cwd=project.root, env=full_env, stdin=follower, stdout=follower,
                            stderr=follower, close_fds=True)
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None and not select.select([leader], [], [], 0.2)[0]:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the tool did not finish on the terminal")
    os.close(leader)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


# -- 1. clear errors, not tracebacks -------------------------------------------------------------------------
@pytest.mark.parametrize("name, content", [
    ("t.csv", b"id,name\n1,caf\xe9\n"), ("t.json", b'[{"id": 1, "name": "caf\xe9"}]'),
    ("t.jsonl", b'{"id": 1}\n{"id": 2, "name": "caf\xe9"}\n')])
def test_a_tenants_file_that_is_not_utf8_is_a_clear_error(project, name, content):
    (project.root / name).write_bytes(content)
    project.config(f'tenants = "{name}"\n')
    project.job("work", "def run(ctx):\n    pass\n")
    result = run(project, "run-background-job", "--name", "work", "--json")
    assert result.returncode == 3, result.stderr
    assert "is not UTF-8 text" in result.stderr and "Traceback" not in result.stderr
    assert json.loads(result.stdout)["exit_code"] == 3


def test_a_tenants_file_that_cannot_be_read_is_a_clear_error(project, tmp_path):
    path = project.root / "t.json"
    path.write_text('[{"id": 1}]')
    path.chmod(0)
    project.config('tenants = "t.json"\n')
    project.job("work", "def run(ctx):\n    pass\n")
    command = [str(SCRIPT), "run-background-job", "--name", "work"]
    if os.geteuid() == 0:  # root reads everything: drop the capabilities that let it
        if shutil.which("setpriv") is None:  # pragma: no cover
            pytest.skip("needs setpriv to run without CAP_DAC_OVERRIDE")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    result = subprocess.run(command, cwd=project.root, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Cannot read the tenant file" in result.stderr and "Permission denied" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("filter_code, message", [
    ("return tenants.where(lambda t: t.seats > 10)", "predicate raised for tenant 1"),
    ("return tenants.order_by(5)", "order_by() takes field names")])
def test_a_tenants_filter_that_breaks_is_exit_3(tenant_project, filter_code, message, as_json):
    tenant_project.job("filtered", f"multi_tenant = True\ndef tenants_filter(tenants):\n    {filter_code}\n"
                                   "def run(ctx):\n    pass\n")
    result = run(tenant_project, "run-background-job", "--name", "filtered", *(["--json"] if as_json else []))
    assert result.returncode == 3, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    if as_json:
        assert json.loads(result.stdout)["exit_code"] == 3 and message in json.loads(result.stdout)["error"]
    if "seats" in filter_code:
        assert "filtered.py:3" in result.stderr  # where the predicate is


def test_a_service_reference_to_a_missing_module_fails_when_the_config_loads(tenant_project):
    tenant_project.config('tenants = "sqlite:///tenants.db"\n[services]\nmailer = "nomodule:make"\n')
    result = run(tenant_project, "run-background-job", "--name", "record")
    assert result.returncode == 3
    assert "Service 'mailer'" in result.stderr and "names module 'nomodule'" in result.stderr
    assert tenant_project.log() == []


# -- 2. job text is shown literally everywhere -----------------------------------------------------------------
HOSTILE = "[bold red]markup[/] \x1b[31mred\x1b[0m \x1b]0;title\x07 cr\roverwrite [/var/data/in.csv]"
HOSTILE_JOB = '''
def run(ctx):
    print("job says", ctx.tenant.name)
    raise FileNotFoundError(HOSTILE)
'''.replace("HOSTILE", repr(HOSTILE))


@pytest.fixture
def hostile_project(project):
    project.json_tenants([{"id": "t\x1b[2J1", "name": "[red]x[/red]"}, {"id": "line\nbreak", "name": "ok"}])
    project.config('tenants = "tenants.json"\n')
    project.job("hostile", HOSTILE_JOB)
    return project


def _no_raw_controls(text: str) -> None:
    assert "\x1b[31mred" not in text and "\x1b]0;" not in text and "\x1b[2J" not in text and "\x07" not in text
    assert "\rover" not in text


def test_hostile_strings_through_the_terminal_reporter(hostile_project):
    code, out = run_in_pty(hostile_project, "run-background-job", "--name", "hostile")
    assert code == 1, out
    assert "MarkupError" not in out and "Traceback (most recent call last):" in out
    assert "hostile: failed - 2 failed" in out  # the summary is printed
    assert "[bold red]markup[/]" in out and "\\x1b[31mred" in out and "cr\\roverwrite" in out
    assert "[/var/data/in.csv]" in out and "t\\x1b[2J1" in out and "line\\nbreak" in out
    _no_raw_controls(out)


def test_hostile_strings_through_the_plain_and_ci_reporters(hostile_project, tmp_path):
    summary_file = tmp_path / "step-summary.md"
    result = run(hostile_project, "run-background-job", "--name", "hostile", "--junit-xml", "junit.xml",
                 env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary_file)})
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    # our own lines: literal, one per run (a newline inside a tenant id does not forge a line)
    ours = [line for line in lines if line.startswith("  FAILED")]
    assert len(ours) == 2 and any("tenant line\\nbreak" in line for line in ours)
    assert all("\\x1b[31mred" in line for line in ours)
    _no_raw_controls("\n".join(lines[:1] + ours + lines[-1:]))
    annotations = [line for line in lines if line.startswith("::error")]
    assert len(annotations) == 2 and all("\x1b" not in a and "\r" not in a for a in annotations)
    tree = ET.parse(hostile_project.root / "junit.xml")  # well-formed XML despite the control characters
    messages = [f.get("message") for f in tree.iter("failure")]
    assert all("\\x1b[31mred" in m for m in messages)
    assert "\x1b" not in summary_file.read_text()


def test_hostile_strings_through_json(hostile_project):
    result = run(hostile_project, "run-background-job", "--name", "hostile", "--json")
    doc = json.loads(result.stdout)  # JSON escapes everything; the values are exactly what the job gave
    assert sorted(r["tenant"] for r in doc["runs"]) == ["line\nbreak", "t\x1b[2J1"]
    assert doc["runs"][0]["error"] == f"FileNotFoundError: {HOSTILE}"
    assert "FileNotFoundError" in doc["runs"][0]["traceback"]


# -- 3. terminal output: whole lines, nothing glued, nothing lost ----------------------------------------------
CHATTY = '''
import sys, time
def run(ctx, lines: int = 3):
    for i in range(lines):
        print(f"{ctx.tenant.id}:{i}")
    ctx.log.info("logged by %s", ctx.tenant.id)
    sys.stdout.write(f"partial-{ctx.tenant.id}")  # no final newline
'''


def test_terminal_output_keeps_lines_whole_and_off_the_progress_bar(tenant_project):
    tenant_project.job("chatty", CHATTY)
    code, out = run_in_pty(tenant_project, "run-background-job", "--name", "chatty", "--arg", "2000")
    assert code == 0, out[-2000:]
    text = out.replace("\r\x1b[2K", "\n")  # what clears the bar line starts a new line
    lines = text.replace("\r\n", "\n").split("\n")
    for tenant in (1, 2, 3, 4):
        assert f"{tenant}:1999" in lines and f"partial-{tenant}" in lines  # whole, on lines of their own
        assert any(line.endswith(f"INFO logged by {tenant}") and line.startswith("[chatty") for line in lines)


@pytest.mark.parametrize("extra", [[], ["--concurrency", "3"], ["--isolation", "process"],
                                   ["--isolation", "process", "--concurrency", "2"]])
def test_output_without_a_final_newline_is_kept_and_never_glued(tenant_project, extra):
    tenant_project.job("chatty", CHATTY)
    result = run(tenant_project, "run-background-job", "--name", "chatty", "--arg", "500", *extra)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for tenant in (1, 2, 3, 4):
        assert f"partial-{tenant}" in lines  # not lost (process isolation), not glued to our next line
        assert [line for line in lines if line.startswith(f"{tenant}:")] == [f"{tenant}:{i}" for i in range(500)]
    assert lines[-1].startswith("chatty: succeeded - 4 succeeded")


# -- 4. the summary word follows the exit code ----------------------------------------------------------------
def test_summary_word_agrees_with_the_exit_code(tenant_project):
    tenant_project.job("slow", "import time\ndef run(ctx):\n    time.sleep(5 if ctx.tenant.id == 1 else 0)\n")
    result = run(tenant_project, "run-background-job", "--name", "slow", "--timeout", "0.5", "--json")
    doc = json.loads(result.stdout)
    assert result.returncode == 124 and (doc["status"], doc["exit_code"]) == ("timed_out", 124)
    plain = run(tenant_project, "run-background-job", "--name", "slow", "--timeout", "0.5")
    assert plain.returncode == 124 and "slow: timed out - 3 succeeded, 1 timed out" in plain.stdout


def test_a_skipped_run_says_skipped(tenant_project):
    tenant_project.job("hold", "import time\nfrom pathlib import Path\ndef run(ctx):\n"
                               "    Path('started').write_text('1')\n    time.sleep(30)\n")
    holder = start(tenant_project, "run-background-job", "--name", "hold", "--tenant", "1")
    wait_for(tenant_project.root / "started")
    try:
        result = run(tenant_project, "run-background-job", "--name", "hold", "--tenant", "1")
    finally:
        holder.kill()
        holder.communicate()
    assert result.returncode == 4 and "hold: skipped - 1 skipped" in result.stdout


# -- 5. shards and jobs that do not run per tenant ----------------------------------------------------------------
def test_a_non_tenant_job_runs_on_shard_0_only(tenant_project):
    tenant_project.job("report", "multi_tenant = False\n" + RECORDING_JOB)
    outcomes = [run(tenant_project, "run-background-job", "--name", "report", "--shard", f"{k}/3", "--json")
                for k in range(3)]
    assert [o.returncode for o in outcomes] == [0, 0, 0]
    assert len(tenant_project.log()) == 1  # one email, not three
    runs = [json.loads(o.stdout)["runs"][0] for o in outcomes]
    assert runs[0]["status"] == "succeeded"
    assert [(r["status"], r["reason"].split(":")[0]) for r in runs[1:]] == [("skipped", "not this shard")] * 2


# -- 6. --json: one document for every bad input ----------------------------------------------------------------
@pytest.mark.parametrize("args", [["--name", "record", "--concurrency", "0"], ["--name", "record", "--shard", "9/2"],
                                  [], ["--name", "record", "--isolation", "threads"]])
def test_json_option_errors_still_give_one_document(tenant_project, args):
    result = run(tenant_project, "run-background-job", "--json", *args)
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 2 and doc["error"] and "Error:" in result.stderr


# -- 7. history --------------------------------------------------------------------------------------------------
def test_history_status_abandoned_and_read_only_commands(tenant_project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in (["history"], ["list-background-jobs"]):
        result = run(tenant_project, *command, "--config", str(tenant_project.root / "pinstripe.toml"))
        assert result.returncode == 0, result.stderr
    assert not (tenant_project.root / ".pinstripe").exists()  # reading never creates a state database
    tenant_project.job("hold", "import time\nfrom pathlib import Path\ndef run(ctx):\n"
                               "    Path('started').write_text('1')\n    time.sleep(30)\n")
    holder = start(tenant_project, "run-background-job", "--name", "hold", "--tenant", "2")
    wait_for(tenant_project.root / "started")
    holder.kill()
    holder.communicate()
    [row] = history(tenant_project, "--status", "abandoned")
    assert (row["tenant"], row["status"]) == (2, "abandoned")
    plain = run(tenant_project, "history", "--status", "abandoned")
    assert "abandoned" in plain.stdout and "No runs recorded" not in plain.stdout


# -- 8. messages name the right source ----------------------------------------------------------------------------
@pytest.mark.parametrize("args, env, expected", [
    (["start-bot", "--since", "yesterday"], {}, "--since 'yesterday' is not an ISO 8601"),
    (["list-background-jobs"], {"PINSTRIPE_TIMEZONE": "Mars/Base"},
     "Unknown time zone 'Mars/Base' (PINSTRIPE_TIMEZONE)"),
    (["list-background-jobs", "--jobs-dir", "nope"], {}, "does not exist (from --jobs-dir)"),
    (["list-background-jobs", "--config", "."], {}, "is a directory"),
    (["run-background-job", "--name", "record", "--tenants", "jobs"], {}, "'jobs' (--tenants) is a directory"),
    (["run-background-job", "--name", "record", "--tenants", "missing.csv"], {}, "at the working directory"),
])
def test_messages_name_the_option_or_variable_at_fault(tenant_project, args, env, expected):
    result = run(tenant_project, *args, env=env)
    assert result.returncode in (2, 3), result.stdout + result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    if "--since" in args:
        assert "--at" not in result.stderr


# -- 9. missed ticks are reported once, with the true count -----------------------------------------------------
def test_missed_ticks_are_reported_once_per_outage_with_the_true_count(tenant_project):
    tenant_project.job("hourly", "schedule = '0 * * * *'\n" + RECORDING_JOB)
    assert run(tenant_project, "run-due-jobs", "--at", "2026-11-20T10:00").returncode == 0
    after = run(tenant_project, "run-due-jobs", "--at", "2026-11-23T10:00")  # three days later
    assert after.returncode == 0
    assert "hourly: skipped 71 tick(s) missed by more than misfire_grace" in after.stderr
    again = run(tenant_project, "run-due-jobs", "--at", "2026-11-23T10:01")
    assert "missed by more than" not in again.stderr and again.returncode == 0


# -- 10. tenant files as people make them ------------------------------------------------------------------------
@pytest.mark.parametrize("name, content", [
    ("t.csv", "\ufeffid,name\n1,Acme\n2,Globex\n"), ("t.json", '\ufeff[{"id": 1}, {"id": 2}]'),
    ("t.jsonl", '\ufeff{"id": 1}\n{"id": 2}\n')])
def test_a_byte_order_mark_is_accepted(project, name, content):
    (project.root / name).write_text(content, encoding="utf-8")
    project.config(f'tenants = "{name}"\n')
    project.job("record", RECORDING_JOB)
    result = run(project, "run-background-job", "--name", "record")
    assert result.returncode == 0, result.stderr
    assert len(project.log()) == 2


@pytest.mark.parametrize("content, message", [
    ('id,name\n1,"Acme\n2,Globex\n3,Initech\n', "is not valid CSV"),
    ("id,name,plan\n1,Acme,pro\n2,Globex\n", "t.csv:3 has 2 fields; the header has 3")])
def test_broken_csv_rows_are_errors_not_silently_swallowed(project, content, message):
    (project.root / "t.csv").write_text(content)
    project.config('tenants = "t.csv"\n')
    project.job("record", RECORDING_JOB)
    result = run(project, "run-background-job", "--name", "record")
    assert result.returncode == 3 and message in result.stderr, result.stderr
    assert project.log() == []


def test_a_filter_on_a_field_no_tenant_has_is_an_error_for_files_too(project):
    project.json_tenants([{"id": 1, "plan": "pro"}, {"id": 2, "plan": "free"}])
    project.config('tenants = "tenants.json"\n')
    project.job("record", "multi_tenant = True\ndef tenants_filter(t):\n    return t.where(plan_name='pro')\n"
                + RECORDING_JOB)
    result = run(project, "run-background-job", "--name", "record")
    assert result.returncode == 3 and "field 'plan_name' that no tenant" in result.stderr
    assert "fields: id, plan" in result.stderr


# -- 11. tracebacks show the job's frames, and only those ------------------------------------------------------------
def test_tracebacks_of_services_cleanups_and_nested_jobs(tenant_project):
    tenant_project.module("svc", '''
        def broken(ctx):
            raise ConnectionError("smtp down")

        class Conn:
            def close(self):
                raise OSError("close failed")

        def conn(ctx):
            return Conn()
    ''')
    tenant_project.config('tenants = "sqlite:///tenants.db"\n[services]\nmailer = "svc:broken"\ndb = "svc:conn"\n')
    tenant_project.job("uses-mailer", "def run(ctx):\n    ctx.mailer.send()\n")
    tenant_project.job("uses-db", "def run(ctx):\n    ctx.db\n")
    tenant_project.job("inner", "def run(ctx):\n    x = 1\n    raise ValueError('inner broke')\n")
    tenant_project.job("outer", "def run(ctx):\n    ctx.run_background_job('inner')\n")
    tracebacks = {}
    for job in ("uses-mailer", "uses-db", "outer"):
        doc = json.loads(run(tenant_project, "run-background-job", "--name", job, "--tenant", "1", "--json").stdout)
        tracebacks[job] = doc["runs"][0]["traceback"]
    for text in tracebacks.values():
        assert "pinstripe_jobs" not in text and text.startswith("Traceback (most recent call last):\n  File")
    assert "svc.py\", line 3, in broken" in tracebacks["uses-mailer"]
    assert "uses-mailer.py\", line 2, in run" in tracebacks["uses-mailer"]
    assert "svc.py\", line 7, in close" in tracebacks["uses-db"] and "OSError: close failed" in tracebacks["uses-db"]
    assert "inner.py\", line 3, in run" in tracebacks["outer"] and "ValueError: inner broke" in tracebacks["outer"]
    assert "outer.py\", line 2, in run" in tracebacks["outer"]


# -- 12. a person who waits is told why ----------------------------------------------------------------------------
def test_retries_say_so(tenant_project):
    tenant_project.job("flaky", "retries = 2\nretry_backoff = 0.01\ndef run(ctx):\n"
                                "    raise RuntimeError('not yet')\n")
    result = run(tenant_project, "run-background-job", "--name", "flaky", "--tenant", "1")
    assert result.returncode == 1
    retries = [line for line in result.stdout.splitlines() if "RETRY" in line]
    assert [line.split()[4] for line in retries] == ["2/3", "3/3"]
    assert all("after: RuntimeError: not yet" in line for line in retries)


def test_waiting_for_a_lock_says_who_holds_it(tenant_project):
    tenant_project.job("hold", "import time\nfrom pathlib import Path\ndef run(ctx):\n"
                               "    Path(f'started-{os.getpid()}').write_text('1')\n"
                               "    while not Path('release').exists():\n        time.sleep(0.02)\nimport os\n")
    holder = start(tenant_project, "run-background-job", "--name", "hold", "--tenant", "1")
    wait_for(tenant_project.root / f"started-{holder.pid}")
    waiter = start(tenant_project, "run-background-job", "--name", "hold", "--tenant", "1", "--wait")
    line = waiter.stdout.readline() + waiter.stdout.readline()
    assert "WAITING" in line and f"pid {holder.pid}" in line and "since 20" in line
    (tenant_project.root / "release").write_text("1")
    assert holder.wait(timeout=30) == 0 and waiter.wait(timeout=30) == 0
    waiter.communicate()
    holder.communicate()


def test_a_stop_over_many_tenants_collapses_the_skipped_lines(project):
    project.json_tenants([{"id": i} for i in range(1, 501)])
    project.config('tenants = "tenants.json"\n')
    project.job("slow", "import time\nfrom pathlib import Path\ndef run(ctx):\n"
                        "    Path('started').write_text('1')\n    time.sleep(0.5)\n")
    proc = start(project, "run-background-job", "--name", "slow")
    wait_for(project.root / "started")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    skipped = [line for line in out.splitlines() if line.startswith("  SKIPPED")]
    assert len(skipped) == 5 and "  ... and 494 more SKIPPED (interrupted)" in out
    assert "slow: interrupted - 499 skipped, 1 succeeded" in out


# -- 13. smaller ones ------------------------------------------------------------------------------------------------
def test_a_job_raising_keyboard_interrupt_fails_its_tenant_only(tenant_project):
    tenant_project.job("kbd", "def run(ctx):\n    if ctx.tenant.id == 2:\n        raise KeyboardInterrupt\n")
    result = run(tenant_project, "run-background-job", "--name", "kbd")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "kbd: failed - 1 failed, 3 succeeded" in result.stdout
    assert {r["tenant"]: r["status"] for r in history(tenant_project)} == {
        1: "succeeded", 2: "failed", 3: "succeeded", 4: "succeeded"}


def test_two_files_for_one_job_name_are_one_broken_line(tenant_project):
    tenant_project.job("send_email", RECORDING_JOB)
    tenant_project.job("sendEmail", RECORDING_JOB)
    result = run(tenant_project, "list-background-jobs")
    assert result.returncode == 3
    assert "record\n" in result.stdout  # the other jobs are still listed
    assert "BROKEN send-email:" in result.stdout and "sendEmail.py, send_email.py" in result.stdout
    direct = run(tenant_project, "run-background-job", "--name", "send-email")
    assert direct.returncode == 3 and "Rename all but one" in direct.stderr


def test_argument_errors_show_the_whole_signature(tenant_project):
    tenant_project.job("sig", "def run(ctx, count: int, ratio: float = 0.5, *, dry: bool = False):\n    pass\n")
    result = run(tenant_project, "run-background-job", "--name", "sig")
    assert result.returncode == 2
    assert "run(ctx, count: int, ratio: float = 0.5, *, dry: bool = False)" in result.stderr
