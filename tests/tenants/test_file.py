"""A tenants file that is not UTF-8 is refused naming the line of its first bad byte (the CSV and JSONL
readers named line 1 whatever the line: a text stream decodes ahead in blocks)."""
from __future__ import annotations

import codecs

import pytest

from pinstripe_jobs.errors import TenantSourceError
from pinstripe_jobs.tenants import TenantQuery, open_source


@pytest.mark.parametrize("name, content, line", [
    ("t.csv", b"id,name\n1,Caf\xe9\n2,ok\n", 2),
    ("t.csv", b"id,name\n1,a\n2,b\n3,Caf\xe9\n", 4),
    ("t.csv", codecs.BOM_UTF8 + b"id,name\n1,a\n2,\xff\n", 3),
    ("t.jsonl", b'{"id": 1}\n{"id": 2, "n": "Caf\xe9"}\n', 2),
    ("t.json", b'[{"id": 1},\n {"id": 2},\n {"id": 3, "n": "\xe9"}]\n', 3),
])
def test_the_line_of_the_first_bad_byte_is_named(tmp_path, name, content, line):
    offset = next(i for i, byte in enumerate(content) if byte >= 0x80 and i >= len(codecs.BOM_UTF8))
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TenantSourceError) as caught:
        list(TenantQuery(open_source(str(path))))
    assert caught.value.message.startswith(f"{path}:{line} is not UTF-8 text (byte 0x")
    assert caught.value.message.endswith(f" at offset {offset}).")
    assert content[:offset].count(b"\n") == line - 1


def test_through_the_cli_it_is_exit_3_with_the_line(project):
    (project.root / "t.csv").write_bytes(b"id,name\n1,ok\n2,Gr\xfc\xdfe\n")
    project.config('tenants = "t.csv"\n')
    project.job("record", "def run(ctx):\n    pass\n")
    result = project.cli("run-background-job", "--name", "record")
    assert result.exit_code == 3 and f"{project.root / 't.csv'}:3 is not UTF-8 text" in result.stderr
    assert 'Save the file as UTF-8 (in Excel: "CSV UTF-8").' in result.stderr and "Traceback" not in result.output
