"""The pinstripe group maps every command's errors to their message and exit code in one place, and
@with_project hands a command the shared options as one Project."""
from __future__ import annotations

import json

import click
from click.testing import CliRunner

from pinstripe_jobs.cli.commands import main
from pinstripe_jobs.cli.group import Group
from pinstripe_jobs.cli.project import Project, with_project
from pinstripe_jobs.errors import ConfigError, UsageError


def sample_group() -> click.Group:
    @click.group(cls=Group)
    def group() -> None:
        pass

    @group.command("fail")
    @click.option("--kind", type=click.Choice(["config", "usage", "interrupt"]))
    @click.option("--json", "as_json", is_flag=True)
    def fail(kind: str, as_json: bool) -> None:
        if kind == "config":
            raise ConfigError("The thing is broken.", "Fix the thing.")
        if kind == "usage":
            raise UsageError("Bad option.")
        raise KeyboardInterrupt

    @group.command("where")
    @with_project
    def where(project: Project) -> None:
        click.echo(f"{project.config} {project.jobs_dir} {project.tenants} {project.settings().jobs_dir}")

    return group


def test_a_config_error_is_its_message_hint_and_exit_3():
    result = CliRunner().invoke(sample_group(), ["fail", "--kind", "config"], catch_exceptions=False)
    assert result.exit_code == 3
    assert result.stderr == "Configuration error: The thing is broken.\nFix the thing.\n" and result.stdout == ""


def test_under_json_the_error_is_also_one_json_document_on_stdout():
    result = CliRunner().invoke(sample_group(), ["fail", "--kind", "usage", "--json"], catch_exceptions=False)
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {"error": "Bad option.", "hint": None, "exit_code": 2}
    assert result.stderr == "Usage error: Bad option.\n"


def test_an_interrupt_before_any_run_is_exit_130_without_a_traceback():
    result = CliRunner().invoke(sample_group(), ["fail", "--kind", "interrupt"], catch_exceptions=False)
    assert result.exit_code == 130
    assert result.stderr == "Interrupted by SIGINT before any run started; nothing was run.\n"


def test_with_project_passes_the_shared_options_as_one_project(project):
    (project.root / "elsewhere").mkdir()
    result = CliRunner().invoke(sample_group(), ["where", "--jobs-dir", "elsewhere", "--tenants", "t.json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"None elsewhere t.json {project.root / 'elsewhere'}\n"


def test_every_command_takes_the_shared_options_last_and_none_maps_errors_itself():
    for name in ("run-background-job", "list-background-jobs", "generate-background-job", "history", "run-due-jobs",
                 "start-bot", "worker", "kubernetes-manifest", "dashboard"):
        options = [param.opts[0] for param in main.commands[name].params if isinstance(param, click.Option)]
        assert options[-3:] == ["--config", "--jobs-dir", "--tenants"], name
    source = "".join(open(module.__file__).read() for module in _command_modules())
    assert "handle_errors" not in source and "sys.exit(code)" not in source


def _command_modules():
    from pinstripe_jobs.cli import deploy_commands, job_commands, run_command, schedule_commands

    return (deploy_commands, job_commands, run_command, schedule_commands)
