"""Admin routes to read the mail the SMTP server kept."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from apev_sinks.smtp.models import Mailbox


def admin_router(mailbox: Mailbox) -> APIRouter:
    router = APIRouter(prefix="/_admin/smtp")

    @router.get("/messages")
    async def list_mails(to: str | None = None) -> list[dict[str, Any]]:
        return [m.to_dict() for m in mailbox.mails(to=to)]

    @router.get("/messages/{mail_id}")
    async def get_mail(mail_id: int) -> dict[str, Any]:
        mail = mailbox.get(mail_id)
        if mail is None:
            raise HTTPException(404, f"no mail {mail_id}")
        return mail.to_dict(raw=True)

    return router
