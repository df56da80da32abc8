"""The state store's schema: which version a database is at, and bringing it to this release's version.

The tables are defined by the numbered migrations in ``pinstripe_jobs.store.migrations`` (v01 .. v08). A
store that opens a database at an older version applies the missing ones, in order, in one transaction
(on PostgreSQL under an advisory lock, so concurrent openers upgrade once) and records the version in
``pinstripe_meta`` (key ``schema``). A database from before versions were recorded is recognised by its
tables and columns. A database at a newer version than this release knows is refused untouched, and a
read-only open (``check_schema``) never creates or upgrades anything.

Also here: the SQL that folds run ends into ``pinstripe_latest`` (``LATEST``, ``latest_of``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pinstripe_jobs.errors import ConfigError
from pinstripe_jobs.model.status import FAILING, HELD, RANK, Status, sql_list

if TYPE_CHECKING:
    from pinstripe_jobs.store.migrations import Db

# This release's version: the number of migrations (a test holds the two equal). They are imported only
# when a database is not at this version, so that opening a current one costs one small read.
CURRENT = 8
SCHEMA_VERSION = str(CURRENT)
_STORE = "The state store"  # how a message names the store until ``SchemaError.at`` names its URL

# The grid's order: failing tenants first.
_RANK_SQL = "CASE status " + " ".join(f"WHEN '{k.value}' THEN {v}" for k, v in RANK.items()) + " ELSE 2 END"
# Each tenant's newest finished run of each job (pinstripe_latest): the dashboard's tenant grid reads one
# indexed page of it instead of grouping the whole history. Folded in from run ends in groups (at most 500
# runs or 2 seconds behind), at the end of every invocation, and for an invocation whose process died, by
# the next invocation of its job.
LATEST = (
    "INSERT INTO pinstripe_latest (job, tenant_key, tenant, tenant_kind, run_id, status, rank, started_at, ended_at, "
    "error, invocation, failing_since) SELECT job, COALESCE(tenant, '-'), tenant, tenant_kind, id, status, "
    f"{_RANK_SQL}, started_at, ended_at, error, invocation, "
    f"CASE WHEN status IN {sql_list(FAILING)} THEN ended_at END "
    "FROM {source} WHERE {where} ON CONFLICT (job, tenant_key) DO UPDATE SET tenant = excluded.tenant, "
    "tenant_kind = excluded.tenant_kind, run_id = excluded.run_id, status = excluded.status, rank = excluded.rank, "
    "started_at = excluded.started_at, ended_at = excluded.ended_at, error = excluded.error, "
    f"invocation = excluded.invocation, failing_since = CASE WHEN excluded.status IN {sql_list(FAILING)} THEN "
    f"COALESCE(pinstripe_latest.failing_since, excluded.ended_at) WHEN excluded.status = '{Status.SUCCEEDED.value}' "
    "THEN NULL "
    "ELSE pinstripe_latest.failing_since END WHERE excluded.run_id > pinstripe_latest.run_id")


def latest_of(where: str) -> str:
    """Fold the newest finished run per (job, tenant) among the runs ``where`` selects (one row per
    tenant: PostgreSQL refuses to update a row twice in one statement)."""
    return LATEST.format(source="pinstripe_runs", where="id IN (SELECT max(id) FROM pinstripe_runs WHERE "
                                                        f"{where} AND status NOT IN {sql_list(HELD)} GROUP BY job, "
                                                        "COALESCE(tenant, '-'))")


class SchemaError(ConfigError):
    """The database's schema cannot be used as it is (exit 3)."""

    def at(self, url: str) -> SchemaError:
        """The same error, naming the store by its URL (secrets masked)."""
        return type(self)(self.message.replace(_STORE, f"State store {url}", 1), self.hint)


class SchemaTooNew(SchemaError):
    """The database was upgraded by a newer release: refused, and left untouched."""


class SchemaTooOld(SchemaError):
    """A read-only open of a database at an older version (reading never upgrades)."""


class SchemaMissing(SchemaError):
    """A read-only open of a database without the tables (reading never creates them)."""


class SchemaChange:
    """What opening a database did to its schema: ``before`` (0: no tables, or older than version 1) and
    ``after`` versions; ``recorded``: ``before`` was read from pinstripe_meta, not from the columns;
    ``created``: the database had none of the tables."""

    __slots__ = ("before", "after", "recorded", "created")

    def __init__(self, before: int, after: int, *, recorded: bool, created: bool = False):
        self.before = before
        self.after = after
        self.recorded = recorded
        self.created = created

    @property
    def upgraded(self) -> bool:
        return self.before != self.after

    def describe(self) -> str:
        if not self.upgraded:
            return f"already at schema version {self.after}"
        if self.created:
            return f"created the tables at schema version {self.after}"
        if self.recorded:
            return f"upgraded from schema version {self.before} to {self.after}"
        found = (f"version {self.before}" if self.before else "a schema older than version 1")
        return f"upgraded from {found} (no version was recorded: found from its columns) to {self.after}"

    def as_dict(self) -> dict[str, object]:
        return {"from": self.before, "to": self.after, "upgraded": self.upgraded, "created": self.created,
                "recorded": self.recorded, "message": self.describe()}


