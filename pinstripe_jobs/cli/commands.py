"""The ``pinstripe`` command: the group (cli/group.py, where errors become exit codes) and its commands, one
module per family. Each command parses its options, calls a service and exits with the outcome's code.

A new command registers on ``main``: ``@main.command(...)`` with ``@with_project`` in its own module, or
``main.add_command(...)`` at the end of this one."""
from __future__ import annotations

from pinstripe_jobs.cli.deploy_commands import dashboard_command, kubernetes_manifest_command, worker_command
from pinstripe_jobs.cli.group import COMMON_ENV, Command, Group, epilog, main
from pinstripe_jobs.cli.invocation_commands import invocation_command, invocations_command, resume_command
from pinstripe_jobs.cli.job_commands import (
    generate_background_job_command,
    history_command,
    list_background_jobs_command,
)
from pinstripe_jobs.cli.project import Project, handle_errors, load, project_options, with_project
from pinstripe_jobs.cli.run_command import EXIT_CODES, RUN_CODES, run_background_job_command
from pinstripe_jobs.cli.schedule_commands import run_due_jobs_command, start_bot_command
from pinstripe_jobs.cli.steer_commands import audit_command, cancel_command, pause_command, unpause_command

__all__ = ["audit_command", "cancel_command", "pause_command", "unpause_command",
           "COMMON_ENV", "EXIT_CODES", "RUN_CODES", "Command", "Group", "Project", "dashboard_command", "epilog",
           "generate_background_job_command", "handle_errors", "history_command", "invocation_command",
           "invocations_command", "kubernetes_manifest_command",
           "list_background_jobs_command", "load", "main", "project_options", "resume_command",
           "run_background_job_command", "run_due_jobs_command", "start_bot_command", "with_project", "worker_command"]

from pinstripe_jobs.cli.migrate import register  # noqa: E402  (after the decorators it is given)

register(main, project_options=project_options, handle_errors=handle_errors, load=load)

if __name__ == "__main__":  # pragma: no cover
    main()
