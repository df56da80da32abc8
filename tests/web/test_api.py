"""Issue #20, items 3 and 8, from their reproductions: hostile input to the JSON API is answered 4xx with
JSON before it reaches the store, and "run now" checks its arguments before answering 202."""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request

from pinstripe_jobs.model.status import Status
from tests.procs import pid_alive, wait_until
from tests.test_dashboard import serve
from tests.web.conftest import BEARER, SAME_ORIGIN, TOKEN, client_for


def fetch(url: str, timeout: float = 30) -> tuple[int, dict, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.load(response), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc), time.monotonic() - started


def test_a_51000_character_search_is_a_quick_400_not_an_outage(dash):
    client = client_for(dash)
    started = time.monotonic()
    response = client.get("/api/jobs/sync/tenants", params={"q": "a" * 51_000})
    assert time.monotonic() - started < 1
    assert response.status_code == 400
    assert response.json()["error"] == "Bad request: q is 51000 characters long; at most 200 are accepted"
    assert client.get("/api/jobs/sync/tenants", params={"q": "4"}).json()["tenants"][0]["tenant"] == 4  # store fine


def test_five_hostile_searches_at_once_do_not_hold_up_the_jobs_list(dash):
    proc, url = serve(dash)
    answers: list[tuple[int, dict, float]] = []
    hostile = [threading.Thread(target=lambda: answers.append(fetch(f"{url}api/jobs/sync/tenants?q={'a' * 51_000}")))
               for _ in range(5)]
    for thread in hostile:
        thread.start()
    status, jobs, took = fetch(url + "api/jobs")
    for thread in hostile:
        thread.join(timeout=30)
    assert status == 200 and any(job["name"] == "sync" for job in jobs["jobs"]) and took < 2
    assert [code for code, _, _ in answers] == [400] * 5
    assert all("at most 200" in body["error"] and seconds < 2 for _, body, seconds in answers)
    proc.terminate()
    assert proc.wait(timeout=20) == 0


def test_out_of_range_ids_limits_and_cursors_are_json_400s(dash):
    client = client_for(dash)
    response = client.get("/api/runs/99999999999999999999999")
    assert response.status_code == 400
    assert "run id must be a whole number from 1 to 9223372036854775807" in response.json()["error"]
    assert client.get("/runs/99999999999999999999999").status_code == 400  # the page too, as a page
    assert "text/html" in client.get("/runs/99999999999999999999999").headers["content-type"]
    for path, params in (("/api/runs", {"cursor": "9" * 40}), ("/api/runs", {"limit": "²"}),
                         ("/api/jobs/sync", {"cursor": "99999999999999999999999|x"}),
                         ("/api/runs", {"tenant": "x" * 201}), ("/api/failures", {"job": "j" * 201}),
                         ("/api/ticks", {"cursor": "c" * 1001}), ("/api/jobs/" + "j" * 201, {})):
        response = client.get(path, params=params)
        assert response.status_code == 400, (path, params, response.text)
        assert response.json()["error"].startswith("Bad request: "), path


