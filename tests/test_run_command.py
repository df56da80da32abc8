"""run-background-job through the CLI: tenants, arguments, output modes and exit codes."""
from __future__ import annotations

import json
import os

import pytest

from .conftest import RECORDING_JOB
from .procs import modules_after


def test_runs_once_per_tenant_in_source_order(tenant_project):
    result = tenant_project.cli("run-background-job", "--name", "record")
    assert result.exit_code == 0, result.output
    assert tenant_project.log() == [f"record {i} [] {{}}" for i in (1, 2, 3, 4)]
    assert "record: succeeded - 4 succeeded" in result.output


@pytest.mark.parametrize("spelling", ["send-newsletter", "send_newsletter", "SendNewsletter", "sendNewsletter"])
def test_name_spellings(tenant_project, spelling):
    tenant_project.job("send_newsletter", RECORDING_JOB)
    result = tenant_project.cli("run-background-job", "--name", spelling)
    assert result.exit_code == 0, result.output
    assert tenant_project.log()[0].startswith("send-newsletter 1")


def test_tenants_filter_narrows_the_run(tenant_project):
    tenant_project.job("newsletter",
                       RECORDING_JOB + "\ndef tenants_filter(tenants):\n    return tenants.where(active=True)\n")
    result = tenant_project.cli("run-background-job", "--name", "newsletter")
    assert result.exit_code == 0
    assert [line.split()[1] for line in tenant_project.log()] == ["1", "2", "4"]


def test_arguments_are_converted_by_annotation(tenant_project):
    tenant_project.job("typed", '''
        from pathlib import Path
        multi_tenant = False
        def run(ctx, count: int, ratio: float, flag: bool, where: Path, label, *, limit: int = 1):
            (Path(__file__).parent.parent / "calls.log").write_text(
                repr((count, ratio, flag, type(where).__name__, label, limit)))
    ''')
    result = tenant_project.cli("run-background-job", "--name", "typed", "--arg", "3", "--arg", "0.5",
                                "--arg", "yes", "--arg", "/tmp", "--arg", "x", "--param", "limit=7")
    assert result.exit_code == 0, result.output
    assert tenant_project.log() == ["(3, 0.5, True, 'PosixPath', 'x', 7)"]


