"""JSON Schema <-> the OpenAPI-3.0 Schema subset Gemini's `parameters` and
`responseSchema` accept.

Gemini parses these fields into a proto, so any key it does not know is a 400
("Unknown name ... Cannot find field"): sanitizing is an allow-list, never a
deny-list (known-gateway-bugs #12, hazard 20). Both functions are pure: they
build new dicts and never touch their input.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from app.jsonutil import dumps_str

# The Schema fields the Gemini API accepts that we keep. `title`, `default` and
# `example` exist in the proto but are dropped: gateways that forwarded them
# still got 400s (known-gateway-bugs #12), and the model does not need them.
_NUMERIC_KEYS = ("minItems", "maxItems", "minProperties", "maxProperties",
                 "minLength", "maxLength", "minimum", "maximum")

# Gemini rejects other `format` values ("only 'enum' and 'date-time' are
# supported for STRING type"), so a format is kept only where it is allowed.
_FORMATS = {
    "string": frozenset({"enum", "date-time"}),
    "number": frozenset({"float", "double"}),
    "integer": frozenset({"int32", "int64"}),
}

_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})


def to_gemini_parameters(schema: Mapping[str, Any] | None) -> dict | None:
    """A tool's JSON Schema -> Gemini `parameters`; None when the tool takes no
    arguments (Gemini rejects an OBJECT with empty properties, hazard 21)."""
    if not isinstance(schema, Mapping):
        return None
    out = to_gemini_schema(schema)
    if not out or (_type_of(out) in ("object", None) and not out.get("properties") and not out.get("anyOf")):
        return None
    return out


def to_gemini_schema(schema: Mapping[str, Any]) -> dict:
    """Any JSON Schema -> the Gemini Schema subset (also for `responseSchema`)."""
    return _Sanitizer(schema).convert(schema)


def fits_schema_subset(converted: Mapping[str, Any]) -> bool:
    """Whether a converted `parameters` schema still says what the original did.
    The Schema subset has no free-form object (an OBJECT needs properties, at any
    depth) and no "any value" (every nested node needs a type): a tool schema with
    either must go as `parametersJsonSchema` instead (Claude Code's TaskCreate
    `metadata` map, its Workflow `args`)."""
    return _fits(converted, root=True)


def _fits(node: Mapping[str, Any], root: bool) -> bool:
    kind = _type_of(node)
    if kind is None and "anyOf" not in node and not root:
        return False
    if kind == "object" and not node.get("properties") and not root:
        return False
    children = list((node.get("properties") or {}).values()) + list(node.get("anyOf") or ())
    if isinstance(node.get("items"), Mapping):
        children.append(node["items"])
    return all(_fits(child, root=False) for child in children)


# The keys `parametersJsonSchema` supports (protocols §4.4); others (`$schema`,
# `exclusiveMinimum`, `propertyNames`, `default`, ...) are refused by Gemini.
_JSON_SCHEMA_KEYS = frozenset({
    "$id", "$defs", "$ref", "$anchor", "type", "format", "title", "description", "enum", "items", "prefixItems",
    "minItems", "maxItems", "minimum", "maximum", "anyOf", "oneOf", "properties", "additionalProperties",
    "required", "propertyOrdering",
})
_SCHEMA_MAPS = ("properties", "$defs")
_SCHEMA_LISTS = ("anyOf", "oneOf", "prefixItems")


def to_gemini_json_schema(schema: Any) -> Any:
    """A tool's JSON Schema -> what Gemini's `parametersJsonSchema` takes: the
    supported keys only, `const` as a one-value enum, exclusive bounds as the
    nearest inclusive ones."""
    if not isinstance(schema, Mapping):
        return schema if isinstance(schema, bool) else {}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _JSON_SCHEMA_KEYS:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {name: to_gemini_json_schema(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [to_gemini_json_schema(sub) for sub in value]
        elif key in ("items", "additionalProperties"):
            out[key] = to_gemini_json_schema(value)
        else:
            out[key] = value
    if "const" in schema and "enum" not in out:
        out["enum"] = [schema["const"]]
    _inclusive_bounds(schema, out)
    return out


def _inclusive_bounds(node: Mapping[str, Any], out: dict) -> None:
    """exclusiveMinimum/Maximum -> minimum/maximum: exact for integers (the next
    whole number), one boundary value wider for other numbers. An inclusive bound
    the schema states itself is kept."""
    integer = _type_of(node) == "integer"
    for exclusive, inclusive, step in (("exclusiveMinimum", "minimum", 1), ("exclusiveMaximum", "maximum", -1)):
        bound = node.get(exclusive)
        if not _is_number(bound) or _is_number(node.get(inclusive)):
            continue
        if integer:
            out[inclusive] = math.floor(bound) + 1 if step > 0 else math.ceil(bound) - 1
        else:
            out[inclusive] = bound


def from_gemini_schema(schema: Any) -> Any:
    """A Gemini Schema (upper-case types, `nullable`) -> plain JSON Schema, so
    targets that take JSON Schema (OpenAI, Anthropic) can use it."""
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    nullable = schema.get("nullable") is True
    for key, value in schema.items():
        if key in ("nullable", "propertyOrdering"):
            continue  # Gemini-only keys; nullability is re-expressed below
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key == "format" and value == "enum":
            continue  # Gemini's marker for enum strings, not a JSON Schema format
        elif key == "properties" and isinstance(value, Mapping):
            out["properties"] = {name: from_gemini_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out["items"] = from_gemini_schema(value)
        elif key == "anyOf" and isinstance(value, list):
            out["anyOf"] = [from_gemini_schema(sub) for sub in value]
        else:
            out[key] = value
    if nullable:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    return out


def _type_of(node: Mapping[str, Any]) -> str | None:
    value = node.get("type")
    return value.lower() if isinstance(value, str) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Sanitizer:
    """One conversion: knows the root (for `$ref`) and the refs being expanded
    (a recursive schema cannot be inlined forever)."""

    def __init__(self, root: Mapping[str, Any]):
        self._root = root
        self._expanding: list[str] = []

    def convert(self, node: Any) -> dict:
        if not isinstance(node, Mapping):
            return {}  # boolean schemas (`true`) have no Gemini form
        if isinstance(node.get("$ref"), str):
            return self._convert_ref(node)
        if isinstance(node.get("allOf"), list) and node["allOf"]:
            return self._convert_all_of(node)
        return self._convert_plain(node)

    # -------------------------------------------------------- composition

    def _convert_ref(self, node: Mapping[str, Any]) -> dict:
        ref = node["$ref"]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        target = self._resolve(ref)
        if target is None:
            return self.convert(siblings)  # an external ref: keep what the node says itself
        if ref in self._expanding:
            # A recursive type: Gemini has no references, so the recursion
            # stops at an untyped object (its description kept).
            stub: dict[str, Any] = {"type": "object"}
            description = siblings.get("description", target.get("description"))
            if isinstance(description, str):
                stub["description"] = description
            return stub
        self._expanding.append(ref)
        try:
            return self.convert({**target, **siblings})  # the referring node's keys win
        finally:
            self._expanding.pop()

    def _resolve(self, ref: str) -> Mapping[str, Any] | None:
        if not ref.startswith("#"):
            return None
        node: Any = self._root
        for token in ref[1:].split("/"):
            if not token:
                continue
            token = token.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or token not in node:
                return None
            node = node[token]
        return node if isinstance(node, Mapping) else None

    def _convert_all_of(self, node: Mapping[str, Any]) -> dict:
        """allOf: every member must hold, so merge them into one schema
        (properties and required are unioned; otherwise the first word wins)."""
        merged = self.convert({k: v for k, v in node.items() if k != "allOf"})
        for member in node["allOf"]:
            merged = _merge(merged, self.convert(member))
        return merged

    # -------------------------------------------------------- one node

    def _convert_plain(self, node: Mapping[str, Any]) -> dict:
        out: dict[str, Any] = {}
        nullable = node.get("nullable") is True
        nullable |= self._apply_type(node.get("type"), out)

        alternatives = node.get("anyOf") if isinstance(node.get("anyOf"), list) else node.get("oneOf")
        if isinstance(alternatives, list) and alternatives:
            nullable |= self._apply_alternatives(alternatives, out)

        for key in ("description", "pattern"):
            if isinstance(node.get(key), str):
                out[key] = node[key]
        for key in _NUMERIC_KEYS:
            if _is_number(node.get(key)):
                out[key] = node[key]
        _inclusive_bounds(node, out)

        nullable |= self._apply_enum(node, out)
        self._apply_format(node.get("format"), out)
        self._apply_object(node, out)
        self._apply_items(node.get("items"), out)
        if nullable:
            out["nullable"] = True
        return out

    def _apply_type(self, value: Any, out: dict) -> bool:
        """Set `type`; a JSON Schema type list becomes one type (+ nullable) or
        an anyOf of types. Returns whether null was allowed."""
        if isinstance(value, str):
            if value.lower() in _TYPES:
                out["type"] = value
            return False
        if not isinstance(value, list):
            return False
        names = [t for t in value if isinstance(t, str) and t.lower() in _TYPES]
        concrete = [t for t in names if t.lower() != "null"]
        if len(concrete) == 1:
            out["type"] = concrete[0]
        elif len(concrete) > 1:
            out["anyOf"] = [{"type": t} for t in concrete]
        elif names:
            out["type"] = names[0]
        return len(concrete) < len(names) and bool(concrete)

    def _apply_alternatives(self, members: list, out: dict) -> bool:
        """anyOf/oneOf (oneOf is read as anyOf): `{"type": "null"}` members become
        `nullable`; one remaining member is folded into the node."""
        converted = [self.convert(m) for m in members]
        concrete = [c for c in converted if _type_of(c) != "null"]
        nullable = len(concrete) < len(converted)
        if len(concrete) == 1:
            for key, value in concrete[0].items():
                out.setdefault(key, value)
        elif concrete:
            out["anyOf"] = concrete
        elif converted:
            out.setdefault("type", "null")
            return False
        return nullable

    def _apply_enum(self, node: Mapping[str, Any], out: dict) -> bool:
        """enum/const -> a string enum. Gemini enums are strings only: other values
        are stringified when the type is string, else the enum is dropped."""
        values = node.get("enum")
        if not isinstance(values, list) and "const" in node:
            values = [node["const"]]
        if not isinstance(values, list):
            return False
        nullable = None in values
        values = [v for v in values if v is not None]
        if values and all(isinstance(v, str) for v in values):
            out["enum"] = values
            out.setdefault("type", "string")
        elif values and _type_of(out) == "string":
            out["enum"] = [v if isinstance(v, str) else dumps_str(v) for v in values]
        return nullable

    def _apply_format(self, value: Any, out: dict) -> None:
        if isinstance(value, str) and value in _FORMATS.get(_type_of(out) or "", ()):
            out["format"] = value

    def _apply_object(self, node: Mapping[str, Any], out: dict) -> None:
        """properties/required/propertyOrdering: only on objects, required and the
        ordering filtered to properties that exist, an empty map left out."""
        properties = node.get("properties")
        if not isinstance(properties, Mapping):
            return
        if _type_of(out) is None and "anyOf" not in out:
            out["type"] = "object"  # properties imply an object (Gemini needs the type said)
        if _type_of(out) != "object":
            return
        converted = {name: self.convert(sub) for name, sub in properties.items()}
        if not converted:
            return
        out["properties"] = converted
        required = [r for r in node.get("required") or () if isinstance(r, str) and r in converted]
        if required:
            out["required"] = list(dict.fromkeys(required))
        ordering = node.get("propertyOrdering")
        if isinstance(ordering, list):
            kept = [name for name in ordering if name in converted]
            if kept:
                out["propertyOrdering"] = kept

    def _apply_items(self, items: Any, out: dict) -> None:
        if isinstance(items, Mapping):
            out["items"] = self.convert(items)
        elif isinstance(items, list) and items:  # tuple form: any of the positions
            converted = [self.convert(i) for i in items]
            out["items"] = converted[0] if len(converted) == 1 else {"anyOf": converted}


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if key == "properties" and isinstance(merged.get("properties"), dict):
            merged["properties"] = {**merged["properties"], **value}
        elif key == "required" and isinstance(merged.get("required"), list):
            merged["required"] = list(dict.fromkeys([*merged["required"], *value]))
        else:
            merged.setdefault(key, value)
    return merged