def test_an_unknown_run_status_names_the_valid_ones(dash):
    response = client_for(dash).get("/api/runs", params={"status": "bogus"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "unknown status 'bogus'" in error and all(status.value in error for status in Status)


def test_a_wrong_method_is_json_405_under_the_api(dash):
    response = client_for(dash).delete("/api/jobs")
    assert response.status_code == 405 and response.json()["error"] == "Method Not Allowed"


def test_a_body_that_is_not_json_is_a_400(dash):
    client = client_for(dash, allow_actions=True)
    for content, kind, message in ((b"{not json", "application/json", "the body is not valid JSON"),
                                   (b"only_failed=1", "application/x-www-form-urlencoded",
                                    "send the body as JSON with Content-Type: application/json"),
                                   (b"[1, 2]", "application/json", "the body must be a JSON object"),
                                   (b"[" * 100_000, "application/json", "the body is longer than 65536 bytes")):
        response = client.post("/api/jobs/sync/run", content=content, headers={**BEARER, "Content-Type": kind})
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]
    assert not (dash.root / ".pinstripe" / "dashboard-actions.log").exists()  # nothing was started


def test_non_ascii_session_cookies_and_csrf_fields_are_refused_not_500s(dash):
    client = client_for(dash, allow_actions=True)
    cookie = {"Cookie": "pinstripe_session=caf\u00e9".encode()}
    response = client.post("/api/jobs/sync/run", json={}, headers=cookie)
    assert response.status_code == 401 and "Sign in" in response.json()["error"]
    assert client.get("/jobs/sync", headers=cookie).status_code == 200  # a page: read-only, not signed in
    client.post("/login", data={"token": TOKEN}, headers=SAME_ORIGIN)
    response = client.post("/jobs/sync/run", data={"csrf": "caf\u00e9", "only_failed": "1"}, headers=SAME_ORIGIN)
    assert response.status_code == 403 and "CSRF" in response.text
    response = client.post("/jobs/sync/run", data={"csrf": "x", "only_failed": "1"}, headers={"Origin": "http://[::1"})
    assert response.status_code == 403


def test_args_must_be_a_list_of_strings_and_numbers(dash):
    client = client_for(dash, allow_actions=True)
    for body, message in (({"args": "notalist"}, "args must be a list of strings and numbers, not str"),
                          ({"args": [1, {"a": 2}]}, "args[1] must be a string or a number, not an object"),
                          ({"only_failed": "yes"}, "only_failed must be true or false")):
        response = client.post("/api/jobs/greet/run", json=body, headers=BEARER)
        assert response.status_code == 400 and message in response.json()["error"], response.text
    assert not (dash.root / ".pinstripe" / "dashboard-actions.log").exists()  # nothing was started


def test_arguments_that_do_not_fit_run_are_refused_before_answering(dash):
    client = client_for(dash, allow_actions=True)
    response = client.post("/api/jobs/greet/run", json={"args": ["ann"]}, headers=BEARER)
    assert response.status_code == 400
    assert "do not fit run(ctx, who, times: int)" in response.json()["error"]
    response = client.post("/api/jobs/greet/run", json={"args": ["ann", "twice"]}, headers=BEARER)
    assert response.status_code == 400 and "argument 'times' must be a valid int" in response.json()["error"]
    response = client.post("/api/jobs/sync/run", json={"args": ["extra"]}, headers=BEARER)
    assert response.status_code == 400 and "do not fit run(ctx)" in response.json()["error"]
    html = client.post("/login", data={"token": TOKEN}, headers=SAME_ORIGIN).text
    csrf = html.split('name="csrf" value="', 1)[1].split('"', 1)[0] if 'name="csrf"' in html else \
        client.get("/jobs/greet").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    form = client.post("/jobs/greet/run", data={"csrf": csrf, "args": "ann"}, headers=SAME_ORIGIN)
    assert form.status_code == 400 and "do not fit run(ctx, who, times: int)" in form.text
    assert not (dash.root / ".pinstripe" / "dashboard-actions.log").exists()
    assert "greet" not in " ".join(dash.log())


def test_a_started_action_has_an_id_and_the_action_log_timestamps_each_line(dash):
    client = client_for(dash, allow_actions=True)
    response = client.post("/api/jobs/greet/run", json={"args": ["ann", 2]}, headers=BEARER)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["args"] == ["ann", "2"] and re.fullmatch(r"[0-9a-f]{12}", body["action"])
    wait_until(lambda: not pid_alive(body["pid"]), timeout=60, what="the action to finish")
    assert dash.log()[-1] == "greet ann 2"
    lines = (dash.root / ".pinstripe" / "dashboard-actions.log").read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert all(re.match(rf"{stamp} action={body['action']} ", line) for line in lines), lines
    assert re.search(rf'start job=greet args=\["ann", "2"\] only_failed=false pid={body["pid"]}$', lines[0])
    assert any(line.endswith("| greeted ann 2 times") for line in lines)
    assert re.search(r"exit=0 after \d+\.\ds$", lines[-1])


def test_form_bodies_are_bounded_too(dash):
    client = client_for(dash, allow_actions=True)
    response = client.post("/login", data={"token": "x" * 70_000}, headers=SAME_ORIGIN)
    assert response.status_code == 400 and "the body is longer than 65536 bytes" in response.text
    assert "text/html" in response.headers["content-type"]
