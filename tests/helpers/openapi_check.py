"""A small checker of API answers against an OpenAPI 3.1 document: finds the operation of a
request (path template, method), its response for the status code, and validates the JSON body
against its schema. The JSON Schema subset the document uses: type (one or a list), enum,
properties, required, additionalProperties (bool or schema), items, minimum/maximum,
minLength, $ref to components. No dependency: jsonschema is not one of ackflow's."""

from __future__ import annotations

import re
from typing import Any

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is(kind: str, value: Any) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def validate(schema: dict[str, Any], value: Any, doc: dict[str, Any], where: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema`` (empty: it fits)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return validate(doc["components"]["schemas"][name], value, doc, where)
    errors: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(k, value) for k in kinds):
            return [f"{where}: {value!r:.80} is not of type {kinds}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r:.80} is not one of {schema['enum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: missing {name!r}")
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                errors += validate(props[k], v, doc, f"{where}.{k}")
            elif extra is False:
                errors.append(f"{where}: unexpected property {k!r}")
            elif isinstance(extra, dict):
                errors += validate(extra, v, doc, f"{where}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            errors += validate(schema["items"], v, doc, f"{where}[{i}]")
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        errors.append(f"{where}: shorter than {schema['minLength']}")
    if _is("number", value):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} > {schema['maximum']}")
    return errors


def template_of(doc: dict[str, Any], method: str, path: str) -> str | None:
    """The documented path template ``method path`` (without its query) matches, if any."""
    for template, ops in doc["paths"].items():
        pattern = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in ops:
            return str(template)
    return None


def operation(doc: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    """The operation of ``method path`` (the path without its query), or None if undocumented."""
    template = template_of(doc, method, path)
    return None if template is None else doc["paths"][template][method.lower()]  # type: ignore[no-any-return]


def check_response(
    doc: dict[str, Any], method: str, path: str, status: int, headers: dict[str, str], body: Any
) -> list[str]:
    """Every way this answer breaks the document."""
    op = operation(doc, method, path.split("?", 1)[0])
    if op is None:
        return [f"{method} {path} is not in the document"]
    response = op["responses"].get(str(status))
    if response is None:
        return [f"{method} {path}: status {status} is not documented ({sorted(op['responses'])})"]
    errors = []
    for name in response.get("headers", {}):
        if name.lower() not in {k.lower() for k in headers}:
            errors.append(f"{method} {path} {status}: no {name} header")
    schema = response["content"]["application/json"]["schema"]
    return errors + [f"{method} {path} {status}: {e}" for e in validate(schema, body, doc)]
