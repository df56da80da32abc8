"""``pinstripe dashboard``: a small web app over the project's jobs and history (an optional extra:
``pip install 'pinstripe-jobs[dashboard]'``). Imported only by that command."""
from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pinstripe_jobs.errors import ConfigError

if TYPE_CHECKING:
    from pinstripe_jobs.config import Settings

EXTRA_HINT = "Install the dashboard extra: pip install 'pinstripe-jobs[dashboard]'."


def _require_extra() -> None:
    missing = []
    for module in ("starlette", "uvicorn", "jinja2", "multipart"):
        try:
            __import__(module)
        except ImportError:
            missing.append("python-multipart" if module == "multipart" else module)
    if missing:
        raise ConfigError(f"The dashboard needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                          "not installed.", EXTRA_HINT)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the app starts: a port in use is a clear error, and port 0
    picks a free one (printed)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"The dashboard cannot listen on {host}:{port}: {exc.strerror or exc}.",
                          "Pick another --port (0 picks a free one), or stop what holds it.") from None
    sock.listen(128)
    return sock


def _server_class() -> Any:
    import contextlib
    import signal

    import uvicorn

    class Server(uvicorn.Server):
        """SIGINT/SIGTERM stop the server cleanly, and the command exits 0 (as the bot does), instead of
        re-raising the signal after the shutdown."""

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def _log_to_stderr() -> None:
    """The dashboard's own log (errors with their ids and tracebacks) on stderr, timestamped."""
    log = logging.getLogger("pinstripe_jobs.web")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def serve(settings: Settings, *, host: str, port: int, root_path: str, allow_actions: bool, token: str | None,
          project_args: list[str], announce: Callable[[str], object], allowed_hosts: Sequence[str] = ()) -> None:
    """Serve the dashboard until SIGINT/SIGTERM. It answers only Host names from ``hosts.allowed_hosts``:
    the bind address (and the loopback names when that is loopback) plus ``allowed_hosts``."""
    _require_extra()
    import uvicorn

    from pinstripe_jobs.web.app import Dashboard, create_app
    from pinstripe_jobs.web.hosts import allowed_hosts as hosts_for

    _log_to_stderr()
    dashboard = Dashboard(settings, token=token, allow_actions=allow_actions, project_args=project_args,
                          allowed_hosts=hosts_for(host, allowed_hosts))
    app = create_app(dashboard, root_path)
    sock = bind(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    behind = f", links under {root_path}/ for a reverse proxy that strips that prefix" if root_path else ""
    announce(f"Dashboard on http://{shown_host}:{sock.getsockname()[1]}/ "
             f"({'actions on' if allow_actions else 'read-only'}{behind}); Ctrl-C stops it.")
    config = uvicorn.Config(app, root_path=root_path, log_level="warning", access_log=False, proxy_headers=True,
                            server_header=False)
    try:
        _server_class()(config).run(sockets=[sock])
    finally:
        dashboard.close()
