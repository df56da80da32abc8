"""The meta contract: remember swaps a value and returns the one it replaced; recall reads it."""
from __future__ import annotations


def test_remember_swaps_and_recall_reads(stores):
    mine, other = stores(), stores()
    assert mine.recall("fingerprint") is None
    assert mine.remember("fingerprint", "a") is None
    assert other.remember("fingerprint", "b") == "a"
    assert mine.recall("fingerprint") == "b"
