"""The SMTP side: an aiosmtpd protocol on any asyncio loop, delivering into the `Mailbox`.

AUTH (PLAIN, LOGIN) is offered without TLS and accepts any credentials, so a client that logs in works;
STARTTLS is not offered.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from apev_sinks.faults import Faults, RequestCounters
from apev_sinks.smtp.models import Mailbox

log = logging.getLogger("apev_sinks.smtp")
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


class MailboxHandler:
    def __init__(self, mailbox: Mailbox, faults: Faults, counters: RequestCounters) -> None:
        self.mailbox = mailbox
        self.faults = faults
        self.counters = counters

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        rcpt_tos = list(envelope.rcpt_tos)
        fault = self.faults.pick(*(f"smtp:{r}" for r in rcpt_tos))
        if fault is not None and fault.latency:
            await asyncio.sleep(fault.latency)
        if fault is not None and fault.status is not None and not fault.after_apply:
            return self._reply(fault.status, fault.body)
        raw = envelope.original_content or envelope.content or b""
        content = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        mail = self.mailbox.deliver(envelope.mail_from or "", rcpt_tos, content)
        log.info("smtp: kept mail %d from %s to %s", mail.id, mail.mail_from, ", ".join(rcpt_tos))
        if fault is not None and fault.status is not None:
            return self._reply(fault.status, fault.body)
        self.counters.record("smtp", "DATA", 250)
        return "250 Message accepted for delivery"

    def _reply(self, status: int, body: str | None) -> str:
        self.counters.record("smtp", "DATA", status)
        default = "Injected fault, try again later" if status < 500 else "Injected fault"
        return f"{status} {body or default}"


def _accept_any_login(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    return AuthResult(success=True)


async def start_smtp(
    mailbox: Mailbox, faults: Faults, counters: RequestCounters, sock: socket.socket
) -> asyncio.Server:
    """Serve SMTP on an already bound socket (so port 0 works without a race)."""
    loop = asyncio.get_running_loop()
    handler = MailboxHandler(mailbox, faults, counters)

    def protocol() -> SMTP:
        return SMTP(
            handler,
            hostname="apev-sinks.local",
            data_size_limit=MAX_MESSAGE_BYTES,
            enable_SMTPUTF8=True,
            auth_require_tls=False,
            authenticator=_accept_any_login,
            loop=loop,
        )

    return await loop.create_server(protocol, sock=sock)
