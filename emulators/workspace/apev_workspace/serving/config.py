"""Validation of a serving endpoint's config: served entities and traffic routes, as Databricks checks them."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from apev_workspace.serving.exceptions import InvalidParameterValue
from apev_workspace.serving.replica import CONCURRENCY, now_ms

if TYPE_CHECKING:
    from apev_workspace.identity.models import Principal
    from apev_workspace.registry.models import Registry

NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")


def validate_config(config: dict[str, Any], who: Principal, registry: Registry) -> dict[str, Any]:
    """A served-entities config as stored: defaults filled, names unique, versions known, routes adding to 100."""
    raw = config.get("served_entities")
    if not raw and config.get("served_models"):
        raw = [
            {**m, "entity_name": m.get("model_name"), "entity_version": m.get("model_version")}
            for m in config["served_models"]
        ]
    if not raw or not isinstance(raw, list):
        raise InvalidParameterValue("The endpoint config must have at least one served entity")
    entities, names = [], set()
    now = now_ms()
    for item in raw:
        entity_name, entity_version = item.get("entity_name"), item.get("entity_version")
        if not entity_name or entity_version in (None, ""):
            raise InvalidParameterValue("Each served entity needs entity_name and entity_version")
        if item.get("external_model") or item.get("foundation_model"):
            raise InvalidParameterValue("External and foundation models are not served by the local workspace")
        registry.get_version(entity_name, entity_version)  # 404 for an unknown model or version
        size = item.get("workload_size") or "Small"
        if size not in CONCURRENCY:
            raise InvalidParameterValue(f"Invalid workload_size {size!r}: expected one of {', '.join(CONCURRENCY)}")
        name = item.get("name") or f"{entity_name.rsplit('.', 1)[-1]}-{entity_version}"
        if not NAME.match(name):
            raise InvalidParameterValue(f"Invalid served entity name {name!r}: letters, digits, '-' and '_' only")
        if name in names:
            raise InvalidParameterValue(f"Served entity name {name} is used twice; names must be unique")
        names.add(name)
        entities.append(
            {
                "name": name,
                "entity_name": entity_name,
                "entity_version": str(entity_version),
                "workload_size": size,
                "workload_type": item.get("workload_type") or "CPU",
                "scale_to_zero_enabled": bool(item.get("scale_to_zero_enabled", False)),
                "environment_vars": item.get("environment_vars") or None,
                "creator": who.name,
                "creation_timestamp": now,
                "state": {"deployment": "DEPLOYMENT_CREATING", "deployment_state_message": "Creating"},
            }
        )
    routes = ((config.get("traffic_config") or {}).get("routes")) or None
    if routes is None:
        if len(entities) > 1:
            raise InvalidParameterValue("traffic_config is required when an endpoint serves several entities")
        routes = [{"served_entity_name": entities[0]["name"], "traffic_percentage": 100}]
    clean = []
    for route in routes:
        target = route.get("served_entity_name") or route.get("served_model_name")
        percent = route.get("traffic_percentage")
        if target not in names:
            raise InvalidParameterValue(f"Traffic route to {target!r}, which is not a served entity of the config")
        if not isinstance(percent, int) or not 0 <= percent <= 100:
            raise InvalidParameterValue(f"traffic_percentage of {target} must be an integer from 0 to 100")
        clean.append({"served_entity_name": target, "traffic_percentage": percent})
    if sum(r["traffic_percentage"] for r in clean) != 100:
        raise InvalidParameterValue("The traffic percentages of the routes must add up to 100")
    return {"served_entities": entities, "traffic_config": {"routes": clean}}


def spec_key(entity: dict[str, Any]) -> tuple[Any, ...]:
    env = tuple(sorted((entity.get("environment_vars") or {}).items()))
    return (
        entity["entity_name"],
        entity["entity_version"],
        entity["workload_size"],
        entity["scale_to_zero_enabled"],
        env,
    )


def clean_tags(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    tags = []
    for tag in raw:
        if not isinstance(tag, dict) or not tag.get("key"):
            raise InvalidParameterValue("Each tag needs a key")
        tags.append({"key": str(tag["key"]), **({"value": str(tag["value"])} if tag.get("value") is not None else {})})
    return tags
