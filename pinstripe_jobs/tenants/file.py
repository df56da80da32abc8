"""Tenants from a ``.json`` (array of objects), ``.jsonl`` or ``.csv`` file."""
from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from pinstripe_jobs.errors import TenantSourceError
from pinstripe_jobs.tenants.memory import PythonSource
from pinstripe_jobs.tenants.query import PATH_HINT

CSV_HINT = "Save the file as UTF-8 (in Excel: \"CSV UTF-8\")."


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
    """A tenants file. Read as UTF-8 (a byte-order mark, as Excel writes it, is accepted); anything the file
    gets wrong is a ``TenantSourceError`` naming the file and line."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.description = str(self.path)
        if self.path.is_dir():
            raise TenantSourceError(f"Tenant source {self.path} is a directory, not a file.",
                                    "Name a .json, .jsonl or .csv file.")
        if not self.path.is_file():
            raise TenantSourceError(f"Tenant file {self.path} does not exist.", PATH_HINT)

    def rows(self) -> Iterable[Any]:
        suffix = self.path.suffix.lower()
        if suffix == ".json":
            return self._json()
        if suffix == ".jsonl":
            return self._jsonl()
        return self._csv()

    def _open(self) -> TextIO:
        try:
            return self.path.open(encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise TenantSourceError(f"Cannot read the tenant file {self.path}: {exc.strerror}.",
                                    "Check the file's permissions.") from None

    def _not_utf8(self, hint: str = CSV_HINT) -> TenantSourceError:
        """The error for a file that is not UTF-8, naming the line of the first bad byte (a text stream
        decodes ahead in blocks, so where it failed says nothing about the line)."""
        import codecs

        try:
            data = self.path.read_bytes()
        except OSError as exc:
            return TenantSourceError(f"Cannot read the tenant file {self.path}: {exc.strerror}.",
                                     "Check the file's permissions.")
        start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
        try:
            data[start:].decode("utf-8")
        except UnicodeDecodeError as exc:
            offset = start + exc.start
            line = data.count(b"\n", 0, offset) + 1
            return TenantSourceError(f"{self.path}:{line} is not UTF-8 text (byte 0x{data[offset]:02x} at offset "
                                     f"{offset}).", hint)
        return TenantSourceError(f"{self.path} is not UTF-8 text.", hint)  # it changed while read

    def _json(self) -> list[Any]:
        with self._open() as fh:
            try:
                text = fh.read()
            except UnicodeDecodeError:
                raise self._not_utf8("Save the file as UTF-8.") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise TenantSourceError(f"{self.path} is not valid JSON: {exc}.") from None
        if not isinstance(data, list):
            raise TenantSourceError(f"{self.path} must hold a JSON array of objects, not a {type(data).__name__}.")
        return data

    def _jsonl(self) -> Iterator[Any]:
        with self._open() as fh:
            number = 0
            try:
                for number, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        yield json.loads(line)
                    except ValueError as exc:
                        raise TenantSourceError(f"{self.path}:{number} is not valid JSON: {exc}.") from None
            except UnicodeDecodeError:
                raise self._not_utf8("Save the file as UTF-8.") from None

    def _csv(self) -> Iterator[Any]:
        with self._open() as fh:
            reader = csv.reader(fh, strict=True)
            try:
                header = next(reader, None)
                if not header or "id" not in header:
                    raise TenantSourceError(f"{self.path} has no 'id' column (columns: {header}).",
                                            "The first line of the CSV must name the columns, one of them `id`.")
                for row in reader:
                    if not row:
                        continue
                    if len(row) != len(header):
                        raise TenantSourceError(
                            f"{self.path}:{reader.line_num} has {len(row)} fields; the header has {len(header)} "
                            f"({', '.join(header)}).", "Every row needs one value per column (an empty one is ,,).")
                    yield {k: convert_cell(v) for k, v in zip(header, row, strict=True)}
            except csv.Error as exc:
                raise TenantSourceError(f"{self.path}:{reader.line_num} is not valid CSV: {exc}.",
                                        "Look for a quote that is opened and never closed.") from None
            except UnicodeDecodeError:
                raise self._not_utf8() from None
