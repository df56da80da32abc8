"""Check ``--arg``/``--param`` values against a job's ``run`` signature and convert them by annotation."""
from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pinstripe_jobs.errors import UsageError

_BY_NAME = {"int": int, "float": float, "bool": bool, "str": str, "Path": Path, "pathlib.Path": Path}
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def parse_params(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--param {pair!r} is not of the form KEY=VALUE.",
                             "Example: --param limit=10 (KEY must be a Python identifier).")
        params[key] = value
    return params


def _annotation(hints: dict[str, Any], param: inspect.Parameter) -> Any:
    kind = hints.get(param.name, param.annotation)
    if isinstance(kind, str):
        kind = _BY_NAME.get(kind.replace(" ", "").replace("|None", "").replace("Optional[", "").rstrip("]"), kind)
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        kind = options[0] if len(options) == 1 else inspect.Parameter.empty
    return kind


def _convert(value: Any, kind: Any, label: str, job: str) -> Any:
    if not isinstance(value, str) or kind in (inspect.Parameter.empty, str, Any):
        return value
    try:
        if kind is bool:
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError
        if kind in (int, float, Path):
            return kind(value)
    except ValueError:
        expected = "true/false" if kind is bool else f"a valid {kind.__name__}"
        raise UsageError(f"Job '{job}': {label} must be {expected}, got {value!r}.") from None
    return value


def bind_arguments(run: Callable[..., Any], job: str, args: tuple[object, ...], params: dict[str, object]
                   ) -> tuple[tuple[object, ...], dict[str, object]]:
    """Return converted (args, params) for ``run(ctx, *args, **params)``; raise ``UsageError`` if they do not fit."""
    try:
        signature = inspect.signature(run)
    except (TypeError, ValueError):
        return tuple(args), dict(params)
    try:
        hints = typing.get_type_hints(run)
    except Exception:
        hints = {}
    parameters = list(signature.parameters.values())
    if parameters and parameters[0].kind != inspect.Parameter.VAR_POSITIONAL:
        parameters = parameters[1:]  # ctx
    job_signature = signature.replace(parameters=parameters)
    try:
        bound = job_signature.bind(*args, **params)
    except TypeError as exc:
        shown = str(job_signature.replace(return_annotation=inspect.Signature.empty))[1:-1]  # defaults, *, kw-only
        raise UsageError(
            f"Job '{job}' got arguments that do not fit run(ctx{', ' + shown if shown else ''}): {exc}.",
            "Pass positional values with --arg VALUE and keyword values with --param KEY=VALUE.",
        ) from None
    for name, value in list(bound.arguments.items()):
        param = job_signature.parameters[name]
        kind = _annotation(hints, param)
        if param.kind == param.VAR_POSITIONAL:
            value = tuple(_convert(v, kind, f"argument '{name}'", job) for v in value)
        elif param.kind == param.VAR_KEYWORD:
            value = {k: _convert(v, kind, f"argument '{k}'", job) for k, v in value.items()}
        else:
            value = _convert(value, kind, f"argument '{name}'", job)
        bound.arguments[name] = value
    return tuple(bound.args), dict(bound.kwargs)
