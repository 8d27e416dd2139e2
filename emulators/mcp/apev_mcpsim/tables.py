"""Current records of one tenant's entity type, ordered for cursor paging; cursor encoding; value checks."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from apev_mcpsim import data, documents
from apev_mcpsim.exceptions import McpSimError, invalid


class EntityTable:
    """Current records of one entity type of one tenant, ordered by (UPDATED_AT, id) for cursor paging."""

    def __init__(self, entity_type: str, records: list[data.Record]) -> None:
        self.entity_type = entity_type
        self.id_field = data.ENTITY_ID_FIELDS[entity_type]
        self.rows: dict[str, data.Record] = {r[self.id_field]: r for r in records}
        self._order: list[tuple[str, str]] | None = None

    def order(self) -> list[tuple[str, str]]:
        if self._order is None:
            self._order = sorted((r["UPDATED_AT"], rid) for rid, r in self.rows.items())
        return self._order

    def touched(self) -> None:
        self._order = None


def encode_cursor(entity_type: str, key: tuple[str, str]) -> str:
    raw = json.dumps({"e": entity_type, "u": key[0], "i": key[1]}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(entity_type: str, cursor: str) -> tuple[str, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if raw["e"] != entity_type:
            raise ValueError("cursor of another entity type")
        return str(raw["u"]), str(raw["i"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise McpSimError(400, f"Invalid cursor for entity_type '{entity_type}'") from exc


def check_value(entity_type: str, name: str, value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    try:
        if name in data.DECIMAL_FIELDS:
            text = data.money(Decimal(text))
        elif name in data.INT_FIELDS:
            text = str(int(text))
        elif name in data.DATE_FIELDS:
            text = date.fromisoformat(text).isoformat()
        elif name in data.ENUM_FIELDS:
            allowed = data.ENUM_FIELDS[name]
            if text not in allowed:
                raise invalid(f"{entity_type}.{name}: {value!r} is not one of {', '.join(allowed)}")
        elif name == "REVIEW_NOTE" and len(text) > data.REVIEW_NOTE_MAX:
            raise invalid(f"{entity_type}.{name}: at most {data.REVIEW_NOTE_MAX} characters, got {len(text)}")
        elif name in ("BODY", "TITLE") and not text.strip():
            raise invalid(f"{entity_type}.{name}: must not be empty")
        elif name == "BODY" and len(text) > documents.BODY_MAX:
            raise invalid(f"{entity_type}.{name}: at most {documents.BODY_MAX} characters, got {len(text)}")
        elif name == "DOC_TYPE" and text not in documents.DOC_TYPES:
            raise invalid(f"{entity_type}.{name}: {value!r} is not one of {', '.join(documents.DOC_TYPES)}")
    except (ValueError, InvalidOperation) as exc:
        raise invalid(f"{entity_type}.{name}: {value!r} is not a valid value") from exc
    return text