@pytest.mark.parametrize("args, message", [
    (["--arg", "1"], "missing a required argument: 'ratio'"),
    (["--arg", "1", "--arg", "2", "--arg", "3"], "too many positional arguments"),
    (["--arg", "one", "--arg", "2"], "argument 'count' must be a valid int, got 'one'"),
    (["--arg", "1", "--arg", "x"], "argument 'ratio' must be a valid float"),
    (["--arg", "1", "--arg", "2", "--param", "nope=1"], "unexpected keyword argument 'nope'"),
    (["--arg", "1", "--arg", "2", "--param", "novalue"], "--param 'novalue' is not of the form KEY=VALUE"),
])
def test_bad_arguments_exit_2_before_any_tenant_runs(tenant_project, args, message):
    typed = "def run(ctx, count: int, ratio: float):\n    args, params = (), {}"
    tenant_project.job("typed", RECORDING_JOB.replace("def run(ctx, *args, **params):", typed))
    result = tenant_project.cli("run-background-job", "--name", "typed", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert tenant_project.log() == []


def test_failing_tenant_does_not_stop_the_others(tenant_project):
    tenant_project.job("flaky", RECORDING_JOB + '''
_run = run
def run(ctx):
    _run(ctx)
    if ctx.tenant.id == 2:
        raise ValueError("tenant two is broken")
''')
    result = tenant_project.cli("run-background-job", "--name", "flaky")
    assert result.exit_code == 1
    assert len(tenant_project.log()) == 4
    assert "FAILED      tenant 2" in result.output and "ValueError: tenant two is broken" in result.output
    assert "3 succeeded" in result.output and "1 failed" in result.output


def test_fail_fast_skips_the_rest(tenant_project):
    tenant_project.job("flaky", RECORDING_JOB + '''
_run = run
def run(ctx):
    _run(ctx)
    if ctx.tenant.id == 2:
        raise ValueError("boom")
''')
    result = tenant_project.cli("run-background-job", "--name", "flaky", "--fail-fast", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert [(r["tenant"], r["status"]) for r in doc["runs"]] == [
        (1, "succeeded"), (2, "failed"), (3, "skipped"), (4, "skipped")]
    assert len(tenant_project.log()) == 2


def test_tenant_and_exclude_tenant(tenant_project):
    result = tenant_project.cli("run-background-job", "--name", "record", "--tenant", "4", "--tenant", "2")
    assert result.exit_code == 0
    assert [line.split()[1] for line in tenant_project.log()] == ["2", "4"]
    (tenant_project.root / "calls.log").unlink()
    result = tenant_project.cli("run-background-job", "--name", "record", "--exclude-tenant", "1",
                                "--exclude-tenant", "3")
    assert [line.split()[1] for line in tenant_project.log()] == ["2", "4"]


def test_unknown_or_filtered_tenant_is_a_usage_error(tenant_project):
    tenant_project.job("active_only", RECORDING_JOB + "\ndef tenants_filter(t):\n    return t.where(active=True)\n")
    result = tenant_project.cli("run-background-job", "--name", "active-only", "--tenant", "99", "--tenant", "3")
    assert result.exit_code == 2
    assert "'99' is not in table 'tenants'" in result.output
    assert "'3' is excluded by the job's tenants_filter" in result.output
    assert tenant_project.log() == []


def test_dry_run_lists_tenants_and_runs_nothing(tenant_project):
    result = tenant_project.cli("run-background-job", "--name", "record", "--dry-run", "--exclude-tenant", "2")
    assert result.exit_code == 0
    assert "tenant 1  (Acme)" in result.output and "tenant 2" not in result.output
    assert "3 run(s); nothing was run." in result.output
    assert tenant_project.log() == []
    result = tenant_project.cli("run-background-job", "--name", "record", "--dry-run", "--json")
    assert json.loads(result.stdout) == {"job": "record", "dry_run": True, "tenants": [1, 2, 3, 4]}


def test_json_is_one_document_and_job_output_goes_to_stderr(tenant_project):
    tenant_project.job("noisy", '''
        def run(ctx):
            print("hello from", ctx.tenant.id)
            ctx.log.info("logged for %s", ctx.tenant.name)
            if ctx.tenant.id == 3:
                raise KeyError("missing")
    ''')
    result = tenant_project.cli("run-background-job", "--name", "noisy", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["job"] == "noisy" and doc["status"] == "failed"
    assert isinstance(doc["duration_s"], float)
    assert [r["tenant"] for r in doc["runs"]] == [1, 2, 3, 4]
    traceback = doc["runs"][2].pop("traceback")  # --json carries the trimmed traceback of each failure
    assert doc["runs"][2].pop("host") == os.uname().nodename and doc["runs"][2].pop("pid") == os.getpid()
    assert doc["runs"][2] == {"tenant": 3, "status": "failed", "duration_s": doc["runs"][2]["duration_s"],
                              "error": "KeyError: 'missing'"}
    assert traceback.startswith("Traceback") and "noisy.py\", line 6, in run" in traceback
    assert traceback.endswith("KeyError: 'missing'") and "pinstripe_jobs" not in traceback
    assert "hello from 1" in result.stderr and "hello from" not in result.stdout
    assert "[noisy tenant=2] INFO logged for Globex" in result.stderr


def test_plain_output_has_no_colour_codes_and_a_trimmed_traceback(tenant_project):
    tenant_project.job("deep", '''
        def helper(x):
            return 1 / x

        def run(ctx):
            helper(0)
    ''')
    result = tenant_project.cli("run-background-job", "--name", "deep", "--tenant", "1")
    assert result.exit_code == 1
    assert "\x1b[" not in result.output
    assert 'deep.py", line 6, in run' in result.output and 'line 3, in helper' in result.output
    assert "pinstripe_jobs" not in result.output  # the tool's own frames are trimmed
    assert "ZeroDivisionError: division by zero" in result.output


def test_json_output_on_usage_error_is_still_a_document(tenant_project):
    result = tenant_project.cli("run-background-job", "--name", "nope", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["exit_code"] == 2
    assert "No background job named 'nope'" in result.stderr


def test_non_tenant_job_runs_once_with_no_tenant(tenant_project):
    tenant_project.job("once", RECORDING_JOB + "\nmulti_tenant = False\n")
    result = tenant_project.cli("run-background-job", "--name", "once", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["runs"][0]["tenant"] is None
    assert tenant_project.log() == ["once None [] {}"]
    result = tenant_project.cli("run-background-job", "--name", "once", "--tenant", "1")
    assert result.exit_code == 2 and "does not run per tenant" in result.output


def test_without_a_tenant_source_jobs_run_once(project):
    project.job("record", RECORDING_JOB)
    result = project.cli("run-background-job", "--name", "record")
    assert result.exit_code == 0
    assert project.log() == ["record None [] {}"]


def test_inline_tenants_and_overrides(project):
    project.config('''
        [[tenants]]
        id = "a"
        [[tenants]]
        id = "b"
    ''')
    project.job("record", RECORDING_JOB)
    assert project.cli("run-background-job", "--name", "record").exit_code == 0
    assert [line.split()[1] for line in project.log()] == ["a", "b"]
    project.json_tenants([{"id": "z"}], "other.json")
    (project.root / "calls.log").unlink()
    assert project.cli("run-background-job", "--name", "record", "--tenants", "other.json").exit_code == 0
    assert [line.split()[1] for line in project.log()] == ["z"]


def test_password_never_appears_in_output(project):
    project.config('tenants = "postgresql+psycopg://app:hunter2@127.0.0.1:1/db"\n')
    project.job("record", RECORDING_JOB)
    result = project.cli("run-background-job", "--name", "record")
    assert result.exit_code == 3
    assert "hunter2" not in result.output and "app:***@" in result.output
    assert "Tenant source unreachable" in result.output


def test_only_failed_reruns_the_tenants_whose_last_run_failed(tenant_project):
    tenant_project.job("flaky", RECORDING_JOB + '''
_run = run
def run(ctx):
    _run(ctx)
    if ctx.tenant.id in (2, 4) and not (Path(__file__).parent.parent / "fixed").exists():
        raise ValueError("not yet")
''')
    assert tenant_project.cli("run-background-job", "--name", "flaky").exit_code == 1
    (tenant_project.root / "fixed").write_text("")
    (tenant_project.root / "calls.log").unlink()
    result = tenant_project.cli("run-background-job", "--name", "flaky", "--only-failed")
    assert result.exit_code == 0
    assert [line.split()[1] for line in tenant_project.log()] == ["2", "4"]
    (tenant_project.root / "calls.log").unlink()
    result = tenant_project.cli("run-background-job", "--name", "flaky", "--only-failed")
    assert result.exit_code == 0 and tenant_project.log() == []
    assert "0 run(s)" in result.output or "no runs" in result.output


def test_history_command_filters(tenant_project):
    tenant_project.job("flaky", "def run(ctx):\n    if ctx.tenant.id == 3:\n        raise ValueError('three')\n")
    tenant_project.cli("run-background-job", "--name", "flaky")
    tenant_project.cli("run-background-job", "--name", "record", "--tenant", "1")
    runs = json.loads(tenant_project.cli("history", "--json").stdout)["runs"]
    assert [(r["job"], r["tenant"], r["status"]) for r in runs] == [
        ("record", 1, "succeeded"), ("flaky", 4, "succeeded"), ("flaky", 3, "failed"),
        ("flaky", 2, "succeeded"), ("flaky", 1, "succeeded")]
    failed = json.loads(tenant_project.cli("history", "--json", "--status", "failed").stdout)["runs"]
    assert [(r["tenant"], r["error"], r["trigger"]) for r in failed] == [(3, "ValueError: three", "manual")]
    history = tenant_project.cli("history", "--json", "--job", "flaky", "--limit", "2")
    assert len(json.loads(history.stdout)["runs"]) == 2
    plain = tenant_project.cli("history", "--tenant", "3")
    header, row = plain.output.splitlines()
    assert header.split() == ["started_at", "job", "tenant", "trigger", "status", "duration", "error"]
    assert row.split()[1:5] == ["flaky", "3", "manual", "failed"] and row.endswith("ValueError: three")
    assert row.index("flaky") == header.index("job")  # aligned under its header
    bad = tenant_project.cli("history", "--status", "weird")
    assert bad.exit_code == 2 and "'weird' is not one of" in bad.output


def test_list_shows_last_run_and_status(tenant_project):
    tenant_project.cli("run-background-job", "--name", "record")
    job = json.loads(tenant_project.cli("list-background-jobs", "--json").stdout)["jobs"][0]
    assert job["last_status"] == "succeeded" and job["last_run"].startswith("20")


def test_run_due_jobs_exit_codes_and_bad_at(tenant_project):
    tenant_project.job("hourly", "schedule = '0 * * * *'\ndef run(ctx):\n    if ctx.tenant.id == 2:\n"
                                 "        raise ValueError('x')\n")
    result = tenant_project.cli("run-due-jobs", "--at", "2026-01-01T10:30")
    assert result.exit_code == 0 and "Nothing due." in result.output
    result = tenant_project.cli("run-due-jobs", "--at", "2026-01-01T10:00")
    assert result.exit_code == 1 and "1 fired" in result.output
    result = tenant_project.cli("run-due-jobs", "--at", "2026-01-01T10:00")
    assert result.exit_code == 0 and "was already fired; skipped" in result.output
    result = tenant_project.cli("run-due-jobs", "--at", "tomorrow")
    assert result.exit_code == 2 and "--at 'tomorrow' is not an ISO 8601 date and time" in result.output


def test_tenant_source_breaking_mid_stream_stops_cleanly_with_exit_3(project, monkeypatch):
    import pinstripe_jobs.tenants.sqlite as native

    monkeypatch.setattr(native, "PAGE", 2)
    project.sqlite_tenants([{"id": i, "name": f"t{i}", "active": True, "plan": None} for i in range(1, 7)])
    import sqlite3

    with sqlite3.connect(project.root / "tenants.db") as db:  # a duplicate id on the second page
        db.execute("CREATE TABLE t2 AS SELECT * FROM tenants")
        db.execute("UPDATE t2 SET id = 3 WHERE id = 4")
    project.config('tenants = "sqlite:///tenants.db"\ntenants_table = "t2"\n')
    project.job("record", RECORDING_JOB)
    result = project.cli("run-background-job", "--name", "record", "--json")
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    assert doc["status"] == "error" and "Duplicate tenant id 3" in doc["error"], doc
    assert [r["tenant"] for r in doc["runs"]] == [1, 2, 3]


@pytest.mark.parametrize("files, tenants, message", [
    ({"t.json": "[{\"id\": 1},"}, "t.json", "is not valid JSON"),
    ({"t.json": "{\"id\": 1}"}, "t.json", "must hold a JSON array of objects"),
    ({"t.jsonl": "{\"id\": 1}\nnot json\n"}, "t.jsonl", "t.jsonl:2 is not valid JSON"),
    ({"t.csv": "name,plan\na,b\n"}, "t.csv", "has no 'id' column"),
    ({}, "missing.csv", "does not exist"),
    ({}, "no_such_mod:tenants", "names module 'no_such_mod', which cannot be found"),
    ({"tmod_a.py": "def tenants():\n    raise RuntimeError('db down')\n"}, "tmod_a:tenants",
     "raised RuntimeError: db down"),
    ({"tmod_b.py": "import nope_nope\n"}, "tmod_b:tenants", "failed while importing"),
    ({"tmod_c.py": "tenants = 5\n"}, "tmod_c:tenants", "is not callable"),
    ({}, "sqlite:///missing.db", "Tenant database file"),
])
def test_broken_tenant_sources_exit_3_with_the_reason(project, files, tenants, message):
    for name, text in files.items():
        (project.root / name).write_text(text)
    project.config(f'tenants = "{tenants}"\n')
    project.job("record", RECORDING_JOB)
    result = project.cli("run-background-job", "--name", "record")
    assert result.exit_code == 3, result.output
    assert message in result.output and "Traceback" not in result.output
    assert project.log() == []


def test_unsupported_state_store_is_a_config_error(tenant_project):
    tenant_project.config('tenants = "sqlite:///tenants.db"\nstate = "mysql://u:pw@db/x"\n')
    result = tenant_project.cli("run-background-job", "--name", "record")
    assert result.exit_code == 3
    assert "only SQLite and PostgreSQL URLs are supported" in result.output and "pw@" not in result.output


def test_a_manual_run_imports_only_what_it_needs(tenant_project):
    """Start-up is a feature: no SQLAlchemy for a SQLite source, no croniter, no rich, no asyncio on a pipe."""
    imported = modules_after(tenant_project.root, ["run-background-job", "--name", "record"],
                             "m.split('.')[0] in ('sqlalchemy', 'croniter', 'rich', 'asyncio', 'logging', 'json')")
    assert imported == []
    assert len(tenant_project.log()) == 4


def test_a_job_that_does_not_run_per_tenant_never_loads_a_tenant_source(tenant_project):
    """The no-op start-up path: no tenant source, no psycopg or SQLAlchemy, no crc32 (shards)."""
    tenant_project.job("noop", "multi_tenant = False\n\ndef run(ctx):\n    pass\n")
    imported = modules_after(tenant_project.root, ["run-background-job", "--name", "noop"],
                             "m.startswith(('pinstripe_jobs.tenants', 'psycopg', 'sqlalchemy')) or m == 'zlib'")
    assert imported == []


def test_run_due_jobs_reports_a_broken_module_and_fires_the_rest(tenant_project):
    tenant_project.job("hourly", "schedule = '0 * * * *'\nmulti_tenant = False\ndef run(ctx):\n    print('fired')\n")
    tenant_project.job("broken", "schedule = '0 * * * *'\nraise ImportError('missing dependency')\n")
    result = tenant_project.cli("run-due-jobs", "--at", "2026-01-01T10:00")
    assert result.exit_code == 3
    assert "fired" in result.stdout and "1 fired" in result.stdout
    assert "BROKEN broken: not scheduled" in result.stderr and "missing dependency" in result.stderr


def test_service_names_may_not_hide_ctx_attributes(project):
    project.config('[services]\ntenant = "x:y"\n')
    project.job("record", RECORDING_JOB)
    result = project.cli("run-background-job", "--name", "record")
    assert result.exit_code == 3 and "would hide ctx.tenant" in result.output


def test_a_lone_surrogate_tenant_id_is_a_clear_tenant_source_error_not_a_traceback(project):
    """#20: a tenant id "\\ud800" (JSON) could be neither stored nor printed: a UnicodeEncodeError traceback."""
    from .procs import run

    project.job("record", RECORDING_JOB)
    project.config('tenants = "tenants.json"\n')
    (project.root / "tenants.json").write_text('[{"id": "a"}, {"id": "b\\ud800"}, {"id": "c"}]')
    for flags in ([], ["--json"]):
        result = run(project, "run-background-job", "--name", "record", *flags)
        assert result.returncode == 3, result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        document = json.loads(result.stdout) if flags else None
        message = document["error"] if document else result.stdout
        assert "gave the tenant id 'b\\ud800', which is not valid text: it holds a lone surrogate" in message
        assert "tenants.json" in message and "Fix that tenant's id in the source" in message
        if document:
            assert document["exit_code"] == 3 and document["counts"] == {"succeeded": 1}
    assert [line.split()[1] for line in project.log()] == ["a", "a"]  # the tenants read before it ran


def test_invisible_and_bidirectional_characters_in_tenant_ids_are_escaped(project):
    """#20: a right-to-left override or a zero-width space in a tenant id was printed raw, so one id could
    pass for another or reorder the line."""
    from .procs import run

    project.job("record", RECORDING_JOB)
    project.config('tenants = "tenants.json"\n')
    ids = ["a\u202eb", "z\u200bw", "\ufeffbom", "plain"]
    project.json_tenants([{"id": tenant} for tenant in ids])
    result = run(project, "run-background-job", "--name", "record", "--tenant", "plain", "--tenant", "a\u202eb",
                 "--tenant", "z\u200bw", "--tenant", "\ufeffbom")
    assert result.returncode == 0, result.stdout + result.stderr
    for shown in ("tenant a\\u202eb ", "tenant z\\u200bw ", "tenant \\ufeffbom ", "tenant plain "):
        assert shown in result.stdout, result.stdout
    ours = [line for line in result.stdout.splitlines() if "SUCCEEDED" in line or line.startswith("record:")]
    assert not any(char in line for line in ours for char in "\u202e\u200b\ufeff")
