"""Escape at the edge: text that comes from jobs, tenants or the environment is shown literally.

Control characters (ANSI escapes, ``\\r``, backspaces, and newlines inside what should be one line) are
written as visible escapes, so they can neither redraw the terminal, forge a line of ours, nor break a
file format; so are invisible and bidirectional formatting characters (zero-width spaces and joiners,
right-to-left overrides and isolates, byte order marks), which would make one tenant id look like another
or reorder a line, and lone surrogates, which no output encoding accepts. Rich markup is never parsed
from such text: reporters wrap it in ``rich.text.Text``.
"""
from __future__ import annotations

import re

# invisible or bidirectional formatting characters, and lone surrogates (never valid in UTF-8)
_INVISIBLE = "\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff"
_CONTROL = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029{_INVISIBLE}]")
_CONTROL_OR_NEWLINE = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_INVISIBLE}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def literal(text: object, multiline: bool = False) -> str:
    """``text`` with control characters made visible; ``multiline`` keeps newlines and tabs."""
    text = str(text)
    pattern = _CONTROL if multiline else _CONTROL_OR_NEWLINE
    if multiline:
        text = text.replace("\r\n", "\n")
        return pattern.sub(_escape, text) if pattern.search(text) else text
    return pattern.sub(_escape, text) if pattern.search(text) else text


def is_valid_text(text: str) -> bool:
    """False when ``text`` holds a lone surrogate: it cannot be encoded (stored, printed, sent) as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def first_line(text: str | None) -> str:
    """The first non-empty line, made literal."""
    if not text or not text.strip():
        return ""
    return literal(text.strip().splitlines()[0])
