"""``JobRegistry``: the jobs folder (one module a job). ``JobSpec``, ``ScheduleEntry`` and the name rules live in
``registry.spec`` and are importable from here too."""
from __future__ import annotations

from pathlib import Path

from pinstripe_jobs.config import Settings
from pinstripe_jobs.database.django import setup as django_setup
from pinstripe_jobs.database.django import uses_django
from pinstripe_jobs.errors import ConfigError, JobImportError, UnknownJob, UsageError
from pinstripe_jobs.registry.declarations import BadAttribute, spec_from_module
from pinstripe_jobs.registry.loading import describe_exception, error_location, import_job_file
from pinstripe_jobs.registry.spec import (
    ISOLATION_MODES,
    OVERLAP_MODES,
    VALID_NAME,
    JobSpec,
    ScheduleEntry,
    entries_from,
    normalize_name,
)

__all__ = ["ISOLATION_MODES", "OVERLAP_MODES", "VALID_NAME", "JobRegistry", "JobSpec", "ScheduleEntry",
           "entries_from", "normalize_name"]


class JobRegistry:
    """The jobs of one project. Listing reads file names only; ``load`` imports just one module."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.jobs_dir = settings.jobs_dir
        self._specs: dict[str, JobSpec] = {}
        self.clashes: dict[str, list[Path]] = {}  # job names given by more than one file (none of them used)

    def files(self) -> dict[str, Path]:
        if not self.jobs_dir.is_dir():
            raise ConfigError(
                f"The jobs folder {self.jobs_dir} does not exist (from {self.settings.source_of('jobs_dir')}).",
                "Create it, set jobs_dir in pinstripe.toml, or pass --jobs-dir. "
                "`pinstripe generate-background-job NAME` creates a first job.",
            )
        found: dict[str, Path] = {}
        self.clashes = {}
        for path in sorted(self.jobs_dir.glob("*.py")):
            if path.name.startswith("_"):
                continue
            name = normalize_name(path.stem)
            if name in found or name in self.clashes:  # send_email.py and sendEmail.py: neither is used
                self.clashes.setdefault(name, [found.pop(name)] if name in found else []).append(path)
                continue
            found[name] = path
        return found

    def names(self) -> list[str]:
        return sorted(self.files())

    def _clash(self, name: str) -> JobImportError:
        paths = self.clashes[name]
        return JobImportError(name, str(paths[-1]), None,
                              f"{len(paths)} job files give the job name '{name}': "
                              f"{', '.join(p.name for p in paths)}", "Rename all but one of them.")

    def resolve_name(self, raw: str) -> tuple[str, Path]:
        if not raw or not VALID_NAME.match(raw):
            raise UsageError(
                f"Invalid job name {raw!r}: a job name is a file name in the jobs folder "
                "(letters, digits, '-' and '_'), never a path or a dotted module.",
                "Run `pinstripe list-background-jobs` to see the jobs.",
            )
        name = normalize_name(raw)
        files = self.files()
        if name in self.clashes:
            raise self._clash(name)
        if name not in files:
            import difflib

            close = difflib.get_close_matches(name, files, n=1, cutoff=0.5)
            suggestion = f" Did you mean '{close[0]}'?" if close else ""
            available = ", ".join(sorted(files)) or "(none)"
            raise UnknownJob(
                f"No background job named '{raw}'.{suggestion}",
                f"Jobs in {self.jobs_dir}: {available}. Run `pinstripe list-background-jobs`.",
            )
        return name, files[name]

    def load(self, raw: str) -> JobSpec:
        name, path = self.resolve_name(raw)
        if name not in self._specs:
            self._specs[name] = self._load_file(name, path)
        return self._specs[name]

    def load_all(self) -> tuple[list[JobSpec], list[JobImportError]]:
        specs: list[JobSpec] = []
        broken: list[JobImportError] = []
        for name in self.names():
            try:
                specs.append(self.load(name))
            except JobImportError as exc:
                broken.append(exc)
        broken += [self._clash(name) for name in sorted(self.clashes)]
        return specs, broken

    # -- one module -----------------------------------------------------------------------------
    def _load_file(self, name: str, path: Path) -> JobSpec:
        module_name = "pinstripe_job_" + name.replace("-", "_")
        if uses_django(self.settings.tenants, self.settings.django_settings):
            django_setup(self.settings.django_settings)  # a Django project's job modules import its models
        try:
            module = import_job_file(path, module_name)
        except (Exception, SystemExit) as exc:  # sys.exit() at import is a broken module too, never an exit
            _, line = error_location(exc, str(path))
            error = describe_exception(exc) + (" (sys.exit() was called while importing)"
                                               if isinstance(exc, SystemExit) else "")
            raise JobImportError(name, str(path), line, error) from exc
        try:
            return spec_from_module(name, path, module, self.settings)
        except BadAttribute as exc:
            raise JobImportError(name, str(path), exc.line, str(exc), exc.hint) from None
