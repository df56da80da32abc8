"""Issue #20 item 4: the dashboard answers only the Host names it is known by (DNS rebinding refused)."""
from __future__ import annotations

import json
import signal
import socket
import urllib.error
import urllib.request

import pytest

from pinstripe_jobs.web.hosts import allowed_hosts, hostname
from tests.test_dashboard import serve
from tests.web.conftest import client_for


def get(url: str, host: str) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["content-type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["content-type"], exc.read().decode()


@pytest.mark.parametrize("header, name", [("attacker.example:18765", "attacker.example"), ("[::1]:8765", "::1"),
                                          ("LOCALHOST.", "localhost"), ("::1", "::1"), ("127.0.0.1", "127.0.0.1")])
def test_the_name_of_a_host_header(header, name):
    assert hostname(header) == name


def test_which_names_each_bind_address_answers_to():
    assert allowed_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "::1"]
    assert allowed_hosts("::1", ["Jobs.Example.com"]) == ["::1", "localhost", "127.0.0.1", "jobs.example.com"]
    assert allowed_hosts("10.0.0.5") == ["10.0.0.5"]
    anywhere = allowed_hosts("0.0.0.0")
    assert socket.gethostname().lower() in anywhere and "@server" in anywhere and "localhost" in anywhere


def test_the_served_dashboard_refuses_a_foreign_host(dash):
    proc, url = serve(dash)
    port = url.rsplit(":", 1)[1].strip("/")
    status, kind, body = get(url + "api/failures", f"attacker.example:{port}")
    assert status == 400 and kind == "application/json"
    assert "Host 'attacker.example:" in json.loads(body)["error"] and "--allowed-host" in json.loads(body)["hint"]
    status, kind, body = get(url, f"attacker.example:{port}")
    assert status == 400 and kind.startswith("text/html") and "--allowed-host" in body
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert get(url + "api/failures", host)[0] == 200, host
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_allowed_host_adds_a_name(dash):
    proc, url = serve(dash, "--allowed-host", "jobs.example.com", "--allowed-host", "ops.example.com")
    assert get(url + "api/jobs", "jobs.example.com")[0] == 200
    assert get(url + "api/jobs", "ops.example.com:443")[0] == 200
    assert get(url + "api/jobs", "attacker.example")[0] == 400
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_a_star_turns_the_check_off_and_a_missing_host_is_refused(dash):
    assert client_for(dash, allowed_hosts=["*"]).get("/api/jobs", headers={"Host": "any.example"}).status_code == 200
    client = client_for(dash, allowed_hosts=allowed_hosts("127.0.0.1"))
    assert client.get("/api/jobs", headers={"Host": "testserver"}).status_code == 400
    assert client.get("/api/jobs", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    assert client.get("/static/dashboard.css", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/api/jobs", headers={"Host": ""}).json()["error"].startswith("The request has no Host header")
