"""Shared by the ``[database]`` tests: a project folder driven through the installed ``pinstripe`` script."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "pinstripe"


class Folder:
    def __init__(self, root: Path):
        self.root = root
        (root / "jobs").mkdir(exist_ok=True)

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def job(self, name: str, text: str) -> Path:
        return self.write(f"jobs/{name}.py", text)

    def run(self, *args: str, config: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PINSTRIPE_", "DJANGO_"))}
        env["PYTHONPATH"] = str(self.root)
        extra = ["--config", config] if config else []
        return subprocess.run([str(SCRIPT), "run-background-job", *args, *extra, "--json"], cwd=self.root,
                              capture_output=True, text=True, env=env, timeout=timeout)

    def records(self, name: str = "seen.jsonl") -> list[dict]:
        path = self.root / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def runs(result: subprocess.CompletedProcess) -> dict:
    """tenant id (as text) -> status, from the --json document."""
    try:
        doc = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON document: {result.stdout!r} {result.stderr[-3000:]}") from None
    return {str(r["tenant"]): r for r in doc["runs"]}
