"""Property-based tests: bad input of any shape ends in a clear message and exit 2 or 3, never a traceback."""
from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinstripe_jobs.cli import main
from pinstripe_jobs.config import KNOWN_KEYS, _from_table
from pinstripe_jobs.errors import ConfigError, TenantSourceError, UsageError
from pinstripe_jobs.registry.arguments import bind_arguments, parse_params
from pinstripe_jobs.scheduling.cron import next_tick, validate_cron
from pinstripe_jobs.tenants import TenantQuery, open_source

# In CI the examples are derandomized (the same every run: a landing never depends on luck); locally they
# are random, so running the suite keeps looking for new bad input.
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                    derandomize=bool(os.environ.get("CI")))


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=True)


@SETTINGS
@given(name=st.text(max_size=40))
def test_any_job_name_is_a_clean_usage_error(tenant_project, name):
    result = invoke("run-background-job", "--name", name)
    if normalized_exists(tenant_project, name):
        assert result.exit_code == 0
        return
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "Invalid job name" in result.output or "No background job named" in result.output \
        or "Error: Option '--name'" in result.output or "requires an argument" in result.output


def normalized_exists(project, name):
    from pinstripe_jobs.registry.jobs import VALID_NAME, normalize_name

    return bool(VALID_NAME.match(name)) and normalize_name(name) == "record"


@SETTINGS
@given(cron=st.one_of(st.text(max_size=30),
                      st.lists(st.sampled_from(["*", "*/5", "0", "59", "60", "1-5", "a", "MON", "?", "L", "*/0",
                                                "1,2", "-1", "13"]), min_size=0, max_size=7).map(" ".join)))
def test_any_cron_string_is_valid_or_explained(cron):
    problem = validate_cron(cron)
    if problem is None:
        tick = next_tick(cron, UTC, datetime(2026, 1, 1, tzinfo=UTC))
        assert tick > datetime(2026, 1, 1, tzinfo=UTC)
    else:
        assert isinstance(problem, str) and problem


@SETTINGS
@given(cron=st.text(max_size=25))
def test_any_schedule_in_a_job_module_gives_exit_0_or_3(project, cron):
    project.job("sched", f"schedule = {cron!r}\ndef run(ctx):\n    pass\n")
    result = invoke("list-background-jobs", "--json")
    assert result.exit_code in (0, 3)
    doc = json.loads(result.stdout)
    if result.exit_code == 3:
        assert "invalid cron expression" in doc["broken"][0]["error"]


toml_values = st.recursive(
    st.one_of(st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=False), st.text(max_size=30)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)


@SETTINGS
@given(table=st.dictionaries(st.one_of(st.sampled_from(sorted(KNOWN_KEYS)), st.text(max_size=12)), toml_values,
                             max_size=4))
def test_any_config_table_loads_or_raises_a_config_error(tmp_path, table):
    try:
        settings_ = _from_table(tmp_path / "pinstripe.toml", table)
    except ConfigError as exc:
        assert exc.message and exc.exit_code == 3
    else:
        assert settings_.jobs_dir.is_absolute()


def typed_run(ctx, count: int, ratio: float, flag: bool, where: Path, *rest: int, label: str = "x"):
    return count


@SETTINGS
@given(args=st.lists(st.text(max_size=12), max_size=6),
       params=st.lists(st.text(max_size=16), max_size=3))
def test_any_arg_and_param_values_bind_or_raise_a_usage_error(args, params):
    try:
        parsed = parse_params(params)
        out_args, out_params = bind_arguments(typed_run, "typed", tuple(args), parsed)
    except UsageError as exc:
        assert exc.exit_code == 2 and "typed" in exc.message or "--param" in exc.message
    else:
        assert isinstance(out_args[0], int) and isinstance(out_args[2], bool) and isinstance(out_args[3], Path)
        assert all(isinstance(v, int) for v in out_args[4:])


rows = st.lists(st.dictionaries(st.sampled_from(["id", "name", "active", "x"]),
                                st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=3), st.booleans(),
                                          st.floats(allow_nan=False), st.lists(st.integers(), max_size=2)),
                                max_size=4), max_size=6)


@SETTINGS
@given(data=rows)
def test_any_tenant_rows_are_read_or_rejected_clearly(data):
    source = open_source([dict(r) for r in data])
    try:
        tenants = list(TenantQuery(source))
    except TenantSourceError as exc:
        assert exc.exit_code == 3
        assert any(text in exc.message for text in ("has no 'id'", "Duplicate tenant id", "has an id of type",
                                                  "has an empty id"))
    else:
        assert len(tenants) == len(data)
        assert len({str(t.id) for t in tenants}) == len(tenants)


@SETTINGS
@given(data=rows)
def test_any_tenant_file_through_the_cli_gives_exit_0_1_or_3(project, data):
    (project.root / "t.json").write_text(json.dumps(data))
    project.config('tenants = "t.json"\n')
    project.job("record", "def run(ctx):\n    pass\n")
    result = invoke("run-background-job", "--name", "record")
    assert result.exit_code in (0, 3), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 3:
        assert result.output.startswith(("Configuration error: A tenant in",
                                         "Configuration error: Duplicate tenant id"))
