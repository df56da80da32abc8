"""The launcher of dashboard actions: the pid it hands out is the action's process, which passes signals on
to the run, and the action log has a timestamped line for each event of the action."""
from __future__ import annotations

import os
import re
import signal

from pinstripe_jobs.web.actions import Launcher
from tests.procs import pid_alive, wait_for, wait_until

HOLD_JOB = '''
import time
from pathlib import Path

multi_tenant = False

def run(ctx):
    (Path(__file__).parent.parent / "holding").write_text("1")
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.02)
'''


def test_sigterm_to_the_action_pid_stops_the_run_and_the_log_says_so(tenant_project):
    tenant_project.job("hold", HOLD_JOB)
    log = tenant_project.root / ".pinstripe" / "dashboard-actions.log"
    launcher = Launcher(["--config", str(tenant_project.root / "pinstripe.toml"), "--grace", "0"], tenant_project.root,
                        log)  # --grace 0: the run stops at once on SIGTERM
    action = launcher.start("hold", [], only_failed=False)
    wait_for(tenant_project.root / "holding")
    os.kill(action.pid, signal.SIGTERM)
    wait_until(lambda: not pid_alive(action.pid), timeout=30, what="the action to stop")
    lines = log.read_text().splitlines()
    assert all(re.match(rf"\S+Z action={action.id} ", line) for line in lines), lines
    assert lines[0].endswith(f'start job=hold args=[] only_failed=false pid={action.pid}')
    assert re.search(r"exit=143 after \d+\.\ds$", lines[-1]), lines  # SIGTERM's exit code, passed on by the run
