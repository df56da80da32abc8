"""Runs started from the dashboard: the same ``pinstripe run-background-job`` as from a shell, in a
background process of its own (recorded in history like any run, with trigger ``dashboard``)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path


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

    def start(self, job: str, args: list[str], only_failed: bool = False) -> int:
        """Start the run and return its pid; its output goes to the dashboard's action log."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            process = subprocess.Popen(self.command(job, args, only_failed), cwd=self.cwd, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                       env={**os.environ, "PINSTRIPE_LOG_COLOR": "0"})
        finally:
            log.close()
        threading.Thread(target=process.wait, daemon=True, name="pinstripe-action-reaper").start()
        return process.pid
