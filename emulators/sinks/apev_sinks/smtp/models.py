"""The mailbox: every message the SMTP server accepted, with its envelope and parsed headers."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from apev_sinks.clock import Clock


@dataclass(frozen=True)
class Mail:
    id: int
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    received_at: datetime

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)  # policy.default always builds EmailMessage
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def text(self) -> str:
        """The plain-text body (the text/plain part of a multipart message), or '' when there is none."""
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""

    def to_dict(self, *, raw: bool = False) -> dict[str, Any]:
        msg = self.message
        html = msg.get_body(preferencelist=("html",))
        out: dict[str, Any] = {
            "id": self.id,
            "mail_from": self.mail_from,
            "rcpt_tos": list(self.rcpt_tos),
            "from": str(msg.get("From", "")),
            "to": str(msg.get("To", "")),
            "cc": str(msg.get("Cc", "")),
            "subject": self.subject,
            "text": self.text,
            "html": html.get_content() if html is not None else None,
            "headers": {k: str(v) for k, v in msg.items()},
            "size": len(self.raw),
            "received_at": self.received_at.isoformat(),
        }
        if raw:
            out["raw"] = self.raw.decode("utf-8", errors="replace")
        return out


class Mailbox:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._mails: list[Mail] = []

    def deliver(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> Mail:
        with self._lock:
            mail = Mail(next(self._ids), mail_from, tuple(rcpt_tos), raw, self.clock.now())
            self._mails.append(mail)
            return mail

    def mails(self, *, to: str | None = None) -> list[Mail]:
        """Every mail kept, or those with `to` (case-insensitive) among the envelope recipients."""
        with self._lock:
            return [m for m in self._mails if to is None or to.lower() in (r.lower() for r in m.rcpt_tos)]

    def get(self, mail_id: int) -> Mail | None:
        with self._lock:
            return next((m for m in self._mails if m.id == mail_id), None)

    def reset(self) -> None:
        with self._lock:
            self._mails.clear()
