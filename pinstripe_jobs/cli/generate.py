"""``generate-background-job NAME``: a new job module from a short template."""
from __future__ import annotations

from pathlib import Path

from pinstripe_jobs.config import Settings
from pinstripe_jobs.errors import UsageError
from pinstripe_jobs.registry.jobs import _VALID_NAME, normalize_name

TEMPLATE = '''"""{title}."""

# schedule = "0 * * * *"          # cron (5 fields) or a list of crons / (cron, *args) tuples
# multi_tenant = True             # default: True when a tenant source is configured
# def tenants_filter(tenants):
#     return tenants.where(active=True)


def run(ctx):
    ctx.log.info("running {name} for %s", ctx.tenant.id if ctx.tenant else "no tenant")
'''


def generate_job(settings: Settings, raw: str) -> Path:
    if not _VALID_NAME.match(raw or ""):
        raise UsageError(f"Invalid job name {raw!r}: use letters, digits, '-' and '_' (e.g. send-newsletter).")
    name = normalize_name(raw)
    path = settings.jobs_dir / (name.replace("-", "_") + ".py")
    if path.exists() or (settings.jobs_dir / (name + ".py")).exists():
        raise UsageError(f"{path} already exists; not overwriting it.", "Choose another name or edit the file.")
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(TEMPLATE.format(title=name.replace("-", " ").capitalize(), name=name))
    return path
