"""A property of the whole app (Starlette's test client over a real SQLite state store with history):
whatever the query string, body and cookies, every endpoint answers 2xx, 3xx or 4xx (never 5xx), with JSON
under /api/, within a second. Hypothesis runs derandomized: the same examples every run (no flakes)."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from urllib.parse import quote

import pytest
from httpx2 import Response
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from pinstripe_jobs.web.actions import Action, Launcher
from pinstripe_jobs.web.app import create_app
from tests.web.conftest import BEARER, make_dashboard

PAGES = ["/", "/jobs/{name}", "/failures", "/runs", "/runs/{id}", "/running", "/ticks", "/login"]
API = ["/api/jobs", "/api/jobs/{name}", "/api/jobs/{name}/tenants", "/api/runs", "/api/runs/{id}", "/api/running",
       "/api/failures", "/api/ticks"]
POSTS = ["/api/jobs/{name}/run", "/jobs/{name}/run", "/login"]
KEYS = ["q", "status", "cursor", "before", "limit", "job", "tenant", "invocation", "started", "action"]
NASTY = ["a" * 51_000, "9" * 30, "99999999999999999999999", "²", "١٢", "%", "_", "\\", "\x00", "0|", "0|x", "-1",
         "0", "", "running", "abandoned", "failed", "bogus", "caf\u00e9", "\ud7ff", "' OR 1=1 --", "|||"]
HEADER_TEXT = st.text(alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)),
                      max_size=60)

texts = st.one_of(st.sampled_from(NASTY), st.text(max_size=80))
queries = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), texts, max_size=5).filter(
    lambda query: sum(len(value) for value in query.values()) < 55_000)  # the test client's URL limit is 64 KiB
names = st.one_of(st.sampled_from(["sync", "greet", "nope", "x" * 300, "a\x00b", "..", "%2F"]), st.text(max_size=40))
ids = st.one_of(st.sampled_from(["1", "2", "0", "99999999999999999999999", "abc", "²", "-5"]), st.text(max_size=30))
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=10), inner, max_size=4), max_leaves=12)
well_formed = st.fixed_dictionaries({"args": st.lists(st.one_of(st.text(max_size=10), st.integers()), max_size=3),
                                     "only_failed": st.booleans()})
bodies = st.one_of(st.binary(max_size=300), well_formed.map(lambda v: json.dumps(v).encode()),
                   json_values.map(lambda v: json.dumps(v).encode()),
                   st.fixed_dictionaries({}, optional={"args": json_values, "only_failed": json_values,
                                                       "extra": json_values}).map(lambda v: json.dumps(v).encode()))
content_types = st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain",
                                 "multipart/form-data; boundary=x", "application/json; charset=utf-8", ""])


class Recorder(Launcher):
    """Records what it would start (the property is about answering; starting is tested for real elsewhere)."""

    started: list[tuple[str, list[str], bool]] = []

    def start(self, job: str, args: list[str], only_failed: bool = False, actor: str = "dashboard") -> Action:
        self.started.append((job, args, only_failed))
        return Action("0" * 12, 1)


@pytest.fixture
def client(sqlite_dash):
    dashboard = make_dashboard(sqlite_dash, allow_actions=True)
    dashboard.launcher = Recorder([], sqlite_dash.root, sqlite_dash.root / "unused.log")
    client = TestClient(create_app(dashboard))
    assert client.get("/api/jobs").status_code == 200  # the store opened: later requests are timed
    return client


def path_for(template: str, name: str, run_id: str) -> str:
    return template.replace("{name}", quote(name, safe="")).replace("{id}", quote(run_id, safe=""))


def timed(request: Callable[[], Response]) -> tuple[Response, float]:
    started = time.monotonic()
    response = request()
    took = time.monotonic() - started
    if took >= 1:  # once more: a slow answer must be slow again to count (not a pause of a busy 2-core machine)
        started = time.monotonic()
        response = request()
        took = time.monotonic() - started
    return response, took


def check(response: Response, path: str, took: float) -> None:
    event(f"status {response.status_code}")  # --hypothesis-show-statistics shows what was reached
    assert response.status_code < 500, (path, response.status_code, response.text[:500])
    assert took < 1, (path, took)
    if response.is_redirect:  # e.g. /api/runs/ -> /api/runs (Starlette's trailing-slash redirect)
        assert response.headers["location"].startswith(("/", "http://testserver/")), response.headers  # same site
    elif path.startswith("/api"):
        assert response.headers["content-type"] == "application/json", (path, response.headers)
        assert isinstance(response.json(), dict)


HYPOTHESIS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@HYPOTHESIS
@given(template=st.sampled_from(PAGES + API), name=names, run_id=ids, query=queries, cookie=HEADER_TEXT,
       bearer=st.booleans())
def test_any_get_is_answered_without_a_server_error(client, template, name, run_id, query, cookie, bearer):
    path = path_for(template, name, run_id)
    headers = {"Cookie": f"pinstripe_session={cookie}".encode(), **(BEARER if bearer else {})}
    response, took = timed(lambda: client.get(path, params=query, headers=headers, follow_redirects=False))
    check(response, path, took)


@HYPOTHESIS
@given(template=st.sampled_from(POSTS), name=names, body=bodies, kind=content_types, query=queries,
       cookie=HEADER_TEXT, bearer=st.booleans(), origin=st.sampled_from(["http://testserver", "null", "http://[::1",
                                                                        "http://evil.example", ""]))
def test_any_post_is_answered_without_a_server_error(client, template, name, body, kind, query, cookie, bearer,
                                                     origin):
    path = path_for(template, name, "")
    headers = {"Cookie": f"pinstripe_session={cookie}".encode(), "Content-Type": kind, "Origin": origin,
               **(BEARER if bearer else {})}
    response, took = timed(lambda: client.post(path, params=query, content=body, headers=headers,
                                               follow_redirects=False))
    check(response, path, took)
    if response.status_code == 202:
        assert Recorder.started and all(isinstance(arg, str) for arg in Recorder.started[-1][1])


def fits(job: str, args: list[str]) -> bool:
    """Whether ``args`` fit the job's ``run``: sync's run(ctx), greet's run(ctx, who, times: int)."""
    if job == "sync":
        return args == []
    try:
        return len(args) == 2 and isinstance(int(args[1]), int)
    except ValueError:
        return False


@HYPOTHESIS
@given(job=st.sampled_from(["sync", "greet"]), body=well_formed)
def test_a_well_formed_run_request_starts_exactly_when_its_arguments_fit(client, job, body):
    before = len(Recorder.started)
    response, took = timed(lambda: client.post(f"/api/jobs/{job}/run", json=body, headers=BEARER))
    check(response, "/api/jobs/run", took)
    args = [str(arg) for arg in body["args"]]
    if any("\x00" in arg for arg in args):
        assert response.status_code == 400 and "NUL character" in response.json()["error"], response.text
    elif fits(job, args):
        assert response.status_code == 202 and response.json()["args"] == args, response.text
        assert Recorder.started[before:] == [(job, args, body["only_failed"])]
    else:
        assert response.status_code == 400 and "Job '" in response.json()["error"], response.text
        assert len(Recorder.started) == before
