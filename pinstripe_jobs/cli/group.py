"""The ``pinstripe`` group: where every error of every command becomes its message and exit code (in one
place), option errors become a JSON document under ``--json``, and the help lists whole descriptions."""
from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from pinstripe_jobs import __version__
from pinstripe_jobs.errors import ExitCode, PinstripeError
from pinstripe_jobs.execution.signals import RunInterrupted

AS_JSON = "pinstripe.as_json"  # ctx.meta key (shared by the group's and the command's contexts)


def fail(exc: PinstripeError, as_json: bool) -> NoReturn:
    """Our error: its message and hint on stderr (and one JSON document under --json), then its exit code."""
    from pinstripe_jobs.execution import signals

    # stopped by a signal while failing (a store that would not answer): the stop is the outcome
    code = signals.exit_code_for(signals.received) if signals.received else int(exc.exit_code)
    if as_json:
        import json

        click.echo(json.dumps({"error": exc.message, "hint": exc.hint, "exit_code": code}))
    click.echo(exc.render(), err=True)
    sys.exit(code)


def interrupted(exc: KeyboardInterrupt | RunInterrupted, as_json: bool) -> NoReturn:
    """A signal before any tenant had started: nothing was run."""
    import signal

    code = ExitCode.TERMINATED if getattr(exc, "signum", None) == signal.SIGTERM else ExitCode.INTERRUPTED
    name = "SIGTERM" if code == ExitCode.TERMINATED else "SIGINT"
    if as_json:
        import json

        click.echo(json.dumps({"error": f"Interrupted by {name} before any run started.", "hint": None,
                               "exit_code": int(code)}))
    click.echo(f"Interrupted by {name} before any run started; nothing was run.", err=True)
    sys.exit(int(code))


class Command(click.Command):
    """A command whose option errors still give one JSON document under ``--json`` (then the usual
    message on stderr and exit 2)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        wants_json = "--json" in args
        try:
            ctx = super().make_context(info_name, list(args), parent=parent, **extra)
        except click.ClickException as exc:
            if wants_json:
                import json

                click.echo(json.dumps({"error": exc.format_message(), "hint": f"Run `pinstripe {info_name} --help`.",
                                       "exit_code": exc.exit_code}))
            raise
        ctx.meta[AS_JSON] = bool(ctx.params.get("as_json"))
        return ctx


class Group(click.Group):
    """Commands listed with their whole one-line description, "did you mean" for a mistyped one, and the
    one place where errors become exit codes."""

    command_class = Command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PinstripeError as exc:
            fail(exc, ctx.meta.get(AS_JSON, False))
        except (KeyboardInterrupt, RunInterrupted) as exc:
            interrupted(exc, ctx.meta.get(AS_JSON, False))

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else None
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib

            commands = self.list_commands(ctx)
            close = difflib.get_close_matches(name, commands, n=2, cutoff=0.6)
            close += [c for c in commands if c.startswith(name) and c not in close]
            hint = f" Did you mean {' or '.join(repr(c) for c in close[:2])}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint} Commands: {', '.join(commands)}.")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            rows.append((name, (command.short_help or "") if command else ""))
        with formatter.section("Commands"):
            formatter.write_dl(rows, col_max=24)


class Seconds(click.FloatRange):
    """A number of seconds within a range; NaN is refused (it compares as within any range)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if isinstance(seconds, float) and math.isnan(seconds):
            self.fail(f"{value!r} is not a number of seconds.", param, ctx)
        return seconds


COMMON_ENV = ("PINSTRIPE_CONFIG (like --config), PINSTRIPE_JOBS_DIR (--jobs-dir), PINSTRIPE_TENANTS (--tenants), "
              "PINSTRIPE_STATE (the state store URL), PINSTRIPE_TIMEZONE (the schedules' time zone).")


def epilog(examples: Sequence[str], codes: Sequence[str], env: str = COMMON_ENV) -> str:
    """Examples, exit codes and environment variables, laid out as written (click's \\b paragraphs)."""
    return ("\b\nExamples:\n" + "\n".join(f"  {e}" for e in examples) + "\n\n\b\nExit codes:\n"
            + "\n".join(f"  {c}" for c in codes) + f"\n\nEnvironment: {env}")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
             epilog="Run `pinstripe COMMAND --help` for a command's options, examples and exit codes.")
@click.version_option(__version__, prog_name="pinstripe")
def main() -> None:
    """Run background jobs on demand and on schedule, once per tenant."""
