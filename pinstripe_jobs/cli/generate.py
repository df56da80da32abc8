"""``generate-background-job NAME``: a new job module from a short template."""
from __future__ import annotations

import re
from pathlib import Path

from pinstripe_jobs.config import Settings
from pinstripe_jobs.errors import UsageError
from pinstripe_jobs.registry.jobs import normalize_name

# What a job file may be called (as the registry accepts it), and what its name must dasherize to: words of
# lowercase letters and digits joined by single dashes (so `count_` or `a__b` are refused, not made `count-`).
RAW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
CLEAN_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

TEMPLATE = '''"""{title}."""

# schedule = "0 * * * *"          # cron (5 fields) or a list of crons / (cron, *args) tuples
# multi_tenant = True             # default: True when a tenant source is configured
# def tenants_filter(tenants):
#     return tenants.where(active=True)


def run(ctx):
    ctx.log.info("running {name} for %s", ctx.tenant.id if ctx.tenant else "no tenant")
'''


def generate_job(settings: Settings, raw: str) -> Path:
    if not RAW_NAME.match(raw or ""):
        raise UsageError(f"Invalid job name {raw!r}: use letters, digits, '-' and '_' (e.g. send-newsletter).")
    name = normalize_name(raw)
    if not CLEAN_NAME.match(name):
        raise UsageError(f"Invalid job name {raw!r}: it would become the job {name!r}, with a dash at an end or "
                         "two in a row.", "Join words with one '-' or '_' (e.g. send-newsletter or send_newsletter).")
    path = settings.jobs_dir / (name.replace("-", "_") + ".py")
    if path.exists() or (settings.jobs_dir / (name + ".py")).exists():
        raise UsageError(f"{path} already exists; not overwriting it.", "Choose another name or edit the file.")
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(TEMPLATE.format(title=name.replace("-", " ").capitalize(), name=name))
    return path
