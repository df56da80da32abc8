"""An unexpected error is a 500 carrying an error id that the server log carries too (with the traceback):
JSON under /api/, the error page elsewhere; never Starlette's plain-text 500."""
from __future__ import annotations

import json
import logging
import re
import signal
import sqlite3
import urllib.error
import urllib.request

from tests.test_dashboard import serve
from tests.web.conftest import client_for


def corrupt_a_running_row(project) -> None:
    """A 'running' row whose start time is not a time: /running cannot compute its elapsed time."""
    with sqlite3.connect(project.root / "state" / "state.db") as db:
        db.execute("INSERT INTO pinstripe_runs (job, tenant, trigger, started_at, status, host, pid) "
                   "VALUES ('sync', '9', 'manual', 'not-a-time', 'running', 'elsewhere', 1)")


def test_an_unexpected_error_is_a_json_500_with_an_id_the_log_carries(sqlite_dash, caplog):
    corrupt_a_running_row(sqlite_dash)
    client = client_for(sqlite_dash, raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="pinstripe_jobs.web"):
        response = client.get("/api/running")
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    error_id = response.json()["error_id"]
    assert re.fullmatch(r"[0-9a-f]{12}", error_id) and error_id in response.json()["error"]
    [record] = [r for r in caplog.records if error_id in r.getMessage()]
    assert "GET /api/running" in record.getMessage() and record.exc_info is not None
    assert "not-a-time" in record.getMessage()  # the exception's own message, for whoever reads the log


def test_an_unexpected_error_on_a_page_is_the_error_page_with_its_id(sqlite_dash):
    corrupt_a_running_row(sqlite_dash)
    response = client_for(sqlite_dash, raise_server_exceptions=False).get("/running")
    assert response.status_code == 500 and response.headers["content-type"].startswith("text/html")
    error_id = re.search(r'<code id="error-id">([0-9a-f]{12})</code>', response.text).group(1)
    assert f"Internal error {error_id}" in response.text and "Traceback" not in response.text


def test_the_served_dashboard_logs_the_error_id_with_its_traceback(sqlite_dash):
    corrupt_a_running_row(sqlite_dash)
    proc, url = serve(sqlite_dash)
    try:
        urllib.request.urlopen(url + "api/running", timeout=10)
        raise AssertionError("expected a 500")
    except urllib.error.HTTPError as exc:
        assert exc.code == 500
        error_id = json.load(exc)["error_id"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    log = proc.stderr.read()
    assert f"dashboard error {error_id} on GET /api/running" in log
    assert "Traceback (most recent call last)" in log and log.count("Traceback") == 1  # logged once, not twice
