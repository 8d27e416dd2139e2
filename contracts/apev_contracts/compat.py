"""Is a new JSON Schema a compatible evolution of an old one (within one major version)?

The rule is "additive only": everything the old schema accepted must still be accepted (readers on the new
version keep reading old events), and everything old readers rely on must still be sent. So these are
incompatible:
- a removed (or renamed) field; a field that is no longer required, or may now be null;
- a changed type, a removed union branch;
- a new required field, or an optional field that became required;
- a narrowed enum or const, a tighter bound (length, size, range, items), a new or changed pattern or format;
- an object that stops accepting unknown fields.
Compatible: new optional fields, widened enums and unions, looser bounds, changed descriptions and titles.
A widened enum still needs its readers deployed before its writers (a reader rejects a value it lacks).

Schemas are the ones Pydantic generates: local `$ref`s into `$defs`, `anyOf` for unions and nullables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

Schema = Mapping[str, Any]

_TIGHTER_IF_LOWER: Final = ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum")
_TIGHTER_IF_HIGHER: Final = ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum")
_MUST_NOT_CHANGE: Final = ("pattern", "format", "multipleOf")


def check_compatible(old_schema: Schema, new_schema: Schema) -> list[str]:
    """Human-readable incompatibilities of `new_schema` against `old_schema`; empty when compatible."""
    checker = _Checker(old_schema, new_schema)
    checker.compare(old_schema, new_schema, "$")
    return checker.problems


class _Checker:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self.problems: list[str] = []
        self._active: set[tuple[str, str]] = set()

    # -------------------------------------------------------------- plumbing

    def _resolve(self, schema: Schema, root: Schema) -> Schema:
        """Follow `$ref`s (and single-element `allOf` wrappers), keeping sibling keywords."""
        for _ in range(64):
            if "$ref" in schema:
                ref = schema["$ref"]
                if not isinstance(ref, str) or not ref.startswith("#/"):
                    raise ValueError(f"only local $refs are supported, got {ref!r}")
                target: Any = root
                for part in ref[2:].split("/"):
                    target = target[part.replace("~1", "/").replace("~0", "~")]
                siblings = {k: v for k, v in schema.items() if k != "$ref"}
                schema = {**target, **siblings}
            elif "allOf" in schema and len(schema["allOf"]) == 1:
                siblings = {k: v for k, v in schema.items() if k != "allOf"}
                schema = {**schema["allOf"][0], **siblings}
            else:
                return schema
        raise ValueError("$ref chain too deep")

    def _branches(self, schema: Schema, root: Schema) -> tuple[list[Schema], bool]:
        """The alternatives of a schema (one unless it is a union) and whether null is one of them."""
        schema = self._resolve(schema, root)
        union = schema.get("anyOf") or schema.get("oneOf")
        if union is None:
            types = schema.get("type")
            if isinstance(types, list) and "null" in types:
                rest = [t for t in types if t != "null"]
                stripped = {**schema, "type": rest[0] if len(rest) == 1 else rest}
                return ([stripped] if rest else []), True
            return [schema], schema.get("type") == "null"
        branches: list[Schema] = []
        nullable = False
        for branch in union:
            sub, sub_nullable = self._branches(branch, root)
            branches.extend(sub)
            nullable = nullable or sub_nullable
        return [b for b in branches if b.get("type") != "null"], nullable

    def _branch_key(self, schema: Schema) -> str:
        """How to pair the alternatives of two unions: a model by its discriminating const or title, else by type."""
        for name, prop in schema.get("properties", {}).items():
            if isinstance(prop, Mapping) and "const" in prop:
                return f"{name}={prop['const']!r}"
        if "properties" in schema:
            return f"object:{schema.get('title', '')}"
        return f"type:{_fmt(_types(schema))}"

    # -------------------------------------------------------------- comparison

    def compare(self, old: Schema, new: Schema, path: str) -> None:
        pair = (str(old.get("$ref", "")), str(new.get("$ref", "")))
        if pair[0] and pair[1]:
            if pair in self._active:
                return  # a recursive model: this pair is already being compared further up
            self._active.add(pair)
            try:
                self._compare_any(old, new, path)
            finally:
                self._active.discard(pair)
        else:
            self._compare_any(old, new, path)

    def _compare_any(self, old: Schema, new: Schema, path: str) -> None:
        old_branches, old_null = self._branches(old, self.old_root)
        new_branches, new_null = self._branches(new, self.new_root)
        if old_null and not new_null:
            self.problems.append(f"{path}: no longer accepts null")
        if new_null and not old_null:
            self.problems.append(f"{path}: may now be null (readers of the old schema expect a value)")
        if len(old_branches) == 1 and len(new_branches) == 1:
            self._compare_single(old_branches[0], new_branches[0], path)
            return
        new_by_key = {self._branch_key(b): b for b in new_branches}
        for branch in old_branches:
            key = self._branch_key(branch)
            match = new_by_key.get(key)
            if match is None:
                self.problems.append(f"{path}: union alternative {key} was removed")
            else:
                self._compare_single(branch, match, f"{path}<{key}>")

    def _compare_single(self, old: Schema, new: Schema, path: str) -> None:
        old = self._resolve(old, self.old_root)
        new = self._resolve(new, self.new_root)
        old_types, new_types = _types(old), _types(new)
        if old_types and new_types and not _covers(new_types, old_types):
            self.problems.append(f"{path}: type changed from {_fmt(old_types)} to {_fmt(new_types)}")
            return
        self._compare_values(old, new, path)
        self._compare_bounds(old, new, path)
        if "object" in old_types or "properties" in old:
            self._compare_object(old, new, path)
        if "array" in old_types or "items" in old:
            self._compare_array(old, new, path)

    def _compare_values(self, old: Schema, new: Schema, path: str) -> None:
        old_values, new_values = _allowed_values(old), _allowed_values(new)
        if new_values is None:
            return
        if old_values is None:
            self.problems.append(f"{path}: now restricted to {', '.join(sorted(new_values))}")
            return
        removed = old_values - new_values
        if removed:
            self.problems.append(f"{path}: enum narrowed, removed {', '.join(sorted(removed))}")

    def _compare_bounds(self, old: Schema, new: Schema, path: str) -> None:
        for keyword in _TIGHTER_IF_LOWER:
            if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
                self.problems.append(f"{path}: {keyword} tightened from {old.get(keyword, 'none')} to {new[keyword]}")
        for keyword in _TIGHTER_IF_HIGHER:
            if keyword in new and (keyword not in old or new[keyword] > old[keyword]):
                self.problems.append(f"{path}: {keyword} tightened from {old.get(keyword, 'none')} to {new[keyword]}")
        for keyword in _MUST_NOT_CHANGE:
            if keyword in new and new.get(keyword) != old.get(keyword):
                self.problems.append(f"{path}: {keyword} changed from {old.get(keyword)!r} to {new[keyword]!r}")
        if new.get("uniqueItems") and not old.get("uniqueItems"):
            self.problems.append(f"{path}: items must now be unique")

    def _compare_object(self, old: Schema, new: Schema, path: str) -> None:
        old_props: Mapping[str, Schema] = old.get("properties", {})
        new_props: Mapping[str, Schema] = new.get("properties", {})
        old_required = set(old.get("required", ()))
        new_required = set(new.get("required", ()))
        for name, old_prop in old_props.items():
            if name not in new_props:
                self.problems.append(f"{path}.{name}: field removed (or renamed)")
                continue
            self.compare(old_prop, new_props[name], f"{path}.{name}")
        for name in sorted(new_required - old_required):
            if name in old_props:
                self.problems.append(f"{path}.{name}: optional field became required")
            else:
                self.problems.append(f"{path}.{name}: new required field")
        for name in sorted(old_required - new_required):
            if name in new_props:
                self.problems.append(f"{path}.{name}: no longer required (readers of the old schema expect it)")
        old_extra, new_extra = old.get("additionalProperties", True), new.get("additionalProperties", True)
        if new_extra is False and old_extra is not False:
            self.problems.append(f"{path}: unknown fields are no longer accepted")
        elif isinstance(old_extra, Mapping) and isinstance(new_extra, Mapping):
            self.compare(old_extra, new_extra, f"{path}[*]")
        old_patterns: Mapping[str, Schema] = old.get("patternProperties", {})
        new_patterns: Mapping[str, Schema] = new.get("patternProperties", {})
        for pattern, old_value in old_patterns.items():
            if pattern not in new_patterns:
                self.problems.append(f"{path}: key pattern {pattern!r} removed or changed")
            else:
                self.compare(old_value, new_patterns[pattern], f"{path}[{pattern}]")
        for pattern in new_patterns.keys() - old_patterns.keys():
            if not old_patterns and old_extra is not False:
                self.problems.append(f"{path}: keys now restricted to pattern {pattern!r}")
        if "propertyNames" in new:
            self.compare(old.get("propertyNames", {}), new["propertyNames"], f"{path}[key]")

    def _compare_array(self, old: Schema, new: Schema, path: str) -> None:
        if isinstance(old.get("items"), Mapping):
            new_items = new.get("items")
            if isinstance(new_items, Mapping):
                self.compare(old["items"], new_items, f"{path}[]")
        old_prefix, new_prefix = old.get("prefixItems", []), new.get("prefixItems", [])
        for i, (old_item, new_item) in enumerate(zip(old_prefix, new_prefix, strict=False)):
            self.compare(old_item, new_item, f"{path}[{i}]")
        if len(new_prefix) != len(old_prefix) and (old_prefix or new_prefix):
            self.problems.append(f"{path}: tuple length changed from {len(old_prefix)} to {len(new_prefix)}")


def _types(schema: Schema) -> frozenset[str]:
    types = schema.get("type")
    if isinstance(types, str):
        return frozenset({types})
    if isinstance(types, list):
        return frozenset(types)
    if "properties" in schema:
        return frozenset({"object"})
    values = _allowed_values(schema)
    if values is not None:
        return frozenset(_json_type(json.loads(v)) for v in values)
    return frozenset()


def _covers(new: frozenset[str], old: frozenset[str]) -> bool:
    # every integer is a number, so integer -> number widens; the other way narrows
    return all(t in new or (t == "integer" and "number" in new) for t in old)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _allowed_values(schema: Schema) -> set[str] | None:
    if "const" in schema:
        return {json.dumps(schema["const"], sort_keys=True)}
    if "enum" in schema:
        return {json.dumps(v, sort_keys=True) for v in schema["enum"]}
    return None


def _fmt(types: frozenset[str]) -> str:
    return "|".join(sorted(types))
