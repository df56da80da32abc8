"""The invocation page, cancel, the audit page and paused jobs in a real headless Chromium (Debian's
/usr/bin/chromium driven by Playwright), served by the real ``pinstripe dashboard`` process over a real run
started from a shell. Screenshots go to ``test-artifacts/screenshots``."""
from __future__ import annotations

import re

from pinstripe_jobs.errors import ExitCode
from tests.procs import run, start, wait_for, wait_until
from tests.test_dashboard import HOLD_JOB, TOKEN
from tests.test_dashboard_browser import browser, page, served, shot  # noqa: F401 - fixtures


def test_an_invocation_is_followed_live_cancelled_and_audited(served, page, request):  # noqa: F811
    project, url = served
    project.job("hold", HOLD_JOB)
    err_path = project.root / "hold.err"
    with open(err_path, "w") as err_file:
        proc = start(project, "run-background-job", "--name", "hold", "--json", stderr=err_file)
    wait_for(project.root / "holding-1", timeout=30)

    page.goto(url)
    page.get_by_role("link", name="sign in for actions").click()
    page.fill("input[name=token]", TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(url)
    page.goto(url + "jobs/hold")
    page.locator("#invocations tbody tr").first.locator("td").first.locator("a").first.click()
    page.wait_for_url(re.compile(r"/invocations/[^/]+$"))
    invocation = page.url.rsplit("/", 1)[1]
    assert page.locator("#inv-status").inner_text() == "running"
    wait_until(lambda: page.get_attribute("#invocation", "data-updated"), timeout=15, what="a live refresh")
    shot(page, "invocation-running", request)

    page.fill("#cancel input[name=reason]", "wrong arguments")
    page.get_by_role("button", name="Cancel this invocation").click()
    page.wait_for_url(re.compile(r"cancelled=0"))
    assert "Cancel requested" in page.locator("#cancel-notice").inner_text()
    wait_until(lambda: "no more tenants start" in err_path.read_text(), 15, "the run to see the cancel")
    (project.root / "release").write_text("1")
    assert proc.wait(timeout=30) == ExitCode.CANCELLED
    assert not (project.root / "holding-2").exists()  # no tenant started after the cancel

    page.goto(url + f"invocations/{invocation}")
    assert page.locator("#inv-status").inner_text() == "cancelled"
    assert "wrong arguments" in page.locator("#inv-cancel").inner_text()
    assert page.get_by_role("button", name="Resume").count() == 1
    shot(page, "invocation-cancelled", request)

    page.get_by_role("link", name="Audit").click()
    page.wait_for_url(re.compile(r"/audit$"))
    first = page.locator("#audit tbody tr").first.inner_text()
    assert "cancel" in first and "hold" in first and "dashboard" in first and "wrong arguments" in first
    shot(page, "audit", request)

    assert run(project, "pause", "sync", "--reason", "incident 42").returncode == 0
    page.goto(url)
    assert "incident 42" in page.locator("#jobs tbody tr", has=page.locator("#paused-sync")).inner_text()
    shot(page, "jobs-paused", request)