def ensure_schema(conn: Any, *, sqlite: bool) -> SchemaChange:
    """Create the tables, or upgrade them in place to this version: the migrations above the database's
    version, in order, in one transaction (on PostgreSQL under an advisory lock, so concurrent openers
    upgrade once). A newer version raises ``SchemaTooNew`` before anything is written."""
    value = _fast_read(conn, sqlite)
    if value == SCHEMA_VERSION:
        return SchemaChange(CURRENT, CURRENT, recorded=True)
    if value is not None:
        _version(value)  # a newer version: refused before any lock or write
    from pinstripe_jobs.store.migrations import MIGRATIONS, Db

    db = Db(conn, sqlite=sqlite)
    db.execute("BEGIN IMMEDIATE" if sqlite else "BEGIN")
    try:
        if not sqlite:
            db.execute("SELECT pg_advisory_xact_lock(?)", (_advisory_key("schema"),))
        before, recorded, empty = _detect(db)  # again, under the lock: another process may have upgraded
        for migration in MIGRATIONS[before:]:
            migration.upgrade(db)
        if before < CURRENT:
            db.execute("INSERT INTO pinstripe_meta VALUES ('schema', ?) ON CONFLICT (key) DO UPDATE SET "
                       "value = excluded.value", (SCHEMA_VERSION,))
        db.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return SchemaChange(before, CURRENT, recorded=recorded, created=empty)


def check_schema(conn: Any, *, sqlite: bool) -> SchemaChange:
    """For a read-only open: reads only. Raises ``SchemaMissing`` without the tables, ``SchemaTooOld``
    at an older version (upgrading is a write), ``SchemaTooNew`` at a newer one."""
    if _fast_read(conn, sqlite) == SCHEMA_VERSION:
        return SchemaChange(CURRENT, CURRENT, recorded=True)
    from pinstripe_jobs.store.migrations import Db

    before, recorded, empty = _detect(Db(conn, sqlite=sqlite))
    if before == CURRENT:
        return SchemaChange(CURRENT, CURRENT, recorded=recorded)
    if empty:
        raise SchemaMissing(f"{_STORE} has no pinstripe tables yet.",
                            "Run a job, or `pinstripe migrate`, to create them.")
    found = f"schema version {before}" if recorded else "an older schema with no version recorded"
    raise SchemaTooOld(f"{_STORE} has {found}; this release uses version {CURRENT}, and a command that only "
                       "reads does not upgrade it.",
                       "Run `pinstripe migrate` (or any command that runs jobs) to upgrade it, then try again.")


def _fast_read(conn: Any, sqlite: bool) -> str | None:
    """The recorded version, or None (no meta table, or no version in it): one read of the small meta table,
    so opening a store at this version touches no other table (a busy history table does not delay it)."""
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT value FROM pinstripe_meta WHERE key = 'schema'")
        row = cursor.fetchone()
    except Exception as exc:
        if "pinstripe_meta" not in str(exc) and "no such table" not in str(exc):
            raise
        if sqlite and conn.in_transaction:
            _rollback(conn)
        return None
    return None if row is None else str(row[0])


def _detect(db: Db) -> tuple[int, bool, bool]:
    """(version, recorded, empty): the recorded version, or for a database from before versions were
    recorded (eeced65) the one its columns show: 1 when it has all of version 1, else 0 (v01 completes it)."""
    from pinstripe_jobs.store.migrations import v01

    tables = db.tables()
    if "pinstripe_meta" in tables:
        row = db.execute("SELECT value FROM pinstripe_meta WHERE key = 'schema'").fetchone()
        if row is not None:
            return _version(str(row[0])), True, False
    if "pinstripe_runs" not in tables:
        return 0, False, True
    return (1 if v01.complete(db) else 0), False, False


def _version(value: str) -> int:
    """A recorded version as a number; one this release does not know raises ``SchemaTooNew``."""
    if not value.isdigit() or int(value) == 0:
        raise SchemaError(f"{_STORE} records schema version {value!r} in pinstripe_meta, which no release wrote.",
                          "Restore the row (key 'schema') from a backup, or point `state` at another database.")
    if int(value) <= CURRENT:
        return int(value)
    raise SchemaTooNew(f"{_STORE} has schema version {value}, this release knows up to {CURRENT}: "
                       "upgrade pinstripe-jobs.",
                       f"Nothing in the database was changed. Use it with a release that knows version {value} "
                       "(pip install --upgrade pinstripe-jobs).")


def _rollback(conn: Any) -> None:
    try:
        conn.cursor().execute("ROLLBACK")
    except Exception:  # the connection is gone: the transaction went with it
        pass


def _advisory_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key for PostgreSQL, stable across processes and machines."""
    import hashlib

    digest = hashlib.blake2b("\0".join(("pinstripe-jobs", *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
