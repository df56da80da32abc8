"""The Celery app of the fleet: broker, result backend and the settings that make delivery safe (late
acks, a lost worker's message redelivered, one message prefetched per process, JSON only). Shared by the
CLI side (``fleet.py``, which sends tasks by name) and the workers (``celery.py``, which run them).
Imported only when the celery executor or a worker is used (Celery is an optional extra)."""
from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from pinstripe_jobs.errors import ConfigError

if TYPE_CHECKING:
    from celery import Celery

    from pinstripe_jobs.config import Settings

TASK = "pinstripe.run_batch"
DEFAULTS = {"queue": "pinstripe", "batch_size": 50, "visibility_timeout": 3600}


def require_celery() -> ModuleType:
    try:
        import celery as module
    except ImportError:
        raise ConfigError("The celery executor needs Celery, which is not installed.",
                          "Install the extra: pip install 'pinstripe-jobs[celery]'.") from None
    celery: ModuleType = module
    return celery


def celery_settings(settings: Settings) -> dict[str, Any]:
    """[celery] with its defaults; the result backend is derived from the broker when not set."""
    conf = {**DEFAULTS, **settings.celery}
    broker = conf.get("broker")
    if not broker:
        raise ConfigError("The celery executor needs a broker URL.",
                          'Set [celery] broker = "redis://127.0.0.1:6379/0" (or amqp://...) in the config, or '
                          "PINSTRIPE_CELERY_BROKER.")
    if not broker.startswith(("redis://", "rediss://", "amqp://", "amqps://", "pyamqp://", "memory://")):
        raise ConfigError(f"Unsupported Celery broker URL scheme in {broker.split('://', 1)[0]}://...",
                          "Use redis://host:6379/0 or amqp://user:password@host:5672//.")
    if not conf.get("result_backend"):
        conf["result_backend"] = broker if broker.startswith(("redis", "rediss")) else "rpc://"
    return conf


def make_app(settings: Settings) -> Celery:
    """A Celery app for the project: JSON only, late acks, one message prefetched per process."""
    celery = require_celery()
    conf = celery_settings(settings)
    app = celery.Celery("pinstripe", broker=conf["broker"], backend=conf["result_backend"], set_as_current=False)
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"],
        task_default_queue=conf["queue"], task_acks_late=True, task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1, task_track_started=False, result_expires=24 * 3600,
        broker_transport_options={"visibility_timeout": conf["visibility_timeout"]},
        result_backend_transport_options={"visibility_timeout": conf["visibility_timeout"]},
        broker_connection_retry_on_startup=True, broker_connection_timeout=5, worker_hijack_root_logger=False,
        worker_redirect_stdouts=False, task_always_eager=False, broker_pool_limit=4,
    )
    return app


def check_broker(app: Celery, broker: str, after: str = "") -> None:
    """One quick connection to the broker: an unreachable one is a configuration error (exit 3), before
    anything is sent or a worker starts."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.5, timeout=5)
    except Exception as exc:
        from pinstripe_jobs.errors import mask_secrets

        raise ConfigError(f"The Celery broker {mask_secrets(broker)} cannot be reached: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}",
                          "Check [celery] broker / PINSTRIPE_CELERY_BROKER, and that the broker is running." + after
                          ) from None
