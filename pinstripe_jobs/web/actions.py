"""Runs started from the dashboard: the same ``pinstripe run-background-job`` as from a shell, in a
background process of its own (recorded in history like any run, with trigger ``dashboard``). Each start
is an action with an id; the action log (``.pinstripe/dashboard-actions.log``) has one line per event,
``<UTC time> action=<id> ...``: the start (job, arguments, pid), each line of the run's output, its exit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

RELAY = Path(__file__).with_name("relay.py")  # run as a script: it imports nothing of the package
ACTOR_ENV = "PINSTRIPE_ACTOR"  # who a launched command acts for, as its audit trail records it
DASHBOARD = "dashboard"


@dataclass(frozen=True)
class Action:
    id: str
    pid: int


class Launcher:
    def __init__(self, project_args: list[str], cwd: Path, log_path: Path):
        self.project_args = project_args
        self.cwd = cwd
        self.log_path = log_path

    def command(self, job: str, args: list[str], only_failed: bool) -> list[str]:
        command = [sys.executable, "-m", "pinstripe_jobs", "run-background-job", "--name", job, "--trigger",
                   "dashboard", *self.project_args]
        for value in args:
            command += ["--arg", value]
        if only_failed:
            command.append("--only-failed")
        return command

    def start(self, job: str, args: list[str], only_failed: bool = False, actor: str = DASHBOARD) -> Action:
        """Start the run (through the relay that writes its output to the action log) and return its action."""
        what = f"job={job} args={json.dumps(args)} only_failed={json.dumps(only_failed)}"
        return self._launch(self.command(job, args, only_failed), what, actor)

    def start_command(self, args: list[str], what: str, actor: str = DASHBOARD) -> Action:
        """Start ``pinstripe ARGS`` (e.g. ``resume ID``) for the project, as runs are started."""
        return self._launch([sys.executable, "-m", "pinstripe_jobs", *args, *self.project_args], what, actor)

    def _launch(self, command: list[str], what: str, actor: str) -> Action:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        action = uuid.uuid4().hex[:12]
        env = {**os.environ, "PINSTRIPE_LOG_COLOR": "0", ACTOR_ENV: actor}
        with open(self.log_path, "ab") as log:  # the relay's own errors, if any, go to the log too
            process = subprocess.Popen([sys.executable, str(RELAY), str(self.log_path), action, what, "--",
                                        *command],
                                       cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       start_new_session=True, env=env)
        threading.Thread(target=process.wait, daemon=True, name="pinstripe-action-reaper").start()
        return Action(action, process.pid)
