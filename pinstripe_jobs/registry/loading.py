"""``import_ref("module:attr")`` and importing one job file safely."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from pinstripe_jobs.errors import ConfigError


def describe_exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def error_location(exc: BaseException, filename: str | None = None) -> tuple[str | None, int | None]:
    """The (file, line) where ``exc`` was raised: in ``filename`` if given, else the innermost frame."""
    if isinstance(exc, SyntaxError) and exc.filename and (filename is None or exc.filename == filename):
        return exc.filename, exc.lineno
    import traceback

    frames = list(traceback.extract_tb(exc.__traceback__))
    if filename is not None:
        frames = [f for f in frames if f.filename == filename]
    if not frames:
        return filename, None
    return frames[-1].filename, frames[-1].lineno


def import_ref(ref: str, what: str = "reference") -> Any:
    """Import ``"package.module:attr.sub"``. Tells "not found" apart from "broke while importing"."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"The {what} {ref!r} is not of the form \"module:attribute\".",
                          'Example: "myapp.tenants:all_tenants"')
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(
                f"The {what} {ref!r} names module '{module_name}', which cannot be found.",
                "Module paths are relative to the folder of the config file, which is on sys.path.",
            ) from None
        raise _broken(ref, what, exc) from exc
    except (Exception, SystemExit) as exc:  # sys.exit() while importing is a broken module, never an exit
        raise _broken(ref, what, exc) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"The {what} {ref!r}: module '{module_name}' has no attribute '{attr}'.") from None
    return obj


def _broken(ref: str, what: str, exc: BaseException) -> ConfigError:
    file, line = error_location(exc)
    where = f" ({file}:{line})" if file else ""
    return ConfigError(f"The {what} {ref!r} failed while importing{where}: {describe_exception(exc)}")


def import_job_file(path: Path, module_name: str) -> ModuleType:
    """Execute one job file as module ``module_name``. Exceptions propagate; the module is then forgotten."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module
