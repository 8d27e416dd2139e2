"""Mail sent with smtplib is kept and listed; SMTP faults answer with SMTP codes."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import httpx
import pytest

from apev_sinks.testing import RunningSinks


def send(sinks: RunningSinks, to: str = "oncall@example.com", login: bool = False) -> None:
    msg = EmailMessage()
    msg["From"] = "monitor@apev.local"
    msg["To"] = to
    msg["Subject"] = "Daily DBU over budget — tenant t1"
    msg.set_content("DBUs 130 > budget 100 * 1.2 (coût élevé)")
    msg.add_alternative("<p>DBUs <b>130</b></p>", subtype="html")
    with smtplib.SMTP(sinks.urls.smtp_host, sinks.urls.smtp_port, timeout=5) as smtp:
        if login:
            smtp.login("monitor", "anything")
        smtp.send_message(msg)


async def test_a_mail_sent_with_smtplib_is_listed(sinks: RunningSinks, http: httpx.AsyncClient) -> None:
    send(sinks)
    [mail] = (await http.get("/_admin/smtp/messages")).json()
    assert mail["rcpt_tos"] == ["oncall@example.com"]
    assert mail["mail_from"] == "monitor@apev.local"
    assert mail["subject"] == "Daily DBU over budget — tenant t1"
    assert mail["text"].strip() == "DBUs 130 > budget 100 * 1.2 (coût élevé)"
    assert "<b>130</b>" in mail["html"]
    full = (await http.get(f"/_admin/smtp/messages/{mail['id']}")).json()
    assert "Subject:" in full["raw"]
    assert (await http.get("/_admin/smtp/messages", params={"to": "nobody@x.org"})).json() == []


async def test_login_is_accepted_without_tls(sinks: RunningSinks) -> None:
    send(sinks, login=True)
    assert len(sinks.backend.mailbox.mails()) == 1


async def test_smtp_fault_answers_with_the_reply_code_and_keeps_nothing(
    sinks: RunningSinks, http: httpx.AsyncClient
) -> None:
    await http.post("/_admin/faults", json={"match": "smtp:*@example.com", "status": 451, "count": 1})
    with pytest.raises(smtplib.SMTPDataError) as exc:
        send(sinks)
    assert exc.value.smtp_code == 451
    assert sinks.backend.mailbox.mails() == []
    send(sinks)
    assert len(sinks.backend.mailbox.mails()) == 1
    assert (await http.get("/_admin/requests")).json()["sinks"]["smtp"]["targets"]["DATA"] == {"250": 1, "451": 1}
