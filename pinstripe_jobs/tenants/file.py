"""Tenants from a ``.json`` (array of objects), ``.jsonl`` or ``.csv`` file."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import TenantSourceError
from .memory import PythonSource


def convert_cell(text: str) -> Any:
    """CSV cells that read as integers, floats or true/false become those types; empty cells None."""
    lowered = text.strip().lower()
    if not lowered:
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class FileSource(PythonSource):
    def __init__(self, path: str):
        self.path = Path(path)
        self.description = str(self.path)
        if not self.path.is_file():
            raise TenantSourceError(f"Tenant file {self.path} does not exist.",
                                    "Check `tenants` in the config (relative paths start at the config's folder).")

    def rows(self) -> Iterable[Any]:
        suffix = self.path.suffix.lower()
        if suffix == ".json":
            return self._json()
        if suffix == ".jsonl":
            return self._jsonl()
        return self._csv()

    def _json(self) -> list:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise TenantSourceError(f"{self.path} is not valid JSON: {exc}.") from None
        if not isinstance(data, list):
            raise TenantSourceError(f"{self.path} must hold a JSON array of objects, not a {type(data).__name__}.")
        return data

    def _jsonl(self) -> Iterator[Any]:
        with self.path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise TenantSourceError(f"{self.path}:{number} is not valid JSON: {exc}.") from None

    def _csv(self) -> Iterator[Any]:
        with self.path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "id" not in reader.fieldnames:
                raise TenantSourceError(f"{self.path} has no 'id' column (columns: {reader.fieldnames}).",
                                        "The first line of the CSV must name the columns, one of them `id`.")
            for row in reader:
                yield {k: convert_cell(v) for k, v in row.items() if k is not None and v is not None}
