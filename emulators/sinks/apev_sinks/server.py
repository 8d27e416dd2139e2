"""Serve the HTTP app and the SMTP server on one asyncio loop: in the foreground, or on a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from apev_sinks.app import create_app
from apev_sinks.backend import Sinks
from apev_sinks.smtp.server import start_smtp

log = logging.getLogger("apev_sinks")


@dataclass(frozen=True)
class SinkURLs:
    """Where the stand-ins listen. `slack_webhook(path)` and `pagerduty_events` are what a client configures."""

    http: str
    smtp_host: str
    smtp_port: int

    def slack_webhook(self, path: str) -> str:
        return f"{self.http}/services/{path.strip('/')}"

    @property
    def pagerduty_events(self) -> str:
        return f"{self.http}/v2/enqueue"

    @property
    def admin(self) -> str:
        return f"{self.http}/_admin"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one, and holding the socket means no other process takes it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP (not 0) or asyncio skips TCP_NODELAY on accepted sockets: +40 ms per request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    return sock


class SinksServer:
    def __init__(self, sinks: Sinks, *, host: str = "127.0.0.1", port: int = 0, smtp_port: int = 0) -> None:
        self.sinks = sinks
        self._http_sock = bind(host, port)
        try:
            self._smtp_sock = bind(host, smtp_port)
        except OSError:
            self._http_sock.close()
            raise
        http_port = self._http_sock.getsockname()[1]
        smtp_bound = self._smtp_sock.getsockname()[1]
        url_host = f"[{host}]" if ":" in host else host
        self.urls = SinkURLs(http=f"http://{url_host}:{http_port}", smtp_host=host, smtp_port=smtp_bound)
        self.app = create_app(sinks)
        self.app.state.smtp = (host, smtp_bound)
        config = uvicorn.Config(self.app, lifespan="off", log_level="warning", access_log=False, log_config=None)
        self._uvicorn = uvicorn.Server(config)
        self._ready = threading.Event()

    async def serve(self) -> None:
        """Run until `stop()` (or, in the main thread, SIGINT/SIGTERM)."""
        smtp = await start_smtp(self.sinks.mailbox, self.sinks.faults, self.sinks.counters, self._smtp_sock)
        try:
            watcher = asyncio.create_task(self._mark_ready())
            await self._uvicorn.serve(sockets=[self._http_sock])
            watcher.cancel()
        finally:
            smtp.close()
            await smtp.wait_closed()
            self._http_sock.close()

    async def _mark_ready(self) -> None:
        while not self._uvicorn.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.01)
        self._ready.set()

    def stop(self) -> None:
        self._uvicorn.should_exit = True

    @contextlib.contextmanager
    def in_thread(self, timeout: float = 10.0) -> Iterator[SinkURLs]:
        """Serve on a daemon thread with its own loop while the block runs."""
        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self.serve())
            except BaseException as exc:  # reported to the caller below
                errors.append(exc)
                self._ready.set()

        thread = threading.Thread(target=run, name="apev-sinks", daemon=True)
        thread.start()
        if not self._ready.wait(timeout) or errors:
            self.stop()
            thread.join(timeout)
            raise RuntimeError(f"the sinks did not start within {timeout} s") from (errors[0] if errors else None)
        try:
            yield self.urls
        finally:
            self.stop()
            thread.join(timeout)
