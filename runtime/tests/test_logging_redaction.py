"""Secrets never reach a log line, whichever way they are logged."""

from __future__ import annotations

import io
import logging

import structlog

from apev_runtime.logging import REDACTED, configure_logging

SECRET = "dapi0123456789abcdef0123456789abcdef"


def _capture() -> io.StringIO:
    out = io.StringIO()
    configure_logging("DEBUG", "json", secrets=[SECRET, "s3cr3t-jwt-key"], stream=out)
    return out


def test_configured_secret_never_appears_in_any_form() -> None:
    out = _capture()
    log = structlog.get_logger("t")
    log.info("calling databricks", token=SECRET)
    log.info(f"request failed with header Authorization: Bearer {SECRET}")
    log.info("nested", request={"headers": {"Authorization": f"Bearer {SECRET}"}, "body": {"note": SECRET}})
    logging.getLogger("aiokafka").warning("stdlib line mentions %s", SECRET)
    try:
        raise RuntimeError(f"boom with {SECRET}")
    except RuntimeError:
        log.exception("failed")
    text = out.getvalue()
    assert SECRET not in text
    assert text.count(REDACTED) >= 5
    assert "calling databricks" in text and "stdlib line mentions" in text


def test_secret_shapes_are_masked_without_registration() -> None:
    out = _capture()
    log = structlog.get_logger("t")
    log.info("employee 123-45-6789 updated")
    log.info("mcp key acme_sk_Zx8d7f6g5h4j3k2 used")
    log.info("db at postgresql://apev:hunter22@db:5432/x")
    log.info("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijk")
    log.info("settings", password="pw-value-1", api_key="k-value-2", mcp_api_key="k-value-3")
    text = out.getvalue()
    for leaked in (
        "123-45-6789",
        "acme_sk_Zx8d7f6g5h4j3k2",
        "hunter22",
        "eyJhbGciOiJIUzI1NiJ9",
        "pw-value-1",
        "k-value-2",
        "k-value-3",
    ):
        assert leaked not in text, leaked
    assert "postgresql://apev:" in text  # the user stays, the password goes
