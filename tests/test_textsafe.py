"""textsafe: what comes from jobs and tenants is shown literally."""
from __future__ import annotations

import pytest

from pinstripe_jobs.textsafe import first_line, is_valid_text, literal


@pytest.mark.parametrize("raw, shown", [
    ("a\u202eb", "a\\u202eb"), ("x\u2066y\u2069", "x\\u2066y\\u2069"), ("z\u200bw", "z\\u200bw"),
    ("j\u200dk", "j\\u200dk"), ("\ufeffid", "\\ufeffid"), ("lone \ud800", "lone \\ud800"),
    ("soft\u00adhyphen", "soft\\xadhyphen"),
    ("\x1b[31mred", "\\x1b[31mred"), ("two\nlines", "two\\nlines")])
def test_invisible_bidirectional_and_control_characters_are_made_visible(raw, shown):
    assert literal(raw) == shown
    assert literal(raw).encode("utf-8")  # always printable


@pytest.mark.parametrize("text", ["plain", "Müller GmbH", "日本語", "emoji 🎉", "tab\tkept in multiline"])
def test_ordinary_text_is_left_alone(text):
    assert literal(text, multiline=True) == text


def test_multiline_keeps_line_breaks_but_escapes_the_rest():
    assert literal("one\r\ntwo\u202e", multiline=True) == "one\ntwo\\u202e"
    assert first_line("  \n first \u200b line\nsecond") == "first \\u200b line"


def test_valid_text():
    assert is_valid_text("ok 日本 🎉") and not is_valid_text("b\ud800") and not is_valid_text("\udfff")
