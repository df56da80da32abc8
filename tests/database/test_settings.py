"""The ``[database]`` table: every setting's range checked at load (exit 3 naming key, value and fix)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pinstripe_jobs.config import load_settings
from pinstripe_jobs.database.settings import DatabaseSettings, MissingField, parse_database, render
from pinstripe_jobs.errors import ConfigError
from tests.database.helpers import Folder

PG = "postgresql+psycopg://app:secret@db/app"


def parse(**table):
    return parse_database(table, "pinstripe.toml")


def test_defaults_and_a_relative_sqlite_template_made_absolute(tmp_path):
    settings = parse_database({"tenancy": "database", "url": "sqlite:///data/t_{tenant.id}.db"}, "x", tmp_path)
    assert settings == DatabaseSettings(tenancy="database", url=f"sqlite:///{tmp_path}/data/t_{{tenant.id}}.db")
    assert (settings.transaction, settings.pool_size, settings.schema) == ("run", 5, "{tenant.schema}")
    assert parse(tenancy="schema", url=PG, schema="t_{tenant.id}", pool_size=20, transaction="manual",
                 pool_timeout=2.5).pool_size == 20


@pytest.mark.parametrize("table, words", [
    ({"url": PG}, ["has no 'tenancy'", '"schema"']),
    ({"tenancy": "tables", "url": PG}, ["'tenancy'", "'tables'", '"shared"']),
    ({"tenancy": "shared"}, ["'url'", "Example"]),
    ({"tenancy": "shared", "url": 5}, ["'url'", "5"]),
    ({"tenancy": "database", "url": PG}, ["one per tenant", "{tenant.id}"]),
    ({"tenancy": "shared", "url": "postgresql://db/t_{tenant.id}"}, ["is a template", 'tenancy = "database"']),
    ({"tenancy": "schema", "url": "sqlite:///x.db"}, ["not a PostgreSQL URL"]),
    ({"tenancy": "schema", "url": PG, "schema": "{tenant.id"}, ["'schema'", "not a valid template"]),
    ({"tenancy": "schema", "url": PG, "schema": "{user}"}, ["{user}", "not a tenant field"]),
    ({"tenancy": "schema", "url": PG, "schema": ""}, ["'schema'", "non-empty"]),
    ({"tenancy": "shared", "url": PG, "schema": "x"}, ["only used with tenancy"]),
    ({"tenancy": "shared", "url": PG, "transaction": "auto"}, ["'transaction'", '"manual"']),
    ({"tenancy": "shared", "url": PG, "pool_size": 0}, ["'pool_size'", "is 0", "from 1 to 1000", "pool_size = 5"]),
    ({"tenancy": "shared", "url": PG, "pool_size": 2.5}, ["'pool_size'", "whole number"]),
    ({"tenancy": "shared", "url": PG, "pool_size": True}, ["'pool_size'", "True"]),
    ({"tenancy": "shared", "url": PG, "max_engines": 10**6}, ["'max_engines'", "10000"]),
    ({"tenancy": "shared", "url": PG, "pool_timeout": 0}, ["'pool_timeout'", "0.1 to 3600"]),
    ({"tenancy": "shared", "url": PG, "connect_timeout": "10"}, ["'connect_timeout'", "'10'"]),
    ({"tenancy": "shared", "url": PG, "pool": 3}, ["Unknown key 'pool'", "Did you mean 'pool_size'"]),
])
def test_bad_settings_say_what_where_and_how(table, words):
    with pytest.raises(ConfigError) as caught:
        parse(**table)
    text = caught.value.render()
    assert "pinstripe.toml" in text
    for word in words:
        assert word in text, (word, text)
    assert "secret" not in text


def test_render_fields_and_the_schema_fallback_to_the_id():
    assert render("{tenant.schema}", {"id": 7}, url=False) == "7"
    assert render("{tenant.schema}", {"id": 7, "schema": "acme"}, url=False) == "acme"
    assert render("t_{tenant[id]}", {"id": 7}, url=False) == "t_7"
    with pytest.raises(MissingField):
        render("{tenant.slug}", {"id": 7}, url=False)
    with pytest.raises(ValueError, match="not safe in a database URL"):
        render("sqlite:///data/{tenant.id}.db", {"id": "../../etc/x"}, url=True)
    with pytest.raises(ValueError, match="1 to 63"):
        render("{tenant.id}", {"id": "x" * 64}, url=False)


def test_the_config_file_reads_the_table(tmp_path: Path):
    (tmp_path / "pinstripe.toml").write_text('django_settings = "proj.settings"\n[database]\ntenancy = "shared"\n'
                                             f'url = "{PG}"\n')
    settings = load_settings(cwd=tmp_path, env={})
    assert settings.database.tenancy == "shared" and settings.django_settings == "proj.settings"
    (tmp_path / "pinstripe.toml").write_text("database = 3\n")
    with pytest.raises(ConfigError, match="'database' .* wrong type"):
        load_settings(cwd=tmp_path, env={})


def test_a_service_named_db_clashes_only_with_a_database(tmp_path: Path):
    (tmp_path / "svc.py").write_text("def make(ctx):\n    return 'mine'\n")
    (tmp_path / "pinstripe.toml").write_text('[services]\ndb = "svc:make"\n')
    assert load_settings(cwd=tmp_path, env={}).database is None
    (tmp_path / "pinstripe.toml").write_text(f'[services]\ndb = "svc:make"\n[database]\ntenancy = "shared"\n'
                                             f'url = "{PG}"\n')
    with pytest.raises(ConfigError, match="would hide ctx.db"):
        load_settings(cwd=tmp_path, env={})


def test_the_cli_exits_3_with_the_key_value_and_fix(tmp_path: Path):
    folder = Folder(tmp_path)
    folder.write("pinstripe.toml", 'tenants = [{id = 1}]\n[database]\ntenancy = "database"\n'
                                   'url = "sqlite:///t_{tenant.id}.db"\npool_size = -1\n')
    folder.job("noop", "def run(ctx):\n    pass\n")
    result = folder.run("--name", "noop")
    assert result.returncode == 3
    assert "'pool_size' in [database]" in result.stdout and "-1" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
