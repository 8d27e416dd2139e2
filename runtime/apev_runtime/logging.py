"""Structured logs (structlog): JSON in production, pretty on a terminal, never a secret.

`configure_logging()` once at start-up; then `structlog.get_logger(__name__)` anywhere. The redaction
processor masks values under secret-looking keys (token, password, secret, api_key, authorization, ...)
and secret-looking text inside any string: bearer tokens, Databricks PATs, MCP keys, JWTs, SSNs, and every
value registered with `register_secret` (settings register theirs at start-up).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|authorization|auth|credential|private[_-]?key|ssn|cookie|dsn)",
    re.IGNORECASE,
)
_SECRET_TEXT = [
    re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(r"\bdapi[0-9a-f]{16,}\b"),  # Databricks personal access tokens
    re.compile(r"\b[a-z0-9-]+_sk_[A-Za-z0-9_-]{8,}\b"),  # MCP tenant keys
    re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\b"),  # JWTs
    re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),  # US social security numbers
    re.compile(r"(?i)(://[^:/\s]+:)[^@\s]+@"),  # passwords inside URLs
]
_registered: set[str] = set()


def register_secret(*values: str | None) -> None:
    """Make sure these exact values never reach a log line (short values are ignored: too many false hits)."""
    for value in values:
        if value and len(value) >= 6:
            _registered.add(value)


def redact_text(text: str) -> str:
    for secret in _registered:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in _SECRET_TEXT:
        if pattern.groups and pattern.pattern.startswith("(?i)(://"):
            text = pattern.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def _redact(value: Any, key: str | None = None) -> Any:
    if key is not None and _SECRET_KEY.search(key) and value not in (None, "", b""):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return type(value)(_redact(v) for v in value) if not isinstance(value, set) else [_redact(v) for v in value]
    if isinstance(value, BaseException):
        return redact_text(repr(value))
    return value


def redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _redact(event_dict[key], key if key != "event" else None)
    return event_dict


def _redact_rendered(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Tracebacks are rendered after the main redaction pass: mask them too.
    for key in ("exception", "stack"):
        if isinstance(event_dict.get(key), str):
            event_dict[key] = redact_text(event_dict[key])
    return event_dict


def configure_logging(
    level: str = "INFO", fmt: str = "auto", secrets: Iterable[str | None] = (), stream: Any = None
) -> None:
    """Route structlog and the standard library (FastStream, aiokafka, uvicorn) through one redacting pipeline."""
    register_secret(*secrets)
    out = stream or sys.stderr
    json = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        redact_processor,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        # Level first: a line below the level costs one check, not the redaction chain.
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact_rendered,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
