"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright), served by
the real ``pinstripe dashboard`` process over real runs. Screenshots go to ``test-artifacts/screenshots``
(or PINSTRIPE_SCREENSHOTS). CI sets PINSTRIPE_REQUIRE_BROWSER=1: a missing browser fails there."""
from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from tests.procs import pid_alive, start, unavailable, wait_until
from tests.test_dashboard import SYNC_JOB, TOKEN

CHROMIUM = Path(os.environ.get("PINSTRIPE_CHROMIUM", "/usr/bin/chromium"))
SHOTS = Path(os.environ.get("PINSTRIPE_SCREENSHOTS", Path(__file__).parent.parent / "test-artifacts" / "screenshots"))


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; never `playwright install`)"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser():
    problem = _missing()
    if problem:
        unavailable(problem, "PINSTRIPE_REQUIRE_BROWSER")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def served(tenant_project, state_url):
    """A project with 4 tenants (2 failing) run once, and its dashboard as a real process, actions on."""
    project = tenant_project
    project.config(f'tenants = "sqlite:///tenants.db"\nstate = "{state_url}"\n')
    project.job("sync", SYNC_JOB)
    assert project.cli("run-background-job", "--name", "sync").exit_code == 1
    proc = start(project, "dashboard", "--port", "0", "--allow-actions", env={"PINSTRIPE_DASHBOARD_TOKEN": TOKEN})
    line = proc.stderr.readline()
    assert "Dashboard on http://" in line, line
    yield project, line.split("Dashboard on ", 1)[1].split(" ", 1)[0]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()
    assert errors == [], errors  # no script errors, no CSP violations


def shot(page, name: str, request) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    suffix = request.node.callspec.id if hasattr(request.node, "callspec") else ""
    page.screenshot(path=str(SHOTS / f"{name}-{suffix}.png"), full_page=True)


def grid_rows(page) -> list[tuple[str, str]]:
    rows = page.locator("#grid tbody tr")
    return [(rows.nth(i).locator("td").nth(0).inner_text(), rows.nth(i).locator("td").nth(1).inner_text().strip())
            for i in range(rows.count())]


def test_the_job_page_shows_the_grid_failing_first_and_filters_it(served, page, request):
    project, url = served
    page.goto(url)
    page.get_by_role("link", name="sync", exact=True).click()
    page.wait_for_url(re.compile(r"/jobs/sync$"))
    assert page.locator("h1").inner_text() == "sync"
    assert grid_rows(page) == [("2", "failed"), ("4", "failed"), ("1", "succeeded"), ("3", "succeeded")]
    assert page.locator("svg.chart").count() == 1 and page.locator("#invocations tbody tr").count() == 1
    shot(page, "job-page", request)
    page.select_option("#grid-filter select[name=status]", "failed")
    page.click("#grid-filter button")
    page.wait_for_url(re.compile(r"status=failed"))
    assert grid_rows(page) == [("2", "failed"), ("4", "failed")]
    page.fill("#grid-filter input[name=q]", "4")
    page.click("#grid-filter button")
    page.wait_for_url(re.compile(r"q=4"))
    assert grid_rows(page) == [("4", "failed")]
    page.locator("#grid tbody tr").first.locator("td").nth(1).locator("a").click()  # the badge opens that run
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    assert "ValueError: bad data <script>alert(1)</script>" in page.locator("main").inner_text()  # literal text
    assert "raise ValueError" in page.locator("#traceback").inner_text()


def test_a_failure_group_opens_its_traceback(served, page, request):
    project, url = served
    page.goto(url + "failures")
    group = page.locator("section.failure")
    assert group.count() == 1
    assert "2 tenants" in group.inner_text() and "ValueError" in group.locator("h2").inner_text()
    traceback = group.locator("pre.traceback")
    assert not traceback.is_visible()
    group.locator("summary").click()
    traceback.wait_for(state="visible")
    assert 'raise ValueError("bad data' in traceback.inner_text()
    shot(page, "failures", request)


def test_signing_in_and_rerunning_the_failed_tenants(served, page, request):
    project, url = served
    page.goto(url + "jobs/sync")
    assert page.locator("#rerun-failed").count() == 0  # not signed in: no buttons
    page.get_by_role("link", name="sign in for actions").click()
    page.fill("input[name=token]", TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(url)
    (project.root / "fixed").write_text("1")
    before = len(project.log())
    page.goto(url + "jobs/sync")
    page.get_by_role("button", name="Rerun failed tenants").click()
    page.wait_for_url(re.compile(r"started=\d+"))
    pid = int(re.search(r"started=(\d+)", page.url).group(1))
    wait_until(lambda: not pid_alive(pid), timeout=60, what="the rerun to finish")
    assert sorted(project.log()[before:]) == ["sync 2", "sync 4"]  # the job's own log: each once, no other
    page.goto(url + "jobs/sync")
    assert grid_rows(page) == [("1", "succeeded"), ("2", "succeeded"), ("3", "succeeded"), ("4", "succeeded")]
    assert "dashboard" in page.locator("#invocations tbody tr").first.inner_text()
    shot(page, "after-rerun", request)


def test_the_running_page_updates_itself(served, page, request):
    project, url = served
    page.goto(url + "running")
    assert "Nothing is running." in page.locator("#running").inner_text()
    wait_until(lambda: page.get_attribute("#running", "data-updated"), timeout=15, what="a live refresh")
    shot(page, "running", request)
