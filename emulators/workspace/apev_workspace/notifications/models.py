"""Notification destinations: `/api/2.0/notification-destinations`, stored per workspace.

A destination wraps exactly one config (`generic_webhook`, `slack`, `email`, `pagerduty`, `microsoft_teams`,
...). Secrets in a config (URLs, credentials, keys) are input-only: answers carry `<field>_set: true`
instead, as Databricks does, and only admins see the config at all. Only `generic_webhook` is delivered to
(see `delivery.py`); the other types are stored and answered but send nothing locally.
"""

from __future__ import annotations

import copy
import threading
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from apev_workspace.notifications.exceptions import DestinationNotFound, InvalidParameterValue, PermissionDenied

if TYPE_CHECKING:
    from apev_workspace.core.store import Store
    from apev_workspace.identity.models import Principal

# config type -> (destination_type, fields returned as they are; every other field is input-only)
CONFIG_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "generic_webhook": ("WEBHOOK", ()),
    "slack": ("SLACK", ()),
    "email": ("EMAIL", ("addresses",)),
    "pagerduty": ("PAGERDUTY", ()),
    "microsoft_teams": ("MICROSOFT_TEAMS", ()),
    "databricks_app_slack": ("DATABRICKS_APP_SLACK", ()),
    "databricks_app_teams": ("DATABRICKS_APP_TEAMS", ()),
}


def _config_kind(config: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(config, dict) or len(config) != 1:
        raise InvalidParameterValue(
            f"config must wrap exactly one of {', '.join(CONFIG_TYPES)}, got {sorted(config or {})}"
        )
    kind, body = next(iter(config.items()))
    if kind not in CONFIG_TYPES:
        raise InvalidParameterValue(f"Unknown notification destination config {kind!r}")
    if not isinstance(body, dict):
        raise InvalidParameterValue(f"config.{kind} must be an object")
    return kind, {k: v for k, v in body.items() if not k.endswith("_set")}


def _check_url(kind: str, body: dict[str, Any]) -> None:
    if kind == "generic_webhook" and not body.get("url"):
        raise InvalidParameterValue("Missing required field: config.generic_webhook.url")
    url = body.get("url")
    if url is not None:
        parts = urlsplit(str(url))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidParameterValue(f"config.{kind}.url must be an http(s) URL, got {url!r}")


class Destinations:
    def __init__(self, store: Store, lock: threading.RLock) -> None:
        self._store = store
        self._lock = lock
        self.items: dict[str, dict[str, Any]] = store.load("notification_destination")

    @staticmethod
    def _admin(who: Principal) -> None:
        if not who.is_admin:
            raise PermissionDenied("Only workspace admins can manage notification destinations")

    def create(self, body: dict[str, Any], who: Principal) -> dict[str, Any]:
        self._admin(who)
        kind, config = _config_kind(body.get("config"))
        _check_url(kind, config)
        name = body.get("display_name")
        if not name:
            raise InvalidParameterValue("Missing required field: display_name")
        with self._lock:
            item: dict[str, Any] = {
                "id": str(uuid.uuid4()),
                "display_name": str(name),
                "kind": kind,
                "config": config,
                "created_by": who.name,
            }
            self.items[item["id"]] = item
            self._store.put("notification_destination", item["id"], item)
            return item

    def get(self, destination_id: str) -> dict[str, Any]:
        item = self.items.get(destination_id)
        if item is None:
            raise DestinationNotFound(destination_id)
        return item

    def update(self, destination_id: str, body: dict[str, Any], who: Principal) -> dict[str, Any]:
        self._admin(who)
        if body.get("config") is None and body.get("display_name") is None:
            raise InvalidParameterValue("At least one of config and display_name is required")
        with self._lock:
            item = copy.deepcopy(self.get(destination_id))
            if body.get("config") is not None:
                kind, config = _config_kind(body["config"])
                if kind != item["kind"]:
                    raise InvalidParameterValue(
                        f"The destination type cannot change: this destination is {item['kind']}, not {kind}"
                    )
                item["config"] = {**item["config"], **config}
                _check_url(kind, item["config"])
            if body.get("display_name") is not None:
                item["display_name"] = str(body["display_name"])
            self.items[destination_id] = item
            self._store.put("notification_destination", destination_id, item)
            return item

    def delete(self, destination_id: str, who: Principal) -> None:
        self._admin(who)
        with self._lock:
            self.get(destination_id)
            del self.items[destination_id]
            self._store.delete("notification_destination", destination_id)

    def list_all(self) -> list[dict[str, Any]]:
        with self._lock:
            return sorted(self.items.values(), key=lambda d: (d["display_name"].lower(), d["id"]))

    def webhook_target(self, destination_id: str) -> tuple[str, tuple[str, str] | None] | None:
        """(url, basic auth) of a generic webhook destination, or None when it is gone or not a webhook."""
        with self._lock:
            item = self.items.get(destination_id)
            if item is None or item["kind"] != "generic_webhook":
                return None
            config = item["config"]
            user, password = config.get("username"), config.get("password")
            auth = (str(user or ""), str(password or "")) if user or password else None
            return str(config["url"]), auth


def render(item: dict[str, Any], *, with_config: bool) -> dict[str, Any]:
    destination_type, visible = CONFIG_TYPES[item["kind"]]
    out: dict[str, Any] = {
        "id": item["id"],
        "display_name": item["display_name"],
        "destination_type": destination_type,
    }
    if with_config:
        config = {}
        for key, value in item["config"].items():
            if key in visible:
                config[key] = value
            elif value not in (None, ""):
                config[f"{key}_set"] = True
        out["config"] = {item["kind"]: config}
    return out
